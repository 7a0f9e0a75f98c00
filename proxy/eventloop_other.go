//go:build !linux

package proxy

import "net"

// The event loops (eventloop_linux.go) are Linux only: elsewhere every
// connection is relayed by its own two pump goroutines.

type eventLoop struct{}

type loopPump struct{}

func (c *clientConn) attachLoop(*pump, net.Conn, net.Conn, func(byte, []byte) bool, func() bool) {}

func (p *pump) park() bool { return false }

func (c *clientConn) kickLoop() {}
