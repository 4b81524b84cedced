package network

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestAttachPublishDetach puts a namespace on a network of its own through Debian's CNI
// plugins, serves HTTP in it with busybox, fetches it by the container's address and by
// a published port on 127.0.0.1, and takes it all down again.
func TestAttachPublishDetach(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces and bridges need root; make test runs as root")
	}
	for _, p := range []string{"/usr/lib/cni/bridge", "/bin/busybox"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s is missing (make deps installs containernetworking-plugins and busybox-static): %v", p, err)
		}
	}
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, "db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	m, err := Open(filepath.Join(dir, "networks"), db)
	if err != nil {
		t.Fatal(err)
	}
	n, err := m.Create("nettest", CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Remove("nettest") })
	if _, err := m.Create("nettest", CreateOptions{}); err == nil {
		t.Errorf("a second network named nettest")
	}

	ns := filepath.Join(dir, "ns")
	if err := NewNS(ns); err != nil {
		t.Fatal(err)
	}
	defer RemoveNS(ns)
	ctx := context.Background()
	port := freePort(t)
	eps, err := m.Attach(ctx, "c1", ns, []Request{{Network: "nettest"}}, []Port{{HostPort: port, ContainerPort: 80, Protocol: "tcp"}})
	if err != nil {
		t.Fatal(err)
	}
	detached := false
	defer func() {
		if !detached {
			m.Detach(ctx, "c1", ns, eps)
		}
	}()
	if len(eps) != 1 || eps[0].IfName != "eth0" || !strings.HasPrefix(eps[0].IP, strings.TrimSuffix(n.Subnet, "0/24")) {
		t.Fatalf("endpoints %+v in %s", eps, n.Subnet)
	}

	www := filepath.Join(dir, "www")
	os.MkdirAll(www, 0o755)
	os.WriteFile(filepath.Join(www, "index.html"), []byte("hello\n"), 0o644)
	httpd := exec.Command("nsenter", "--net="+ns, "busybox", "httpd", "-f", "-p", "80", "-h", www)
	if err := httpd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { httpd.Process.Kill(); httpd.Wait() }()
	for _, url := range []string{fmt.Sprintf("http://%s/", eps[0].IP), fmt.Sprintf("http://127.0.0.1:%d/", port)} {
		if got := fetch(t, url); got != "hello\n" {
			t.Errorf("%s: %q", url, got)
		}
	}
	if err := m.Detach(ctx, "c1", ns, eps); err != nil {
		t.Fatal(err)
	}
	detached = true
	c := http.Client{Timeout: time.Second}
	if _, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil {
		t.Errorf("the published port still answers after detach")
	}
	if out, _ := exec.Command("iptables-save", "-t", "nat").Output(); strings.Contains(string(out), fmt.Sprintf("--dport %d ", port)) || strings.Contains(string(out), n.Subnet) {
		t.Errorf("rules left after detach:\n%s", out)
	}
	if err := m.Remove("nettest"); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("ip", "link", "show", n.Bridge).Run(); err == nil {
		t.Errorf("bridge %s left after the network's removal", n.Bridge)
	}
}

func fetch(t *testing.T, url string) string {
	t.Helper()
	c := http.Client{Timeout: 2 * time.Second}
	var last error
	for range 20 {
		resp, err := c.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("%s: %v", url, last)
	return ""
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
