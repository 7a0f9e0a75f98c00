//go:build !linux

package proxy

// The event loops (eventloop_linux.go) are Linux only: elsewhere every
// connection is relayed by its own two pump goroutines.

type loopPump struct{}

func (c *clientConn) ownSockets() {}

func (c *clientConn) attachLoop(*pump, any, any) {}

func (p *pump) park() bool { return false }
