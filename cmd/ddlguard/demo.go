package main

import (
	"fmt"
	"io"
)

// demo is filled in once the throwaway-cluster package lands.
func demo(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "ddlguard demo: not built yet")
	return exitFailed
}
