package compose

import (
	"bytes"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/flyingdutchman/flyingdutchman/engine"
	"github.com/flyingdutchman/flyingdutchman/engine/network"
	"github.com/flyingdutchman/flyingdutchman/volumes"
)

// RenderService writes spec as the body of a compose service: the spec file of a
// container made by another door (the CLI, the API), and the normalised spec.yaml.
// LoadService reads it back to the same spec.
func RenderService(spec engine.Spec) []byte {
	m := &yaml.Node{Kind: yaml.MappingNode}
	add := func(key string, value *yaml.Node) {
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, value)
	}
	scalar := func(v string) *yaml.Node {
		// LoadService interpolates ${VAR}: a literal dollar is written $$.
		v = strings.ReplaceAll(v, "$", "$$")
		n := &yaml.Node{Kind: yaml.ScalarNode, Value: v}
		// Quote what YAML would read as something other than a string.
		var back any
		if yaml.Unmarshal([]byte(v), &back) != nil || back != v {
			n.Style = yaml.DoubleQuotedStyle
		}
		return n
	}
	plain := func(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: v} }
	list := func(vs []string) *yaml.Node {
		n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for _, v := range vs {
			n.Content = append(n.Content, scalar(v))
		}
		return n
	}
	add("image", scalar(spec.Image))
	if spec.Command != nil {
		add("command", list(spec.Command))
	}
	if spec.Entrypoint != nil {
		add("entrypoint", list(spec.Entrypoint))
	}
	if len(spec.Env) > 0 {
		env := &yaml.Node{Kind: yaml.SequenceNode}
		for _, e := range spec.Env {
			env.Content = append(env.Content, scalar(e))
		}
		add("environment", env)
	}
	if spec.WorkingDir != "" {
		add("working_dir", scalar(spec.WorkingDir))
	}
	if spec.User != "" {
		add("user", scalar(spec.User))
	}
	if spec.Restart != "" {
		add("restart", scalar(spec.Restart))
	}
	if len(spec.Labels) > 0 {
		labels := &yaml.Node{Kind: yaml.MappingNode}
		for _, k := range sortedKeys(spec.Labels) {
			labels.Content = append(labels.Content, scalar(k), scalar(spec.Labels[k]))
		}
		add("labels", labels)
	}
	if spec.Hostname != "" {
		add("hostname", scalar(spec.Hostname))
	}
	if spec.Memory != 0 {
		add("mem_limit", plain(formatInt(spec.Memory)))
	}
	if spec.CPUs != 0 {
		add("cpus", plain(strings.TrimRight(strings.TrimRight(formatFloat(spec.CPUs), "0"), ".")))
	}
	if spec.Runtime != "" {
		add("runtime", scalar(spec.Runtime))
	}
	if spec.StopSignal != "" {
		add("stop_signal", scalar(spec.StopSignal))
	}
	if spec.StopGracePeriod != nil {
		add("stop_grace_period", plain(time.Duration(*spec.StopGracePeriod).String()))
	}
	if spec.Tty {
		add("tty", plain("true"))
	}
	if spec.OpenStdin {
		add("stdin_open", plain("true"))
	}
	if len(spec.Mounts) > 0 {
		vols := &yaml.Node{Kind: yaml.SequenceNode}
		for _, m := range spec.Mounts {
			vols.Content = append(vols.Content, renderMount(m, scalar, plain))
		}
		add("volumes", vols)
	}
	renderNetworks(spec.Networks, add, scalar, plain)
	if len(spec.Ports) > 0 {
		ports := &yaml.Node{Kind: yaml.SequenceNode}
		for _, p := range spec.Ports {
			ports.Content = append(ports.Content, scalar(renderPort(p)))
		}
		add("ports", ports)
	}
	if h := spec.Healthcheck; h != nil {
		hc := &yaml.Node{Kind: yaml.MappingNode}
		kv := func(k string, v *yaml.Node) { hc.Content = append(hc.Content, plain(k), v) }
		if len(h.Test) > 0 {
			kv("test", list(h.Test))
		}
		for _, d := range []struct {
			key string
			d   *engine.Duration
		}{{"interval", h.Interval}, {"timeout", h.Timeout}, {"start_period", h.StartPeriod}, {"start_interval", h.StartInterval}} {
			if d.d != nil {
				kv(d.key, plain(time.Duration(*d.d).String()))
			}
		}
		if h.Retries != 0 {
			kv("retries", plain(strconv.Itoa(h.Retries)))
		}
		if h.Disable {
			kv("disable", plain("true"))
		}
		add("healthcheck", hc)
	}
	if b := spec.Build; b != nil {
		bn := &yaml.Node{Kind: yaml.MappingNode}
		kv := func(k string, v *yaml.Node) { bn.Content = append(bn.Content, plain(k), v) }
		kv("context", scalar(b.Context))
		for _, f := range []struct{ key, v string }{{"dockerfile", b.Dockerfile}, {"dockerfile_inline", b.DockerfileInline}, {"target", b.Target}} {
			if f.v != "" {
				kv(f.key, scalar(f.v))
			}
		}
		for _, f := range []struct {
			key string
			m   map[string]string
		}{{"args", b.Args}, {"labels", b.Labels}} {
			if len(f.m) > 0 {
				mn := &yaml.Node{Kind: yaml.MappingNode}
				for _, k := range sortedKeys(f.m) {
					mn.Content = append(mn.Content, scalar(k), scalar(f.m[k]))
				}
				kv(f.key, mn)
			}
		}
		if len(b.Platforms) > 0 {
			kv("platforms", list(b.Platforms))
		}
		if len(b.Tags) > 1 {
			// The first is the image's own name.
			kv("tags", list(b.Tags[1:]))
		}
		if b.NoCache {
			kv("no_cache", plain("true"))
		}
		if b.Pull {
			kv("pull", plain("true"))
		}
		add("build", bn)
	}
	if spec.AutoRemove {
		add(autoRemoveKey, plain("true"))
	}
	if spec.PublishAll {
		add(publishAllKey, plain("true"))
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(m); err != nil {
		// A tree of strings always encodes.
		panic(err)
	}
	return b.Bytes()
}

