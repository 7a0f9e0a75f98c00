// Command ddlguard is the ddlguard binary: `serve` runs the proxy,
// `check-config` validates a configuration, `healthcheck` asks a running
// one's admin listener, `demo` runs the proxy in front of
// a throwaway PostgreSQL, and `version` prints the version. It wires packages
// together and holds no protocol or SQL logic of its own.
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usageText = `usage: ddlguard <command> [flags]

commands:
  serve         run the proxy: ddlguard serve --listen HOST:PORT --upstream HOST:PORT [--config FILE]
  check-config  validate a configuration: ddlguard check-config --config FILE
  lint          check migration files: ddlguard lint [--pg-version N] [--format text|json|sarif|github] FILE|DIR|-...
  healthcheck   ask a running ddlguard's admin listener: ddlguard healthcheck [--url http://127.0.0.1:6433/readyz]
  demo          start a throwaway PostgreSQL with ddlguard in front of it
  version       print the version
`

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1
	exitConfig = 2 // bad flags or configuration
)

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return exitConfig
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "check-config":
		return checkConfig(args[1:], stdout, stderr)
	case "demo":
		return demo(args[1:], stdout, stderr)
	case "lint":
		return lint(args[1:], os.Stdin, stdout, stderr)
	case "healthcheck":
		return healthcheck(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "ddlguard", version)
		return exitOK
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usageText)
		return exitOK
	}
	fmt.Fprintf(stderr, "ddlguard: unknown command %q\n%s", args[0], usageText)
	return exitConfig
}
