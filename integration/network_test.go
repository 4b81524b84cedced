//go:build linux

package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/flyingdutchman/flyingdutchman/integration/harness"
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
	// From another container through the host's address (the gateway): portmap's DNAT,
	// back out of the bridge it came in by. A rule of the administrator's in
	// DUTCHMAN-USER, which FORWARD passes before the engine's, stops it.
	var nets []struct{ Gateway, Bridge string }
	if err := json.Unmarshal([]byte(d.MustRun("network", "inspect", "bridge")), &nets); err != nil || len(nets) != 1 {
		t.Fatalf("network inspect bridge: %v", err)
	}
	viaHost := fmt.Sprintf("timeout 5 wget -q -O - http://%s:%s/; exit $?", nets[0].Gateway, strings.TrimSpace(strings.TrimPrefix(out, "0.0.0.0:")))
	if got := d.MustRun("run", "--rm", bb, "sh", "-c", viaHost); got != "hello from web2\n" {
		t.Errorf("fetch web2 through the host's address: %q", got)
	}
	rule := []string{"DUTCHMAN-USER", "-o", nets[0].Bridge, "-m", "conntrack", "--ctstate", "DNAT", "-j", "REJECT"}
	if out, err := exec.Command("iptables", append([]string{"-w", "-I"}, rule...)...).CombinedOutput(); err != nil {
		t.Fatalf("a rule in DUTCHMAN-USER: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("iptables", append([]string{"-w", "-D"}, rule...)...).Run() })
	if r := d.Run("run", "--rm", bb, "sh", "-c", viaHost); r.Code == 0 {
		t.Errorf("a published port reached through a rule of DUTCHMAN-USER that rejects it: %q", r.Stdout)
	}
	exec.Command("iptables", append([]string{"-w", "-D"}, rule...)...).Run()
	// --network none: loopback only.
	if got := d.MustRun("run", "--rm", "--network", "none", bb, "sh", "-c", "ls /sys/class/net | tr '\\n' ' '"); got != "lo " {
		t.Errorf("interfaces with --network none: %q", got)
	}
	// --network host: the host's interfaces.
	if got := d.MustRun("run", "--rm", "--network", "host", bb, "sh", "-c", "ls /sys/class/net | grep -c ."); got == "1\n" {
		t.Errorf("--network host shows only loopback")
	}
	// A port is published once: another container, or a service of the host's, has it.
	if r := d.Run("run", "-d", "--name", "thief", "-p", fmt.Sprintf("%d:80", port), bb, "sleep", "60"); r.Code == 0 || !strings.Contains(r.Stderr, fmt.Sprintf("host port %d/tcp is already published by container web", port)) {
		t.Errorf("a second container on web's port: exit %d, %s", r.Code, r.Stderr)
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	if r := d.Run("run", "-d", "-p", fmt.Sprintf("127.0.0.1:%d:80", busy), bb, "sleep", "60"); r.Code == 0 || !strings.Contains(r.Stderr, "in use on the host") {
		t.Errorf("a port a host service listens on: exit %d, %s", r.Code, r.Stderr)
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

// TestTreeNetworks makes and removes networks with mkdir and rmdir in the tree, and
// reads their configuration, their members and a member's addresses and ports.
func TestTreeNetworks(t *testing.T) {
	d, bb := treeDaemon(t)
	mustOwnerSh(t, d, "mkdir networks/web")
	if got := d.MustRun("network", "ls", "-q"); got != "bridge\nweb\n" {
		t.Fatalf("networks after mkdir: %q", got)
	}
	var conf struct{ Subnet, Gateway, Driver string }
	if err := json.Unmarshal([]byte(mustSh(t, d, "cat networks/web/config.json")), &conf); err != nil || conf.Driver != "bridge" || !strings.HasSuffix(conf.Subnet, ".0/24") {
		t.Errorf("networks/web/config.json: %+v, %v", conf, err)
	}
	failSh(t, d, "mkdir 'networks/bad name'", "Invalid argument")
	failSh(t, d, "mkdir networks/web", "File exists")
	port := freeHostPort(t)
	d.MustRun("run", "-d", "--name", "site", "--network", "web", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), bb, "sh", "-c", httpdScript("site"))
	var st struct {
		IPAddresses []string `json:"ip_addresses"`
		Ports       []string `json:"ports"`
	}
	if err := json.Unmarshal([]byte(mustSh(t, d, "cat containers/site/status.json")), &st); err != nil || len(st.IPAddresses) != 1 || len(st.Ports) != 1 || st.Ports[0] != fmt.Sprintf("127.0.0.1:%d->80/tcp", port) {
		t.Errorf("status.json of a published container: %+v, %v", st, err)
	}
	if got := mustSh(t, d, "cat networks/web/containers"); got != "site "+st.IPAddresses[0]+"\n" {
		t.Errorf("networks/web/containers: %q", got)
	}
	// The spec file of a container made by the CLI says its networks and ports, so that
	// an edit of it keeps them.
	if got := mustSh(t, d, "grep -E '^(networks|ports|  -)' containers/site.yaml"); got != fmt.Sprintf("networks: [web]\nports:\n  - 127.0.0.1:%d:80/tcp\n", port) {
		t.Errorf("containers/site.yaml names its networks and ports so:\n%s", got)
	}
	// A spec file joins networks with aliases and publishes ports; the tree of a user
	// other than root publishes no host port below 1024.
	port2 := freeHostPort(t)
	spec := fmt.Sprintf("image: %s\ncommand: [sh, -c, %q]\nnetworks:\n  web: {aliases: [www]}\nports: [\"127.0.0.1:%d:80\"]\n", bb, httpdScript("api"), port2)
	mustOwnerSh(t, d, fmt.Sprintf("printf '%%s' '%s' > containers/api.yaml && echo start > containers/api/ctl", spec))
	if got, err := hostFetch(t, fmt.Sprintf("http://127.0.0.1:%d/", port2)); got != "hello from api\n" {
		t.Errorf("a port published by a spec file: %q, %v", got, err)
	}
	if got := d.MustRun("run", "--rm", "--network", "web", bb, "sh", "-c", "wget -q -O - http://www/; exit $?"); got != "hello from api\n" {
		t.Errorf("a spec file's network alias: %q", got)
	}
	// (cp, as bash does not check the close of a redirection.)
	r := ownerSh(t, d, fmt.Sprintf("printf 'image: %s\\nports: [\"80:80\"]\\n' > /tmp/low.$$; cp /tmp/low.$$ containers/low.yaml; s=$?; rm /tmp/low.$$; exit $s", bb))
	if r.Code == 0 || !strings.Contains(r.Stderr, "Invalid argument") || !strings.Contains(d.MustRun("events", "--no-follow", "--filter", "container=low"), "host ports from 1024 up") {
		t.Errorf("a spec file publishing port 80 in a user's tree: exit %d, %q", r.Code, r.Stderr)
	}
	d.MustRun("rm", "-f", "api")
	failSh(t, d, "rmdir networks/web", "Device or resource busy")
	if got := mustSh(t, d, "cat networks/error"); !strings.Contains(got, "in use by container site") {
		t.Errorf("networks/error: %q", got)
	}
	d.MustRun("rm", "-f", "site")
	mustOwnerSh(t, d, "rmdir networks/web")
	if got := mustSh(t, d, "ls networks"); got != "bridge\nerror\n" {
		t.Errorf("ls networks after rmdir: %q", got)
	}
}

// TestNetworkUDPAndDaemonRestart publishes a UDP port (an echo server built for the
// test: Debian's busybox has no UDP server), and kills the daemon with -9: the container
// stays reachable, and a new daemon takes down nothing it uses, and releases its
// network when it goes.
func TestNetworkUDPAndDaemonRestart(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "udpecho")
	build := exec.Command("go", "build", "-o", bin, "./testdata/udpecho")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build udpecho: %v\n%s", err, out)
	}
	body, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	reg := harness.StartRegistry(t)
	img := harness.Image(t, harness.Amd64, harness.Layer(t, harness.BusyboxTar(t)),
		harness.Layer(t, harness.Tar(harness.Entry{Name: "udpecho", Body: string(body), Mode: 0o755})))
	ref := reg.Ref("test/udpecho:v1")
	harness.Push(t, ref, img)
	d := harness.StartDaemon(t)
	d.MustRun("pull", "-q", ref)

	port := freeHostPort(t)
	d.MustRun("run", "-d", "--name", "echo", "-p", fmt.Sprintf("127.0.0.1:%d:9000/udp", port), ref, "/udpecho", "9000")
	udp := func() (string, error) {
		var err error
		for range 30 {
			var c net.Conn
			if c, err = net.Dial("udp4", fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
				return "", err
			}
			c.SetDeadline(time.Now().Add(300 * time.Millisecond))
			c.Write([]byte("ping"))
			buf := make([]byte, 16)
			n, rerr := c.Read(buf)
			c.Close()
			if rerr == nil {
				return string(buf[:n]), nil
			}
			err = rerr
		}
		return "", err
	}
	if got, err := udp(); got != "ping" {
		t.Fatalf("a UDP echo through a published port: %q, %v", got, err)
	}
	d.Kill()
	if got, err := udp(); got != "ping" {
		t.Errorf("the UDP echo with the daemon killed: %q, %v", got, err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	if got, err := udp(); got != "ping" {
		t.Errorf("the UDP echo after the daemon's restart: %q, %v", got, err)
	}
	d.MustRun("rm", "-f", "echo")
	if out, _ := exec.Command("iptables-save", "-t", "nat").Output(); strings.Contains(string(out), fmt.Sprintf("--dport %d ", port)) {
		t.Errorf("the port's rules stayed after the container went")
	}
}

// TestNetworkConnectAndDisconnect puts a running container on a second network and takes
// it off again; -P publishes what the image exposes; resolv.conf has no loopback
// resolver.
func TestNetworkConnectAndDisconnect(t *testing.T) {
	d, ref := busyboxWithConfig(t, "test/exposed:v1", func(c *v1.Config) { c.ExposedPorts = map[string]struct{}{"80/tcp": {}} })

	d.MustRun("network", "create", "side")
	d.MustRun("run", "-d", "--name", "srv", "-P", ref, "sh", "-c", httpdScript("srv"))
	out := d.MustRun("port", "srv", "80/tcp")
	if got, err := hostFetch(t, "http://127.0.0.1:"+strings.TrimSpace(strings.TrimPrefix(out, "0.0.0.0:"))+"/"); err != nil || got != "hello from srv\n" {
		t.Errorf("-P published %q: %q, %v", out, got, err)
	}
	fetchFromSide := func() harness.Result {
		return d.Run("run", "--rm", "--network", "side", ref, "sh", "-c", "timeout 3 wget -q -O - http://srv/; exit $?")
	}
	if r := fetchFromSide(); r.Code == 0 {
		t.Errorf("a member of side reached srv before the connect: %q", r.Stdout)
	}
	d.MustRun("network", "connect", "--alias", "www", "side", "srv")
	if r := fetchFromSide(); r.Code != 0 || r.Stdout != "hello from srv\n" {
		t.Errorf("fetch srv from side after the connect: exit %d, %q %s", r.Code, r.Stdout, r.Stderr)
	}
	if got := d.MustRun("exec", "srv", "sh", "-c", "ls /sys/class/net | tr '\\n' ' '"); got != "eth0 eth1 lo " {
		t.Errorf("interfaces after the connect: %q", got)
	}
	if r := d.Run("network", "connect", "side", "srv"); r.Code == 0 || !strings.Contains(r.Stderr, "already on network side") {
		t.Errorf("a second connect: exit %d, %s", r.Code, r.Stderr)
	}
	d.MustRun("network", "disconnect", "side", "srv")
	if r := fetchFromSide(); r.Code == 0 {
		t.Errorf("a member of side reached srv after the disconnect: %q", r.Stdout)
	}
	if got := d.MustRun("exec", "srv", "sh", "-c", "ls /sys/class/net | tr '\\n' ' '"); got != "eth0 lo " {
		t.Errorf("interfaces after the disconnect: %q", got)
	}
	// resolv.conf: the host's, without loopback name servers.
	if got := d.MustRun("run", "--rm", ref, "cat", "/etc/resolv.conf"); strings.Contains(got, "nameserver 127.") || !strings.Contains(got, "nameserver ") {
		t.Errorf("resolv.conf in a container:\n%s", got)
	}
}

// busyboxWithConfig pushes a busybox image whose config edit changes (HEALTHCHECK,
// EXPOSE) to a registry of the test's as repo (NAME:TAG), and returns a daemon that
// has pulled it, with its reference.
func busyboxWithConfig(t *testing.T, repo string, edit func(*v1.Config)) (*harness.Daemon, string) {
	t.Helper()
	reg := harness.StartRegistry(t)
	img := harness.Image(t, harness.Amd64, harness.Layer(t, harness.BusyboxTar(t)))
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	edit(&cf.Config)
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	ref := reg.Ref(repo)
	harness.Push(t, ref, img)
	d := harness.StartDaemon(t)
	d.MustRun("pull", "-q", ref)
	return d, ref
}