// renderMount writes a mount in Compose's short syntax (NAME:/path[:ro], /path for an
// anonymous volume) where it says everything, and in the long syntax otherwise.
func renderMount(m volumes.Mount, scalar, plain func(string) *yaml.Node) *yaml.Node {
	if m.InTree {
		// A directory of the tree, relative to the spec file's.
		rel, err := filepath.Rel(TreeSpecDir, m.Source)
		if err == nil && !strings.HasPrefix(rel, "..") {
			rel = "./" + rel
		}
		m.Source = rel
	}
	// The short syntax makes a missing bind source.
	longBind := m.Type == "bind" && !m.CreateHostPath && !m.InTree
	if (m.Type == "volume" || m.Type == "bind") && !m.NoCopy && !longBind {
		short := m.Target
		if m.Source != "" {
			short = m.Source + ":" + m.Target
			if m.ReadOnly {
				short += ":ro"
			}
		}
		if m.Source != "" || !m.ReadOnly {
			return scalar(short)
		}
	}
	n := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
	kv := func(k string, v *yaml.Node) { n.Content = append(n.Content, plain(k), v) }
	kv("type", plain(m.Type))
	if m.Source != "" {
		kv("source", scalar(m.Source))
	}
	kv("target", scalar(m.Target))
	if m.ReadOnly {
		kv("read_only", plain("true"))
	}
	if longBind {
		kv("bind", &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle, Content: []*yaml.Node{plain("create_host_path"), plain("false")}})
	}
	if m.NoCopy {
		kv("volume", &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle, Content: []*yaml.Node{plain("nocopy"), plain("true")}})
	}
	if m.Type == "tmpfs" && (m.TmpfsSize != 0 || m.TmpfsMode != 0) {
		t := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
		if m.TmpfsSize != 0 {
			t.Content = append(t.Content, plain("size"), plain(formatInt(m.TmpfsSize)))
		}
		if m.TmpfsMode != 0 {
			// In octal, as people write modes (YAML reads 01777 so).
			t.Content = append(t.Content, plain("mode"), plain("0"+strconv.FormatUint(uint64(m.TmpfsMode), 8)))
		}
		kv("tmpfs", t)
	}
	return n
}

func formatInt(n int64) string { return strconv.FormatInt(n, 10) }

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) }

// renderNetworks writes the networks a container joins: network_mode for none, host and
// the default alone, a list of names, or a mapping where one has an address or aliases.
func renderNetworks(reqs []network.Request, add func(string, *yaml.Node), scalar, plain func(string) *yaml.Node) {
	if len(reqs) == 0 {
		return
	}
	if r := reqs[0]; len(reqs) == 1 && r.IP == "" && len(r.Aliases) == 0 &&
		(r.Network == network.None || r.Network == network.Host || r.Network == network.Default) {
		add("network_mode", scalar(r.Network))
		return
	}
	settings := false
	for _, r := range reqs {
		settings = settings || r.IP != "" || len(r.Aliases) > 0
	}
	if !settings {
		list := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for _, r := range reqs {
			list.Content = append(list.Content, scalar(r.Network))
		}
		add("networks", list)
		return
	}
	m := &yaml.Node{Kind: yaml.MappingNode}
	for _, r := range reqs {
		n := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
		if r.IP != "" {
			n.Content = append(n.Content, plain("ipv4_address"), scalar(r.IP))
		}
		if len(r.Aliases) > 0 {
			aliases := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, a := range r.Aliases {
				aliases.Content = append(aliases.Content, scalar(a))
			}
			n.Content = append(n.Content, plain("aliases"), aliases)
		}
		m.Content = append(m.Content, scalar(r.Network), n)
	}
	add("networks", m)
}

// renderPort writes a published port as docker run -p takes it.
func renderPort(p network.Port) string {
	host := ""
	if p.HostPort != 0 {
		host = strconv.Itoa(p.HostPort)
	}
	s := strconv.Itoa(p.ContainerPort) + "/" + p.Protocol
	switch {
	case p.HostIP != "":
		return p.HostIP + ":" + host + ":" + s
	case host != "":
		return host + ":" + s
	}
	return s
}
