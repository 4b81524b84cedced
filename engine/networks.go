package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/flyingdutchman/flyingdutchman/engine/network"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// hostName is what a network alias may be: a host name.
var hostName = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,251}[a-zA-Z0-9])?$`)

// unprivilegedNetworks refuses the host's network and host ports below 1024 to a spec
// from the tree of a user other than root: neither is a user's to take.
func unprivilegedNetworks(reqs []network.Request, ports []network.Port) error {
	for _, r := range reqs {
		if r.Network == network.Host {
			return errdefs.Invalid(errors.New("network host: a spec file in the tree of a user other than root may not use the host's network"))
		}
	}
	for _, p := range ports {
		if p.HostPort > 0 && p.HostPort < 1024 {
			return errdefs.Invalid(fmt.Errorf("port %d: a spec file in the tree of a user other than root publishes host ports from 1024 up, as the user could bind", p.HostPort))
		}
	}
	return nil
}

// validateNetworks checks a spec's networks and ports.
func validateNetworks(reqs []network.Request, ports []network.Port) error {
	seen := map[string]bool{}
	for _, r := range reqs {
		switch r.Network {
		case network.None, network.Host:
			if len(reqs) > 1 {
				return errdefs.Invalid(fmt.Errorf("network %s cannot be combined with other networks", r.Network))
			}
			if r.IP != "" || len(r.Aliases) > 0 {
				return errdefs.Invalid(fmt.Errorf("network %s takes no address or alias", r.Network))
			}
			if len(ports) > 0 {
				return errdefs.Invalid(fmt.Errorf("ports cannot be published with network %s", r.Network))
			}
		default:
			if err := network.ValidName(r.Network); err != nil {
				return err
			}
		}
		if seen[r.Network] {
			return errdefs.Invalid(fmt.Errorf("network %s named twice", r.Network))
		}
		seen[r.Network] = true
		if r.IP != "" && net.ParseIP(r.IP).To4() == nil {
			return errdefs.Invalid(fmt.Errorf("invalid IPv4 address %q", r.IP))
		}
		for _, a := range r.Aliases {
			if !hostName.MatchString(a) {
				return errdefs.Invalid(fmt.Errorf("invalid network alias %q: a host name (letters, digits, '-' and '.', at most 253 characters)", a))
			}
		}
	}
	if len(ports) > network.MaxPorts {
		return errdefs.Invalid(fmt.Errorf("%d ports published: at most %d per container (each is a set of firewall rules that CNI's portmap adds one at a time; 1000 took 72 s). For a large range, use --network host", len(ports), network.MaxPorts))
	}
	published := map[string]bool{}
	for _, p := range ports {
		if p.ContainerPort < 1 || p.ContainerPort > 65535 || p.HostPort < 0 || p.HostPort > 65535 {
			return errdefs.Invalid(fmt.Errorf("invalid port mapping %d:%d: ports are 1 to 65535", p.HostPort, p.ContainerPort))
		}
		if p.Protocol != "tcp" && p.Protocol != "udp" {
			return errdefs.Invalid(fmt.Errorf("invalid protocol %q: tcp or udp", p.Protocol))
		}
		if p.HostIP != "" && net.ParseIP(p.HostIP).To4() == nil {
			return errdefs.Invalid(fmt.Errorf("invalid host address %q", p.HostIP))
		}
		key := fmt.Sprintf("%s:%d/%s", p.HostIP, p.HostPort, p.Protocol)
		if p.HostPort != 0 && published[key] {
			return errdefs.Invalid(fmt.Errorf("host port %s published twice", key))
		}
		published[key] = true
	}
	return nil
}

// Networks are the engine's networks.
func (e *Engine) Networks() *network.Manager { return e.networks }

// netRequests are the networks c joins: the default one unless it names others.
func netRequests(c *Container) []network.Request {
	if len(c.Spec.Networks) == 0 {
		return []network.Request{{Network: network.Default}}
	}
	return c.Spec.Networks
}

// netMode is "host", "none", or "" for networks.
func netMode(c *Container) string {
	if r := netRequests(c); len(r) == 1 && (r[0].Network == network.Host || r[0].Network == network.None) {
		return r[0].Network
	}
	return ""
}

func (e *Engine) netnsPath(id string) string { return filepath.Join(e.cfg.DataRoot, "netns", id) }

// netRun is what connect made for one run of a container.
type netRun struct {
	NetNS      string // "host" for the host's
	Endpoints  []network.Endpoint
	HostsFile  string
	ResolvConf string
}

// connect makes c's network namespace and puts it on its networks, publishing its ports
// (a host port of 0 becomes a free one). On failure it undoes what it made.
func (e *Engine) connect(ctx context.Context, c *Container) (*netRun, error) {
	run := &netRun{HostsFile: filepath.Join(e.containerDir(c.ID), "hosts"), ResolvConf: filepath.Join(e.containerDir(c.ID), "resolv.conf")}
	if err := os.MkdirAll(e.containerDir(c.ID), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(run.ResolvConf, resolvConf(), 0o644); err != nil {
		return nil, err
	}
	switch netMode(c) {
	case network.Host:
		// A copy of the host's: the container may write its /etc/hosts.
		hosts, err := os.ReadFile("/etc/hosts")
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		if err := os.WriteFile(run.HostsFile, hosts, 0o644); err != nil {
			return nil, err
		}
		run.NetNS = network.Host
		return run, nil
	}
	ns := e.netnsPath(c.ID)
	network.RemoveNS(ns) // what a crash left
	if err := network.NewNS(ns); err != nil {
		return nil, err
	}
	run.NetNS = ns
	if netMode(c) != network.None {
		ports, err := e.reservePorts(c, e.publishedPorts(ctx, c))
		if err != nil {
			network.RemoveNS(ns)
			return nil, err
		}
		if run.Endpoints, err = e.networks.Attach(ctx, c.ID, ns, netRequests(c), ports); err != nil {
			e.releasePorts(c.ID)
			network.RemoveNS(ns)
			return nil, err
		}
	}
	if err := os.WriteFile(run.HostsFile, hostsFile(c, run.Endpoints, e.List()), 0o644); err != nil {
		e.disconnect(ctx, c.ID, run.NetNS, run.Endpoints)
		return nil, err
	}
	return run, nil
}

// disconnect takes a run's endpoints and network namespace down. It goes on past
// errors, which it logs.
func (e *Engine) disconnect(ctx context.Context, id, ns string, eps []network.Endpoint) {
	if ns == "" || ns == network.Host {
		return
	}
	defer e.releasePorts(id)
	ctx = context.WithoutCancel(ctx)
	if err := e.networks.Detach(ctx, id, ns, eps); err != nil {
		e.log.Warn("take a container off its networks", "container", id, "err", err)
	}
	if err := network.RemoveNS(ns); err != nil {
		e.log.Warn("remove a network namespace", "container", id, "err", err)
	}
}

// publishedPorts are the ports c publishes: those its spec names, and with PublishAll
// every port its image exposes that they do not.
func (e *Engine) publishedPorts(ctx context.Context, c *Container) []network.Port {
	ports := slices.Clone(c.Spec.Ports)
	if !c.Spec.PublishAll {
		return ports
	}
	img, err := e.images.Get(ctx, c.ImageID)
	if err != nil || img.Config == nil {
		return ports
	}
	var exposed []string
	for p := range img.Config.Config.ExposedPorts {
		exposed = append(exposed, p)
	}
	slices.Sort(exposed)
	for _, x := range exposed {
		// An image says which of its ports, never where on the host, and not too many.
		port, _, _ := strings.Cut(x, "/")
		lo, hi, _ := strings.Cut(port, "-")
		ps, err := network.ParsePort(x)
		if err == nil && (strings.Contains(x, ":") || (hi != "" && atoi(hi)-atoi(lo) >= network.MaxPorts)) {
			err = fmt.Errorf("not PORT[-PORT][/PROTO] of at most %d ports", network.MaxPorts)
		}
		if err != nil {
			e.log.Warn("an image's EXPOSE that is no port is left alone", "image", c.Image, "port", x)
			continue
		}
		for _, p := range ps {
			if len(ports) == network.MaxPorts {
				e.log.Warn("an image exposes more ports than a container publishes; the rest are left alone", "image", c.Image, "max", network.MaxPorts)
				return ports
			}
			if !slices.ContainsFunc(ports, func(q network.Port) bool { return q.ContainerPort == p.ContainerPort && q.Protocol == p.Protocol }) {
				ports = append(ports, p)
			}
		}
	}
	return ports
}

// portKey names a host port: 8080/tcp.
func portKey(p network.Port) string { return fmt.Sprintf("%d/%s", p.HostPort, p.Protocol) }

// publishedPort is a host port a container's run publishes.
type publishedPort struct {
	hostIP, container string
}

// reservePorts checks that no other container publishes c's ports, and that nothing
// of the host's listens on them (portmap's DNAT would hide it), gives each port asked
// on host port 0 a free one, and reserves them all for c until releasePorts.
func (e *Engine) reservePorts(c *Container, ports []network.Port) ([]network.Port, error) {
	e.portsMu.Lock()
	defer e.portsMu.Unlock()
	taken := func(p network.Port) string {
		if o, ok := e.published[portKey(p)]; ok && o.container != c.ID && (o.hostIP == "" || p.HostIP == "" || o.hostIP == p.HostIP) {
			return o.container
		}
		return ""
	}
	out := slices.Clone(ports)
	for i, p := range out {
		if p.HostPort == 0 {
			for range 100 {
				port, err := bindPort(p, 0)
				if err != nil {
					return nil, fmt.Errorf("find a free host port: %w", err)
				}
				if q := (network.Port{HostIP: p.HostIP, HostPort: port, ContainerPort: p.ContainerPort, Protocol: p.Protocol}); taken(q) == "" {
					out[i] = q
					break
				}
			}
			if out[i].HostPort == 0 {
				return nil, errdefs.Conflict(errors.New("no free host port found"))
			}
			continue
		}
		if id := taken(p); id != "" {
			name := id
			if o, err := e.Get(id); err == nil {
				name = o.Name
			}
			return nil, errdefs.Conflict(fmt.Errorf("host port %s is already published by container %s", portKey(p), name))
		}
		if _, err := bindPort(p, p.HostPort); err != nil {
			return nil, errdefs.Conflict(fmt.Errorf("host port %s is in use on the host: %w", portKey(p), err))
		}
	}
	for _, p := range out {
		e.published[portKey(p)] = publishedPort{hostIP: p.HostIP, container: c.ID}
	}
	return out, nil
}

// releasePorts frees the host ports container id reserved.
func (e *Engine) releasePorts(id string) {
	e.portsMu.Lock()
	defer e.portsMu.Unlock()
	for k, p := range e.published {
		if p.container == id {
			delete(e.published, k)
		}
	}
}

// reservePublished reserves the ports of the runs restore found going.
func (e *Engine) reservePublished(c *Container) {
	e.portsMu.Lock()
	defer e.portsMu.Unlock()
	for _, ep := range c.Endpoints {
		for _, p := range ep.Ports {
			e.published[portKey(p)] = publishedPort{hostIP: p.HostIP, container: c.ID}
		}
	}
}

// bindPort binds p's host port (a free one if port is 0) on the host a moment, and
// returns the port it got: it tells whether the port is free.
func bindPort(p network.Port, port int) (int, error) {
	addr := net.JoinHostPort(p.HostIP, strconv.Itoa(port))
	if p.Protocol == "udp" {
		l, err := net.ListenPacket("udp4", addr)
		if err != nil {
			return 0, err
		}
		defer l.Close()
		return l.LocalAddr().(*net.UDPAddr).Port, nil
	}
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// resolvConf is the host's resolv.conf without its loopback name servers, which the
// container cannot reach (a local caching resolver), and Google's as Docker falls back
// to when none is left.
func resolvConf() []byte {
	data, _ := os.ReadFile("/etc/resolv.conf")
	var b bytes.Buffer
	servers := 0
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			if ip := net.ParseIP(f[1]); ip == nil || ip.IsLoopback() {
				continue
			}
			servers++
		}
		if strings.TrimSpace(line) != "" {
			b.WriteString(line + "\n")
		}
	}
	if servers == 0 {
		b.WriteString("nameserver 8.8.8.8\nnameserver 8.8.4.4\n")
	}
	return b.Bytes()
}

// hostsFile is c's /etc/hosts: loopback, its own addresses under its host name and
// name, and every running container that shares a network with it, under its name and
// aliases on that network.
func hostsFile(c *Container, eps []network.Endpoint, all []*Container) []byte {
	var b bytes.Buffer
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	hostname := c.Spec.Hostname
	if hostname == "" {
		hostname = c.ID[:12]
	}
	if len(eps) == 0 {
		fmt.Fprintf(&b, "127.0.1.1\t%s\n", hostname)
	}
	mine := map[string]bool{}
	for _, ep := range eps {
		mine[ep.Network] = true
		fmt.Fprintf(&b, "%s\t%s\n", ep.IP, strings.Join(uniq(append([]string{hostname, c.Name}, ep.Aliases...)), " "))
	}
	for _, o := range all {
		if o.ID == c.ID || !o.State.Live() {
			continue
		}
		for _, ep := range o.Endpoints {
			if mine[ep.Network] {
				fmt.Fprintf(&b, "%s\t%s\n", ep.IP, strings.Join(uniq(append([]string{o.Name}, ep.Aliases...)), " "))
			}
		}
	}
	return b.Bytes()
}

func uniq(s []string) []string {
	var out []string
	for _, x := range s {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// refreshHosts rewrites the /etc/hosts of the running containers that share a network
// with eps (a container came or went), in place: the file is bind-mounted.
func (e *Engine) refreshHosts(eps []network.Endpoint) {
	// One at a time: an older content written last would name a container that went.
	hostsMu.Lock()
	defer hostsMu.Unlock()
	nets := map[string]bool{}
	for _, ep := range eps {
		nets[ep.Network] = true
	}
	if len(nets) == 0 {
		return
	}
	all := e.List()
	for _, o := range all {
		if !o.State.Live() {
			continue
		}
		if !slices.ContainsFunc(o.Endpoints, func(ep network.Endpoint) bool { return nets[ep.Network] }) {
			continue
		}
		p := filepath.Join(e.containerDir(o.ID), "hosts")
		if err := rewriteInPlace(p, hostsFile(o, o.Endpoints, all)); err != nil && !errors.Is(err, os.ErrNotExist) {
			e.log.Warn("update a container's /etc/hosts", "container", o.Name, "err", err)
		}
	}
}

var hostsMu sync.Mutex

// rewriteInPlace gives the file at path (bind-mounted in a container: it keeps its
// inode) the content data, if it has not: written over the old content first and cut
// to length after, so that a reader never finds it empty.
func rewriteInPlace(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// The container may write the file: no more of it is read than can be equal.
	old, err := io.ReadAll(io.LimitReader(f, int64(len(data))+1))
	if err != nil || bytes.Equal(old, data) {
		return err
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		return err
	}
	return f.Truncate(int64(len(data)))
}

// NetworkInfo is a network and the containers on it.
type NetworkInfo struct {
	network.Network
	// Containers are the containers whose specs name the network, in any state, with
	// their addresses on it while they run.
	Containers []NetworkMember `json:"containers"`
}

// NetworkMember is a container on a network.
type NetworkMember struct {
	Name string `json:"name"`
	ID   string `json:"id"`
	IP   string `json:"ip,omitempty"`
}

// CreateNetwork makes network name.
func (e *Engine) CreateNetwork(name string, opts network.CreateOptions) (*NetworkInfo, error) {
	n, err := e.networks.Create(name, opts)
	if err != nil {
		return nil, err
	}
	e.events.publish(Event{Type: "network", Action: "create", ID: n.ID, Name: n.Name})
	return &NetworkInfo{Network: *n, Containers: []NetworkMember{}}, nil
}

// Network returns network name with its members.
func (e *Engine) Network(name string) (*NetworkInfo, error) {
	n, err := e.networks.Get(name)
	if err != nil {
		return nil, err
	}
	return &NetworkInfo{Network: *n, Containers: e.networkMembers()[name]}, nil
}

// NetworkList returns every network with its members.
func (e *Engine) NetworkList() ([]*NetworkInfo, error) {
	ns, err := e.networks.List()
	if err != nil {
		return nil, err
	}
	members := e.networkMembers()
	out := make([]*NetworkInfo, 0, len(ns))
	for _, n := range ns {
		out = append(out, &NetworkInfo{Network: *n, Containers: members[n.Name]})
	}
	return out, nil
}

// networkMembers maps each network to the containers whose specs name it.
func (e *Engine) networkMembers() map[string][]NetworkMember {
	out := map[string][]NetworkMember{}
	for _, c := range e.List() {
		for _, r := range netRequests(c) {
			m := NetworkMember{Name: c.Name, ID: c.ID}
			for _, ep := range c.Endpoints {
				if ep.Network == r.Network {
					m.IP = ep.IP
				}
			}
			out[r.Network] = append(out[r.Network], m)
		}
	}
	for k, ms := range out {
		slices.SortFunc(ms, func(a, b NetworkMember) int { return strings.Compare(a.Name, b.Name) })
		out[k] = ms
	}
	return out
}

// RemoveNetwork removes network name, unless a container names it (in any state, as a
// volume in use).
func (e *Engine) RemoveNetwork(name string) error {
	n, err := e.networks.Get(name)
	if err != nil {
		return err
	}
	if ms := e.networkMembers()[name]; len(ms) > 0 {
		var names []string
		for _, m := range ms {
			names = append(names, m.Name)
		}
		return errdefs.Conflict(fmt.Errorf("network %s is in use by container %s", name, strings.Join(names, ", ")))
	}
	if err := e.networks.Remove(name); err != nil {
		return err
	}
	e.events.publish(Event{Type: "network", Action: "destroy", ID: n.ID, Name: n.Name})
	return nil
}

// PruneNetworks removes the networks no container names, but the default one.
func (e *Engine) PruneNetworks() ([]string, error) {
	ns, err := e.networks.List()
	if err != nil {
		return nil, err
	}
	members := e.networkMembers()
	var removed []string
	for _, n := range ns {
		if n.Name == network.Default || len(members[n.Name]) > 0 {
			continue
		}
		if err := e.RemoveNetwork(n.Name); err == nil {
			removed = append(removed, n.Name)
		}
	}
	return removed, nil
}

// ConnectNetwork puts container ref on network req.Network too, at once if it runs, and
// in its spec for every run after.
func (e *Engine) ConnectNetwork(ctx context.Context, ref string, req network.Request) error {
	ct, err := e.lookup(ref)
	if err != nil {
		return err
	}
	ct.op.Lock()
	defer ct.op.Unlock()
	c := ct.snapshot()
	reqs := netRequests(c)
	switch netMode(c) {
	case network.None:
		reqs = nil // loopback only, as a disconnect from the last network leaves it
	case network.Host:
		return errdefs.Invalid(fmt.Errorf("container %s is on the host's network, which stands alone", c.Name))
	}
	if slices.ContainsFunc(reqs, func(r network.Request) bool { return r.Network == req.Network }) {
		return errdefs.Conflict(fmt.Errorf("container %s is already on network %s", c.Name, req.Network))
	}
	if err := validateNetworks(append(slices.Clone(reqs), req), nil); err != nil {
		return err
	}
	if _, err := e.networks.Get(req.Network); err != nil {
		return err
	}
	var added []network.Endpoint
	ns := c.NetNS
	if c.NetNS != "" && c.NetNS != network.Host && (c.State == Running || c.State == Paused) {
		next := 0 // the first free ethN: a disconnect may have left a gap
		for _, ep := range c.Endpoints {
			var n int
			if _, err := fmt.Sscanf(ep.IfName, "eth%d", &n); err == nil && n >= next {
				next = n + 1
			}
		}
		if added, err = e.networks.AttachMore(ctx, c.ID, c.NetNS, []network.Request{req}, next); err != nil {
			return err
		}
	}
	err = e.updateNetworks(ct, func(c *Container) error {
		// The run may have ended meanwhile (its exit does not wait for this): then what
		// was added goes, and the connect fails.
		if len(added) > 0 && c.NetNS != ns {
			return errStaleRun
		}
		c.Spec.Networks = append(slices.Clone(reqs), req)
		c.Endpoints = append(slices.Clone(c.Endpoints), added...)
		return nil
	})
	if err != nil {
		e.networks.Detach(context.WithoutCancel(ctx), c.ID, c.NetNS, added)
		return err
	}
	e.refreshHosts(append(added, c.Endpoints...))
	e.publishContainer(ct.snapshot(), "network-connect", map[string]string{"network": req.Network})
	return nil
}

// DisconnectNetwork takes container ref off network name, at once if it runs, and out
// of its spec. A container taken off its last network keeps loopback only.
func (e *Engine) DisconnectNetwork(ctx context.Context, ref, name string) error {
	ct, err := e.lookup(ref)
	if err != nil {
		return err
	}
	ct.op.Lock()
	defer ct.op.Unlock()
	c := ct.snapshot()
	reqs := netRequests(c)
	i := slices.IndexFunc(reqs, func(r network.Request) bool { return r.Network == name })
	if i < 0 || netMode(c) != "" {
		return errdefs.NotFound(fmt.Errorf("container %s is not on network %s", c.Name, name))
	}
	var gone []network.Endpoint
	keep := slices.DeleteFunc(slices.Clone(c.Endpoints), func(ep network.Endpoint) bool {
		if ep.Network == name {
			gone = append(gone, ep)
			return true
		}
		return false
	})
	if len(gone) > 0 {
		if err := e.networks.Detach(ctx, c.ID, c.NetNS, gone); err != nil {
			return err
		}
	}
	left := slices.Delete(slices.Clone(reqs), i, i+1)
	if len(left) == 0 {
		left = []network.Request{{Network: network.None}}
	}
	if err := e.updateNetworks(ct, func(c *Container) error { c.Spec.Networks, c.Endpoints = left, keep; return nil }); err != nil {
		return err
	}
	e.refreshHosts(append(gone, keep...))
	e.publishContainer(ct.snapshot(), "network-disconnect", map[string]string{"network": name})
	return nil
}

var errStaleRun = errdefs.Conflict(errors.New("the container's run ended while it was being connected"))

// updateNetworks changes c's record with f and keeps it, unless f fails.
func (e *Engine) updateNetworks(ct *container, f func(c *Container) error) error {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	next := *ct.rec.Load()
	if err := f(&next); err != nil {
		return err
	}
	if err := e.persist(&next); err != nil {
		return err
	}
	ct.rec.Store(&next)
	return nil
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
