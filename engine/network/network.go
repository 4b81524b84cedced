package network

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	bolt "go.etcd.io/bbolt"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// Default is the network a container joins when it names none, as Docker's "bridge".
const Default = "bridge"

// PluginDirs are where CNI plugins are looked for: Debian's containernetworking-plugins.
var PluginDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// pool is where networks take their subnets from, a /24 each, skipping the host's routes
// and the subnets other engines' configurations name. It is clear of the defaults of
// Docker (172.17-31, 192.168), Podman (10.88, 10.89), nerdctl (10.4) and Kubernetes
// (10.96/12, 10.42-43, 10.244).
var pool = net.IPNet{IP: net.IPv4(10, 113, 0, 0).To4(), Mask: net.CIDRMask(16, 32)}

// otherConfigs are where other engines keep their networks' configurations: CNI's
// (Podman before 4, nerdctl, Kubernetes) and netavark's (Podman 4 on). A network of
// theirs has no route while no container uses it, and keeps its subnet.
var otherConfigs = []string{"/etc/cni/net.d", "/etc/containers/networks"}

var bucket = []byte("networks")

// Network is a bridge network.
type Network struct {
	Name    string            `json:"name"`
	ID      string            `json:"id"`
	Driver  string            `json:"driver"`
	Subnet  string            `json:"subnet"`
	Gateway string            `json:"gateway"`
	Bridge  string            `json:"bridge"` // the host's bridge device
	Labels  map[string]string `json:"labels,omitempty"`
	Created time.Time         `json:"created"`
}

// CreateOptions are what a new network may say; the rest is chosen.
type CreateOptions struct {
	Subnet  string // CIDR; one that clashes with no route of the host's if ""
	Gateway string // the subnet's first address if ""
	Labels  map[string]string
}

// Request asks for a container's place on a network.
type Request struct {
	Network string   `json:"network"`
	IP      string   `json:"ip,omitempty"` // a static address in the network's subnet, or "" for any
	Aliases []string `json:"aliases,omitempty"`
}

// The network modes that are not networks.
const (
	None = "none" // loopback only
	Host = "host" // the host's own network namespace
)

// MaxPorts is how many ports a container publishes at most: portmap adds each one's
// firewall rules with iptables runs of their own, about 70 ms a port here.
const MaxPorts = 256

// Port is a published port: HostPort on the host (HostIP, or every address) to
// ContainerPort in the container.
type Port struct {
	HostIP        string `json:"host_ip,omitempty"`
	HostPort      int    `json:"host_port"`
	ContainerPort int    `json:"container_port"`
	Protocol      string `json:"protocol"` // tcp or udp
}

// Endpoint is a container's place on a network, as CNI made it.
type Endpoint struct {
	Network string   `json:"network"`
	IfName  string   `json:"ifname"`
	IP      string   `json:"ip"` // without the prefix length
	Prefix  int      `json:"prefix"`
	Gateway string   `json:"gateway"`
	MAC     string   `json:"mac,omitempty"`
	Aliases []string `json:"aliases,omitempty"`
	// Ports are the ports published through this endpoint: the DEL that removes them
	// must name them again.
	Ports []Port `json:"ports,omitempty"`
}

// Manager keeps the networks and attaches containers to them.
type Manager struct {
	db  *bolt.DB
	dir string
	cni *libcni.CNIConfig
	// mu serialises changes to the networks (create, remove) and the choice of subnets.
	mu sync.Mutex
	// attaching is held (read) by every attach while it runs, and (write) by
	// ReleaseIdleBridges, which must not take a bridge from under a container being
	// put on it. closed, under it, refuses attaches after the release.
	attaching sync.RWMutex
	closed    bool
}

