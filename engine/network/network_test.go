package network

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// openManager opens a Manager on a database and directory of the test's own.
func openManager(t *testing.T) *Manager {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	m, err := Open(t.TempDir(), db)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestCreateChecksItsInput refuses names that are modes, subnets no network can have,
// and gateways that are not host addresses; two networks do not share a subnet.
func TestCreateChecksItsInput(t *testing.T) {
	m := openManager(t)
	for _, c := range []struct {
		name string
		opts CreateOptions
	}{
		{"none", CreateOptions{}},
		{"loopback", CreateOptions{}},
		{"a/b", CreateOptions{}},
		{"x", CreateOptions{Subnet: "127.0.0.0/8"}},
		{"x", CreateOptions{Subnet: "0.0.0.0/0"}},
		{"x", CreateOptions{Subnet: "10.250.1.0/31"}},
		{"x", CreateOptions{Subnet: "169.254.0.0/16"}},
		{"x", CreateOptions{Subnet: "10.250.1.0/24", Gateway: "10.250.1.0"}},
		{"x", CreateOptions{Subnet: "10.250.1.0/24", Gateway: "10.250.1.255"}},
		{"x", CreateOptions{Subnet: "10.250.1.0/24", Gateway: "10.250.2.1"}},
	} {
		if n, err := m.Create(c.name, c.opts); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Create(%q, %+v) = %+v, %v; want it refused", c.name, c.opts, n, err)
		}
	}
	a, err := m.Create("a", CreateOptions{Subnet: "10.250.1.0/24", Gateway: "10.250.1.254"})
	if err != nil || a.Gateway != "10.250.1.254" {
		t.Fatalf("Create a: %+v, %v", a, err)
	}
	if _, err := m.Create("b", CreateOptions{Subnet: "10.250.0.0/16"}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("an overlapping subnet: %v", err)
	}
	b, err := m.Create("b", CreateOptions{})
	if err != nil || b.Subnet == a.Subnet {
		t.Errorf("a chosen subnet: %+v, %v", b, err)
	}
}

// TestHostRoutes reads the host's routes as the subnet choice sees them: no default
// route and nothing wider than /8, and loopback's /8 (from the local table) among them.
func TestHostRoutes(t *testing.T) {
	rs, err := hostRoutes()
	if err != nil {
		t.Fatal(err)
	}
	loopback := false
	for _, r := range rs {
		if ones, _ := r.Mask.Size(); ones < 8 {
			t.Errorf("a route wider than /8: %s", r)
		}
		if r.String() == "127.0.0.0/8" {
			loopback = true
		}
	}
	if !loopback {
		t.Errorf("127.0.0.0/8 (the local table's) is not among %v", rs)
	}
}

// TestOtherEnginesSubnets skips the subnets other engines' configurations name, which
// have no route while their networks are idle.
func TestOtherEnginesSubnets(t *testing.T) {
	cni, netavark := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(cni, "87-podman.conflist"), []byte(`{"plugins": [{"type": "bridge", "ipam": {"ranges": [[{"subnet": "10.113.0.0/24"}]]}}]}`), 0o644)
	os.WriteFile(filepath.Join(netavark, "web.json"), []byte(`{"name": "web", "subnets": [{"subnet": "10.113.1.0/24", "gateway": "10.113.1.1"}, {"subnet": "fd00::/64"}]}`), 0o644)
	os.WriteFile(filepath.Join(netavark, "notes.txt"), []byte(`{"subnet": "10.113.2.0/24"}`), 0o644)
	os.WriteFile(filepath.Join(netavark, "broken.json"), []byte(`{"subnet": `), 0o644)
	var got []string
	for _, n := range configuredSubnets([]string{cni, netavark, filepath.Join(cni, "missing")}) {
		got = append(got, n.String())
	}
	slices.Sort(got)
	if want := []string{"10.113.0.0/24", "10.113.1.0/24"}; !slices.Equal(got, want) {
		t.Errorf("configured subnets: %v; want %v", got, want)
	}

	saved := otherConfigs
	otherConfigs = []string{cni, netavark}
	defer func() { otherConfigs = saved }()
	m := openManager(t)
	s, err := m.chooseSubnet("", nil)
	if err != nil || s.String() == "10.113.0.0/24" || s.String() == "10.113.1.0/24" {
		t.Errorf("chosen subnet %v, %v: one another engine has", s, err)
	}
}
