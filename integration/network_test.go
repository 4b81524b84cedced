//go:build linux

package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// httpdScript serves "hello from NAME" with busybox httpd on port 80.
func httpdScript(name string) string {
	return "mkdir -p /www && echo hello from " + name + " > /www/index.html && exec httpd -f -p 80 -h /www"
}

// hostFetch fetches url from the host with busybox wget, retrying for a while: a
// server in a container starts in its own time.
func hostFetch(t *testing.T, url string) (string, error) {
	t.Helper()
	var out []byte
	var err error
	for range 50 {
		out, err = exec.Command("timeout", "5", "busybox", "wget", "-q", "-O", "-", url).CombinedOutput()
		if err == nil {
			return string(out), nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return string(out), err
}

func freeHostPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestNetworkPublishAndNames publishes busybox httpd on a host port, fetches it from the
// host, and from a second container by the first's name; a container on no network has
// only loopback; removing the server frees its port.
func TestNetworkPublishAndNames(t *testing.T) {
	d, bb := busyboxDaemon(t)
	port := freeHostPort(t)
	d.MustRun("run", "-d", "--name", "web", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), bb, "sh", "-c", httpdScript("web"))
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	if got, err := hostFetch(t, url); err != nil || got != "hello from web\n" {
		t.Fatalf("fetch %s from the host: %q, %v", url, got, err)
	}
	if got := d.MustRun("run", "--rm", bb, "wget", "-q", "-O", "-", "http://web/"); got != "hello from web\n" {
		t.Errorf("fetch http://web/ from another container: %q", got)
	}
	if got := d.MustRun("port", "web"); got != fmt.Sprintf("80/tcp -> 127.0.0.1:%d\n", port) {
		t.Errorf("port web: %q", got)
	}
	// A random host port, then -P for what the image exposes (busybox exposes none).
	d.MustRun("run", "-d", "--name", "web2", "-p", "80", bb, "sh", "-c", httpdScript("web2"))
	out := d.MustRun("port", "web2", "80")
	if !strings.HasPrefix(out, "0.0.0.0:") {
		t.Fatalf("port web2 80: %q", out)
	}
	if got, err := hostFetch(t, "http://127.0.0.1:"+strings.TrimSpace(strings.TrimPrefix(out, "0.0.0.0:"))+"/"); err != nil || got != "hello from web2\n" {
		t.Errorf("fetch web2 on its random port: %q, %v", got, err)
	}
	// --network none: loopback only.
	if got := d.MustRun("run", "--rm", "--network", "none", bb, "sh", "-c", "ls /sys/class/net | tr '\\n' ' '"); got != "lo " {
		t.Errorf("interfaces with --network none: %q", got)
	}
	// --network host: the host's interfaces.
	if got := d.MustRun("run", "--rm", "--network", "host", bb, "sh", "-c", "ls /sys/class/net | grep -c ."); got == "1\n" {
		t.Errorf("--network host shows only loopback")
	}
	// Removing the server frees its port.
	d.MustRun("rm", "-f", "web")
	if got, err := exec.Command("timeout", "5", "busybox", "wget", "-q", "-O", "-", url).CombinedOutput(); err == nil {
		t.Errorf("the port still answers after rm: %q", got)
	}
	d.MustRun("run", "-d", "--name", "again", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), bb, "sh", "-c", httpdScript("again"))
	if got, err := hostFetch(t, url); err != nil || got != "hello from again\n" {
		t.Errorf("the freed port, published again: %q, %v", got, err)
	}
}

// TestNetworksIsolateTheirMembers makes two networks: members of one reach each other
// by name and alias, not the members of the other, even by address. A network in use is
// not removed; an unused one is, with its bridge.
func TestNetworksIsolateTheirMembers(t *testing.T) {
	d, bb := busyboxDaemon(t)
	d.MustRun("network", "create", "front")
	d.MustRun("network", "create", "--subnet", "10.99.7.0/24", "back")
	if got := d.MustRun("network", "ls", "-q"); got != "back\nbridge\nfront\n" {
		t.Errorf("network ls: %q", got)
	}
	d.MustRun("run", "-d", "--name", "api", "--network", "back", "--ip", "10.99.7.50", "--network-alias", "db", bb, "sh", "-c", httpdScript("api"))
	if got := d.MustRun("run", "--rm", "--network", "back", bb, "wget", "-q", "-O", "-", "http://db/"); got != "hello from api\n" {
		t.Errorf("fetch by alias on the same network: %q", got)
	}
	if got := d.MustRun("run", "--rm", "--network", "back", bb, "wget", "-q", "-O", "-", "http://10.99.7.50/"); got != "hello from api\n" {
		t.Errorf("fetch by the static address on the same network: %q", got)
	}
	// (timeout is not the container's first process, which SIGTERM does not stop.)
	if r := d.Run("run", "--rm", "--network", "front", bb, "sh", "-c", "timeout 3 wget -q -O - http://10.99.7.50/; exit $?"); r.Code == 0 {
		t.Errorf("a member of another network reached api by address: %q", r.Stdout)
	}
	if r := d.Run("run", "--rm", "--network", "front", bb, "sh", "-c", "timeout 3 wget -q -O - http://api/; exit $?"); r.Code == 0 {
		t.Errorf("a member of another network reached api by name: %q", r.Stdout)
	}
	// Two networks at once: both reachable.
	if got := d.MustRun("run", "--rm", "--network", "front", "--network", "back", bb, "wget", "-q", "-O", "-", "http://api/"); got != "hello from api\n" {
		t.Errorf("fetch from a container on both networks: %q", got)
	}
	var nets []struct {
		Subnet     string
		Bridge     string
		Containers []struct{ Name, IP string }
	}
	if err := json.Unmarshal([]byte(d.MustRun("network", "inspect", "back")), &nets); err != nil || len(nets) != 1 {
		t.Fatalf("network inspect back: %v", err)
	}
	if nets[0].Subnet != "10.99.7.0/24" || len(nets[0].Containers) != 1 || nets[0].Containers[0].IP != "10.99.7.50" {
		t.Errorf("network inspect back: %+v", nets[0])
	}
	if r := d.Run("network", "rm", "back"); r.Code == 0 || !strings.Contains(r.Stderr, "in use by container api") {
		t.Errorf("network rm of a network in use: exit %d, %s", r.Code, r.Stderr)
	}
	d.MustRun("rm", "-f", "api")
	d.MustRun("network", "rm", "back")
	if err := exec.Command("ip", "link", "show", nets[0].Bridge).Run(); err == nil {
		t.Errorf("bridge %s stayed after its network went", nets[0].Bridge)
	}
	for _, bad := range [][]string{{"network", "create", "none"}, {"network", "create", "a/b"}, {"network", "create", "--subnet", "10.99.8.0/33", "x"}, {"network", "rm", "bridge"}} {
		if r := d.Run(bad...); r.Code == 0 {
			t.Errorf("%v: succeeded", bad)
		}
	}
	if r := d.Run("run", "--rm", "--network", "nosuch", bb, "true"); r.Code == 0 || !strings.Contains(r.Stderr, "no such network: nosuch") {
		t.Errorf("run on a missing network: exit %d, %s", r.Code, r.Stderr)
	}
}
