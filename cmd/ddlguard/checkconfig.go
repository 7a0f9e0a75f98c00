package main

import (
	"fmt"
	"io"
	"os"
)

// checkConfig loads and validates the configuration exactly as serve does
// (the same flags, file, environment and checks; certificates are read,
// nothing listens or connects) and prints every effective setting.
func checkConfig(args []string, stdout, stderr io.Writer) int {
	f, err := parseServeFlags("check-config", args, stderr)
	if err != nil {
		return exitConfig
	}
	loaded, err := loadConfig(f, os.Environ(), io.Discard)
	if err != nil {
		fmt.Fprintln(stderr, "ddlguard: config:", err)
		return exitConfig
	}
	fmt.Fprintln(stdout, "configuration ok; effective settings:")
	for _, line := range effectiveSettings(loaded.settings) {
		fmt.Fprintln(stdout, "  "+line)
	}
	return exitOK
}
