//go:build !linux

package proxy

import "net"

// withRawIO returns c: raw-syscall relaying (rawio_linux.go) is Linux only.
func withRawIO(c net.Conn) net.Conn { return c }
