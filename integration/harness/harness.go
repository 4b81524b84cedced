//go:build linux

// Package harness runs the real components the integration tests need: the CNCF registry
// (Debian's docker-registry) on a free loopback port, the dutchman binary as a daemon, and
// test images built at test time from the host's /bin/busybox (busybox-static).
//
// Everything a test process starts or mounts lives under one directory of its own,
// /tmp/dutchman-test/<pid>, so that Setup can find what a crashed run left behind (by the
// pid no longer being alive) and remove it: processes are killed, mounts unmounted, files
// deleted. Each test also stops what it started in t.Cleanup.
package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// Base is the parent of every test process's directory.
const Base = "/tmp/dutchman-test"

var processDir string

// Setup prepares the harness for a test binary: it removes what crashed runs left behind
// and makes this process's directory. Call it from TestMain; the returned function
// removes the directory (call it after m.Run).
func Setup() (cleanup func(), err error) {
	if err := CleanLeftovers(); err != nil {
		return nil, err
	}
	processDir = filepath.Join(Base, strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(processDir, 0o755); err != nil {
		return nil, err
	}
	return func() {
		cleanDir(processDir)
	}, nil
}

// Dir returns a new directory for test t under this process's directory, removed when
// the test ends.
func Dir(t testing.TB) string {
	t.Helper()
	if processDir == "" {
		t.Fatal("harness.Setup was not called from TestMain")
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	if len(name) > 40 {
		name = name[:40]
	}
	dir, err := os.MkdirTemp(processDir, name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanDir(dir) })
	return dir
}

// CleanLeftovers removes the directories of test processes that are no longer alive,
// with the processes and mounts that refer to them.
func CleanLeftovers() error {
	ents, err := os.ReadDir(Base)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pid == os.Getpid() || alive(pid) {
			continue
		}
		dir := filepath.Join(Base, e.Name())
		fmt.Fprintf(os.Stderr, "harness: removing leftovers of crashed test process %d in %s\n", pid, dir)
		cleanDir(dir)
	}
	return nil
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

// cleanDir removes the containers run under dir (with runc, so that their processes and
// cgroups go too), kills processes whose command line mentions dir (daemons, shims,
// registries), unmounts everything mounted below it (deepest first) and removes it.
func cleanDir(dir string) {
	deleteContainers(dir)
	killUsers(dir)
	for _, m := range mountsUnder(dir) {
		if err := unix.Unmount(m, 0); err != nil {
			unix.Unmount(m, unix.MNT_DETACH)
		}
	}
	// With the containers' network namespaces unpinned, their interfaces leave the
	// bridges (the kernel takes a moment).
	deleteBridges(dir)
	deleteStaleForwardRules()
	if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintf(os.Stderr, "harness: remove %s: %v\n", dir, err)
	}
}

func killUsers(dir string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var victims []int
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), dir) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if pid == os.Getpid() {
			continue
		}
		syscall.Kill(pid, syscall.SIGTERM)
		victims = append(victims, pid)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range victims {
		for alive(pid) && time.Now().Before(deadline) && !zombie(pid) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(pid) && !zombie(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] == 'Z'
}

// mountsUnder lists mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	// Deepest first, and later mounts over earlier ones first.
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// Mounts returns the mount points below dir, for tests that check nothing is left.
func Mounts(dir string) []string { return mountsUnder(dir) }

// NeedRoot stops the test binary with a clear message when not running as root: the
// integration tests mount filesystems, create device nodes and run containers.
func NeedRoot() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("these tests need root (they mount overlayfs, create device nodes and run the daemon); run them with sudo or as root: make test")
	}
	return nil
}

// Need checks that the programs the tests run are installed.
func Need(programs ...string) error {
	var missing []string
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: run make deps", strings.Join(missing, ", "))
	}
	return nil
}

