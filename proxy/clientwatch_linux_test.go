package proxy

import (
	"net"
	"syscall"
	"testing"
	"time"
)

// peerClosed tells a client that hung up from a socket ddlguard closed
// itself: only the first means the client left (a rewrite interrupted by
// its upstream going away must not be logged as the client leaving).
func TestPeerClosedTellsHangUpFromOwnClose(t *testing.T) {
	forEachSocketKind(t, func(t *testing.T, wrap func(*testing.T, net.Conn) net.Conn) {
		ask := func(c net.Conn) (closed, ok bool) {
			if r, isRaw := c.(*rawIOConn); isRaw {
				c = r.Conn
			}
			rc, err := c.(syscall.Conn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			return peerClosed(rc)
		}

		c, peer := rawPair(t, wrap)
		if closed, ok := ask(c); closed || !ok {
			t.Fatalf("open connection: closed=%v ok=%v, want false true", closed, ok)
		}
		peer.Close()
		deadline := time.Now().Add(5 * time.Second)
		for {
			closed, ok := ask(c)
			if !ok {
				t.Fatal("ok=false after the peer closed: the socket is still ours")
			}
			if closed {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the peer's close was not seen in 5s")
			}
			time.Sleep(10 * time.Millisecond)
		}

		c2, _ := rawPair(t, wrap)
		c2.Close()
		if closed, ok := ask(c2); closed || ok {
			t.Errorf("socket closed by us: closed=%v ok=%v, want false false", closed, ok)
		}
	})
}
