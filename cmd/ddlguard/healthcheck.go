package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"
)

// healthcheck asks a running ddlguard's admin listener whether it is
// healthy, for container HEALTHCHECKs in images without curl: exit 0 on a
// 2xx answer, 1 otherwise.
func healthcheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ddlguard healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:6433/readyz", "admin endpoint to ask (/healthz: process up; /readyz: ready for traffic)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	insecure := fs.Bool("insecure", false, "accept any certificate (an https admin listener with its own certificate)")
	if err := fs.Parse(args); err != nil {
		return exitConfig
	}
	client := &http.Client{Timeout: *timeout}
	if *insecure {
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}}
	}
	resp, err := client.Get(*url)
	if err != nil {
		fmt.Fprintln(stderr, "ddlguard healthcheck:", err)
		return exitFailed
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Fprintf(stdout, "%s %s\n%s", *url, resp.Status, body)
	if resp.StatusCode/100 != 2 {
		return exitFailed
	}
	return exitOK
}
