//go:build linux

package harness

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Throttle starts a TCP proxy on a loopback port that forwards to target, sending the
// replies at about bytesPerSec. Tests use it to slow a real registry down enough to act
// in the middle of a pull. It stops when t ends.
func Throttle(t testing.TB, target string, bytesPerSec int) string {
	t.Helper()
	l := listen(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := l.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			track(client)
			track(server)
			wg.Add(2)
			go func() {
				defer wg.Done()
				io.Copy(server, client)
				server.Close()
			}()
			go func() {
				defer wg.Done()
				slowCopy(client, server, bytesPerSec)
				client.Close()
			}()
		}
	}()
	return l.Addr().String()
}

func slowCopy(dst io.Writer, src io.Reader, bytesPerSec int) {
	const chunk = 32 << 10
	buf := make([]byte, chunk)
	start := time.Now()
	sent := 0
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			sent += n
			if due := time.Duration(float64(sent) / float64(bytesPerSec) * float64(time.Second)); due > time.Since(start) {
				time.Sleep(due - time.Since(start))
			}
		}
		if err != nil {
			return
		}
	}
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}