// Main is a TestMain for packages that use the harness: it checks for root and the
// programs named, sets up (cleaning what crashed runs left), runs the tests and cleans
// up. A check that fails stops the test binary with a message saying why.
func Main(m *testing.M, programs ...string) {
	fail := func(err error) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", filepath.Base(os.Args[0]), err)
		os.Exit(1)
	}
	if err := NeedRoot(); err != nil {
		fail(err)
	}
	if err := Need(programs...); err != nil {
		fail(err)
	}
	cleanup, err := Setup()
	if err != nil {
		fail(err)
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// deleteContainers force-deletes, with runc, every container of every daemon data root
// below dir: their processes are not children of anything the test started. The vm
// runtime's containers (their QEMU and virtiofsd go with killUsers) have their firewall
// rules deleted too.
func deleteContainers(dir string) {
	roots, _ := filepath.Glob(filepath.Join(dir, "*", "*", "runtime", "oci", "runc"))
	more, _ := filepath.Glob(filepath.Join(dir, "*", "runtime", "oci", "runc"))
	for _, root := range append(roots, more...) {
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			if e.IsDir() {
				exec.Command("runc", "--root", root, "delete", "--force", e.Name()).Run()
				deleteNetworkRules(e.Name())
			}
		}
	}
	vms, _ := filepath.Glob(filepath.Join(dir, "*", "*", "runtime", "vm", "containers", "*"))
	more, _ = filepath.Glob(filepath.Join(dir, "*", "runtime", "vm", "containers", "*"))
	for _, c := range append(vms, more...) {
		deleteNetworkRules(filepath.Base(c))
	}
}

// deleteNetworkRules deletes the firewall rules CNI's plugins made for container id
// (NAT, published ports), which its deletion without the daemon left: every rule that
// names the container, and the chains they jump to.
func deleteNetworkRules(id string) {
	for _, table := range []string{"nat", "filter"} {
		out, _ := exec.Command("iptables-save", "-t", table).Output()
		var chains []string
		for _, line := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(line, "-A ") || !strings.Contains(line, `id: \"`+id+`\"`) {
				continue
			}
			args := []string{"-w", "-t", table, "-D"}
			args = append(args, splitRule(line[3:])...)
			exec.Command("iptables", args...).Run()
			if i := strings.Index(line, " -j CNI-"); i >= 0 {
				chains = append(chains, strings.Fields(line[i+4:])[0])
			}
		}
		for _, c := range chains {
			if strings.HasPrefix(c, "CNI-HOSTPORT") {
				continue
			}
			exec.Command("iptables", "-w", "-t", table, "-F", c).Run()
			exec.Command("iptables", "-w", "-t", table, "-X", c).Run()
		}
	}
}

// splitRule splits an iptables-save rule into arguments, keeping quoted comments whole.
func splitRule(rule string) []string {
	var out []string
	var cur strings.Builder
	quoted, escaped := false, false
	for _, r := range rule {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case r == '\\':
			escaped = true
		case r == '"':
			quoted = !quoted
		case r == ' ' && !quoted:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// deleteStaleForwardRules deletes the forwarding rules of networks' bridges (dm-*) that
// are gone: a daemon deletes its idle bridges when it stops, and one killed with its
// test leaves their rules. (The bridges themselves are left to their daemons: another
// package's test may be making one right now.)
func deleteStaleForwardRules() {
	out, _ := exec.Command("iptables", "-w", "-S", "DUTCHMAN-FORWARD").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "-A" {
			continue
		}
		for i := 2; i+1 < len(f); i++ {
			if (f[i] == "-i" || f[i] == "-o") && strings.HasPrefix(f[i+1], "dm-") && f[i+1] != "dm-+" {
				if _, err := os.Stat(filepath.Join("/sys/class/net", f[i+1])); os.IsNotExist(err) {
					exec.Command("iptables", append([]string{"-w", "-D"}, f[1:]...)...).Run()
					break
				}
			}
		}
	}
}

// deleteBridges deletes the idle bridges of the networks recorded under dir, which a
// daemon killed with its test (not stopped, which deletes them) leaves behind.
func deleteBridges(dir string) {
	dbs, _ := filepath.Glob(filepath.Join(dir, "*", "dutchman.db"))
	more, _ := filepath.Glob(filepath.Join(dir, "*", "*", "dutchman.db"))
	for _, p := range append(dbs, more...) {
		db, err := bolt.Open(p, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
		if err != nil {
			continue
		}
		var bridges []string
		db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("networks"))
			if b == nil {
				return nil
			}
			return b.ForEach(func(_, v []byte) error {
				var n struct{ Bridge string }
				if json.Unmarshal(v, &n) == nil && strings.HasPrefix(n.Bridge, "dm-") {
					bridges = append(bridges, n.Bridge)
				}
				return nil
			})
		})
		db.Close()
		for _, br := range bridges {
			for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				ports, err := os.ReadDir(filepath.Join("/sys/class/net", br, "brif"))
				if err != nil {
					break // gone already
				}
				if len(ports) == 0 {
					exec.Command("ip", "link", "delete", br).Run()
					break
				}
				if time.Now().After(deadline) {
					break // another test's container is on it
				}
			}
		}
	}
}