// Open opens the networks whose records are in db and whose CNI state lives under dir,
// and makes the default network if it is missing.
func Open(dir string, db *bolt.DB) (*Manager, error) {
	if err := os.MkdirAll(filepath.Join(dir, "cache"), 0o700); err != nil {
		return nil, err
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		return nil, err
	}
	// An exec of our own: libcni makes its default lazily, unguarded, on the first of
	// calls that may come together.
	exec := &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: version.PluginDecoder{}}
	m := &Manager{db: db, dir: dir, cni: libcni.NewCNIConfigWithCacheDir(PluginDirs, filepath.Join(dir, "cache"), exec)}
	if _, err := m.Get(Default); errors.Is(err, errdefs.ErrNotFound) {
		if _, err := m.create(Default, CreateOptions{}, ""); err != nil {
			return nil, fmt.Errorf("default network: %w", err)
		}
	} else if err != nil {
		return nil, err
	}
	return m, nil
}

var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$`)

// ValidName returns an errdefs.Invalid error unless name can name a network.
func ValidName(name string) error {
	if !validName.MatchString(name) {
		return errdefs.Invalid(fmt.Errorf("invalid network name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-]* is allowed, at most 64 characters", name))
	}
	switch name {
	case "none", "host", "container", "default", "loopback":
		return errdefs.Invalid(fmt.Errorf("invalid network name %q: it is a network mode", name))
	}
	return nil
}

// Create makes network name.
func (m *Manager) Create(name string, opts CreateOptions) (*Network, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	return m.create(name, opts, "")
}

func (m *Manager) create(name string, opts CreateOptions, bridge string) (*Network, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.Get(name); err == nil {
		return nil, errdefs.Conflict(fmt.Errorf("network %s already exists", name))
	}
	existing, err := m.List()
	if err != nil {
		return nil, err
	}
	subnet, err := m.chooseSubnet(opts.Subnet, existing)
	if err != nil {
		return nil, err
	}
	gw := firstHost(subnet)
	if opts.Gateway != "" {
		if gw = net.ParseIP(opts.Gateway).To4(); gw == nil || !subnet.Contains(gw) || gw.Equal(subnet.IP) || gw.Equal(lastAddr(subnet)) {
			return nil, errdefs.Invalid(fmt.Errorf("gateway %s is not a host address of %s", opts.Gateway, subnet))
		}
	}
	id := randomID()
	if bridge == "" {
		bridge = "dm-" + id[:10]
	}
	n := &Network{Name: name, ID: id, Driver: "bridge", Subnet: subnet.String(), Gateway: gw.String(), Bridge: bridge, Labels: opts.Labels, Created: time.Now().UTC().Round(0)}
	data, err := json.Marshal(n)
	if err != nil {
		return nil, err
	}
	if err := m.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put([]byte(name), data) }); err != nil {
		return nil, err
	}
	return n, nil
}

// Get returns network name.
func (m *Manager) Get(name string) (*Network, error) {
	var n *Network
	err := m.db.View(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucket).Get([]byte(name))
		if data == nil {
			return errdefs.NotFound(fmt.Errorf("no such network: %s", name))
		}
		n = &Network{}
		return json.Unmarshal(data, n)
	})
	return n, err
}

// List returns the networks by name.
func (m *Manager) List() ([]*Network, error) {
	var out []*Network
	err := m.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(_, v []byte) error {
			n := &Network{}
			if err := json.Unmarshal(v, n); err != nil {
				return err
			}
			out = append(out, n)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// Remove removes network name; the caller checks that no container uses it. Its bridge
// goes with it.
func (m *Manager) Remove(name string) error {
	if name == Default {
		return errdefs.Invalid(errors.New("the default network cannot be removed"))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.Get(name)
	if err != nil {
		return err
	}
	if err := m.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Delete([]byte(name)) }); err != nil {
		return err
	}
	deleteLink(n.Bridge)
	unisolate(n.Bridge)
	os.RemoveAll(filepath.Join(m.dir, "ipam", n.Name))
	return nil
}

// chooseSubnet returns want, checked, or the first /24 of the pool that no network and
// no route of the host's overlaps.
func (m *Manager) chooseSubnet(want string, existing []*Network) (*net.IPNet, error) {
	var taken []*net.IPNet
	for _, n := range existing {
		if _, s, err := net.ParseCIDR(n.Subnet); err == nil {
			taken = append(taken, s)
		}
	}
	if want != "" {
		_, s, err := net.ParseCIDR(want)
		if err != nil || s.IP.To4() == nil {
			return nil, errdefs.Invalid(fmt.Errorf("invalid subnet %q: want an IPv4 CIDR such as 10.90.0.0/24", want))
		}
		if ones, _ := s.Mask.Size(); ones > 30 || ones < 8 {
			return nil, errdefs.Invalid(fmt.Errorf("subnet %s: want a prefix of /8 to /30", want))
		}
		if ip := s.IP.To4(); ip.IsLoopback() || ip.IsMulticast() || ip.IsUnspecified() || ip.IsLinkLocalUnicast() {
			return nil, errdefs.Invalid(fmt.Errorf("subnet %s is not one for a network (loopback, link-local, multicast or unspecified)", want))
		}
		for _, t := range taken {
			if overlaps(s, t) {
				return nil, errdefs.Conflict(fmt.Errorf("subnet %s overlaps %s of another network", s, t))
			}
		}
		return s, nil
	}
	routes, err := hostRoutes()
	if err != nil {
		return nil, err
	}
	taken = append(taken, routes...)
	taken = append(taken, configuredSubnets(otherConfigs)...)
	base := binary.BigEndian.Uint32(pool.IP.To4())
	for i := uint32(0); i < 256; i++ {
		ip := make(net.IP, 4)
		binary.BigEndian.PutUint32(ip, base+i<<8)
		s := &net.IPNet{IP: ip, Mask: net.CIDRMask(24, 32)}
		free := true
		for _, t := range taken {
			if overlaps(s, t) {
				free = false
				break
			}
		}
		if free {
			return s, nil
		}
	}
	return nil, errdefs.Conflict(fmt.Errorf("no free subnet left in %s", pool.String()))
}

// configuredSubnets returns the subnets that the JSON files in dirs name (as "subnet"
// anywhere in them: CNI's IPAM ranges, netavark's subnets). Unreadable files are skipped:
// they are other programs' business.
func configuredSubnets(dirs []string) []*net.IPNet {
	var out []*net.IPNet
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if str, ok := e.(string); ok && k == "subnet" {
					if _, n, err := net.ParseCIDR(str); err == nil && n.IP.To4() != nil {
						out = append(out, n)
					}
				}
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	for _, dir := range dirs {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			switch filepath.Ext(e.Name()) {
			case ".conflist", ".conf", ".json":
			default:
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			var v any
			if err == nil && len(b) < 1<<20 && json.Unmarshal(b, &v) == nil {
				walk(v)
			}
		}
	}
	return out
}

func overlaps(a, b *net.IPNet) bool { return a.Contains(b.IP) || b.Contains(a.IP) }

// lastAddr is subnet s's broadcast address.
func lastAddr(s *net.IPNet) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, binary.BigEndian.Uint32(s.IP.To4())|^binary.BigEndian.Uint32(net.IP(s.Mask).To4()))
	return ip
}

// firstHost is the first address of subnet s (the gateway's, by default).
func firstHost(s *net.IPNet) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, binary.BigEndian.Uint32(s.IP.To4())+1)
	return ip
}

// hostRoutes are the IPv4 destinations of the host's routes in every routing table (a
// VPN's may be in a table of its own), but for default routes and the halves of the
// address space some VPNs route instead (0.0.0.0/1, 128.0.0.0/1): a subnet under those
// is as free as under a default route.
func hostRoutes() ([]*net.IPNet, error) {
	out, err := exec.Command("ip", "-4", "-o", "route", "show", "table", "all").Output()
	if err != nil {
		return nil, fmt.Errorf("list the host's routes (ip route, from iproute2): %w", err)
	}
	var routes []*net.IPNet
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		dst := f[0]
		switch dst {
		case "local", "broadcast", "unicast", "multicast", "anycast", "blackhole", "unreachable", "prohibit", "throw", "nat":
			if len(f) < 2 {
				continue
			}
			dst = f[1]
		}
		if dst == "default" {
			continue
		}
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		if _, n, err := net.ParseCIDR(dst); err == nil {
			if ones, _ := n.Mask.Size(); ones >= 8 {
				routes = append(routes, n)
			}
		}
	}
	return routes, nil
}

func randomID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// conflist is network n's CNI configuration, with portmap for an attachment that
// publishes ports (each plugin is a program run on every ADD and DEL: one that has
// nothing to do costs a start-up of its own). What the host forwards is not CNI's
// firewall plugin's but the network's own rules (see forwardChain), set once.
func (m *Manager) conflist(n *Network, ports bool) (*libcni.NetworkConfigList, error) {
	plugins := []any{
		map[string]any{
			"type": "bridge", "bridge": n.Bridge, "isGateway": true, "ipMasq": true, "hairpinMode": true,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": n.Subnet, "gateway": n.Gateway}}},
				"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
				"dataDir": filepath.Join(m.dir, "ipam"),
			},
		},
	}
	if ports {
		plugins = append(plugins, map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "snat": true})
	}
	conf := map[string]any{"cniVersion": "1.0.0", "name": n.Name, "plugins": plugins}
	data, err := json.Marshal(conf)
	if err != nil {
		return nil, err
	}
	return libcni.ConfListFromBytes(data)
}

// Attach puts container id, in the namespace at ns, on the networks reqs ask for (eth0,
// eth1, ...), and publishes ports on the first. On failure what it made is undone.
func (m *Manager) Attach(ctx context.Context, id, ns string, reqs []Request, ports []Port) ([]Endpoint, error) {
	return m.attach(ctx, id, ns, reqs, ports, 0)
}

// AttachMore puts a running container, whose namespace has interfaces eth0 to
// eth<first-1> already, on the networks reqs ask for too.
func (m *Manager) AttachMore(ctx context.Context, id, ns string, reqs []Request, first int) ([]Endpoint, error) {
	return m.attach(ctx, id, ns, reqs, nil, first)
}

func (m *Manager) attach(ctx context.Context, id, ns string, reqs []Request, ports []Port, first int) (eps []Endpoint, err error) {
	m.attaching.RLock()
	defer m.attaching.RUnlock()
	if m.closed {
		return nil, errors.New("the daemon is stopping: no network is joined any more")
	}
	// What an ADD made, even in part, a DEL of its name undoes.
	defer func() {
		if err != nil {
			m.Detach(context.WithoutCancel(ctx), id, ns, eps)
			eps = nil
		}
	}()
	for i, r := range reqs {
		n, err := m.Get(r.Network)
		if err != nil {
			return eps, err
		}
		rt := runtimeConf(id, ns, fmt.Sprintf("eth%d", first+i))
		if r.IP != "" {
			ip := net.ParseIP(r.IP).To4()
			if _, s, _ := net.ParseCIDR(n.Subnet); ip == nil || !s.Contains(ip) {
				return eps, errdefs.Invalid(fmt.Errorf("address %s is not in network %s's subnet %s", r.IP, n.Name, n.Subnet))
			}
			rt.Args = append(rt.Args, [2]string{"IP", ip.String()})
		}
		var published []Port
		if i == 0 {
			published = ports
			publish(rt, ports)
		}
		list, err := m.conflist(n, len(published) > 0)
		if err != nil {
			return eps, err
		}
		res, err := m.cni.AddNetworkList(ctx, list, rt)
		eps = append(eps, Endpoint{Network: n.Name, IfName: rt.IfName, Aliases: r.Aliases, Ports: published})
		if err != nil {
			return eps, fmt.Errorf("attach to network %s: %w", n.Name, err)
		}
		if err := isolate(n.Bridge); err != nil {
			return eps, fmt.Errorf("attach to network %s: %w", n.Name, err)
		}
		ep, err := endpoint(res, n, rt.IfName)
		if err != nil {
			return eps, err
		}
		ep.Aliases, ep.Ports = r.Aliases, published
		eps[len(eps)-1] = ep
	}
	return eps, nil
}

// Detach takes container id off the networks of eps (its addresses, its interfaces
// and its published ports go). It goes on past errors and returns the first.
func (m *Manager) Detach(ctx context.Context, id, ns string, eps []Endpoint) error {
	var first error
	for i := len(eps) - 1; i >= 0; i-- {
		ep := eps[i]
		n, err := m.Get(ep.Network)
		if err != nil {
			// The network went (removed while nothing was attached, say): the record
			// of what to undo is in libcni's cache, which a DEL of the same name reads.
			n = &Network{Name: ep.Network, Bridge: "none"}
		}
		list, err := m.conflist(n, len(ep.Ports) > 0)
		if err == nil {
			rt := runtimeConf(id, ns, ep.IfName)
			publish(rt, ep.Ports)
			err = m.cni.DelNetworkList(ctx, list, rt)
		}
		if err != nil && first == nil {
			first = fmt.Errorf("detach from network %s: %w", ep.Network, err)
		}
	}
	return first
}

// publish asks portmap, through rt, for ports.
func publish(rt *libcni.RuntimeConf, ports []Port) {
	if len(ports) == 0 {
		return
	}
	var pm []map[string]any
	for _, p := range ports {
		pm = append(pm, map[string]any{"hostPort": p.HostPort, "containerPort": p.ContainerPort, "protocol": p.Protocol, "hostIP": p.HostIP})
	}
	rt.CapabilityArgs = map[string]any{"portMappings": pm}
}

func runtimeConf(id, ns, ifName string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: ns, IfName: ifName, Args: [][2]string{{"IgnoreUnknown", "1"}}}
}

// endpoint reads what CNI's ADD said of interface ifName.
func endpoint(res types.Result, n *Network, ifName string) (Endpoint, error) {
	r, err := current.NewResultFromResult(res)
	if err != nil {
		return Endpoint{}, err
	}
	ep := Endpoint{Network: n.Name, IfName: ifName, Gateway: n.Gateway}
	for i, iface := range r.Interfaces {
		if iface.Name != ifName || iface.Sandbox == "" {
			continue
		}
		ep.MAC = iface.Mac
		for _, ip := range r.IPs {
			if ip.Interface != nil && *ip.Interface == i && ip.Address.IP.To4() != nil {
				ep.IP = ip.Address.IP.String()
				ep.Prefix, _ = ip.Address.Mask.Size()
				if ip.Gateway != nil {
					ep.Gateway = ip.Gateway.String()
				}
			}
		}
	}
	if ep.IP == "" {
		return ep, fmt.Errorf("network %s gave %s no IPv4 address", n.Name, ifName)
	}
	return ep, nil
}

// ReleaseStale takes down what CNI recorded for the containers keep does not keep
// (their runs ended while the daemon was away, or they went): addresses, published
// ports and firewall rules, from libcni's cache of each ADD. It returns the first error.
func (m *Manager) ReleaseStale(ctx context.Context, keep func(containerID string) bool) error {
	atts, err := m.cni.GetCachedAttachments("")
	if err != nil {
		return err
	}
	var first error
	for _, a := range atts {
		if keep(a.ContainerID) {
			continue
		}
		list, err := libcni.ConfListFromBytes(a.Config)
		if err == nil {
			err = m.cni.DelNetworkList(ctx, list, &libcni.RuntimeConf{ContainerID: a.ContainerID, NetNS: a.NetNS, IfName: a.IfName, Args: a.CniArgs, CapabilityArgs: a.CapabilityArgs})
		}
		if err != nil && first == nil {
			first = fmt.Errorf("release %s of container %s: %w", a.Network, a.ContainerID, err)
		}
	}
	return first
}

// ReleaseIdleBridges deletes the bridges that no container is on, with their forwarding
// rules: a stopping daemon leaves no idle device behind. A bridge is made again, with
// its rules, when a container next joins its network. Attaches in flight end first;
// later ones are refused.
func (m *Manager) ReleaseIdleBridges() {
	m.attaching.Lock()
	defer m.attaching.Unlock()
	m.closed = true
	ns, err := m.List()
	if err != nil {
		return
	}
	for _, n := range ns {
		if idleBridge(n.Bridge) {
			deleteLink(n.Bridge)
			unisolate(n.Bridge)
		}
	}
}
