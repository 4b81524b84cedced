package compose

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/sirupsen/logrus"
	"go.yaml.in/yaml/v3"

	"github.com/flyingdutchman/flyingdutchman/engine"
	"github.com/flyingdutchman/flyingdutchman/engine/network"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/volumes"
)

// ServiceKeys are the keys of a compose service a container's spec file may hold, in the
// order a rendered spec shows them.
var ServiceKeys = []string{
	"image", "command", "entrypoint", "environment", "env_file", "working_dir", "user",
	"restart", "labels", "hostname", "mem_limit", "cpus", "runtime", "stop_signal",
	"stop_grace_period", "tty", "stdin_open", "volumes", "tmpfs", "network_mode", "networks",
	"ports", "healthcheck", "build",
}

var quietLoader sync.Once

// quiet silences the loader, which warns on its own logger (of unset variables, as
// Compose does): nothing here reads that logger, and its lines would only clutter the
// daemon's stderr.
func quiet() { logrus.SetOutput(io.Discard) }

// Extension keys for what docker run asks and compose has no key for: --rm and -P.
const (
	autoRemoveKey = "x-auto-remove"
	publishAllKey = "x-publish-all"
)

// TreeSpecDir is where spec files are in the tree, which is / to the loader (in the jail
// of the tree's backing directory).
const TreeSpecDir = "/containers"

// LoadOptions say how LoadService reads a spec file.
type LoadOptions struct {
	// Env holds the values of the variables (${VAR}) the file uses.
	Env map[string]string
	// InTree tells that the file is a spec file of the tree, and filename its path in
	// the tree (the loader runs in the jail of the tree's backing directory). A relative
	// bind source is then a directory of the tree, which the engine resolves inside it.
	InTree bool
	// Privileged lets the file do what only root may: bind host paths (absolute, or
	// under ~), which gives the container's root the host's files, publish host ports
	// below 1024, and use the host's network. A spec file of the tree is privileged only
	// if the tree's owner is root.
	Privileged bool
}

// LoadService reads a container's spec file: data, named filename, is the body of one
// compose service (a mapping of image, command, environment, ...). Relative paths in it
// (env_file, bind sources) are relative to the file's directory; variables (${VAR}) are
// interpolated from opts.Env. An error says which line is wrong.
func LoadService(ctx context.Context, filename string, data []byte, opts LoadOptions) (engine.Spec, error) {
	quietLoader.Do(quiet)
	base := filepath.Base(filename)
	fail := func(line int, format string, args ...any) error {
		msg := fmt.Sprintf(format, args...)
		if line > 0 {
			return errdefs.Invalid(fmt.Errorf("%s: line %d: %s", base, line, msg))
		}
		return errdefs.Invalid(fmt.Errorf("%s: %s", base, msg))
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return engine.Spec{}, fail(0, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Content) == 0 {
		return engine.Spec{}, fail(0, "the file is empty: a spec needs at least an image (image: busybox)")
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return engine.Spec{}, fail(top.Line, "a spec is a mapping of keys (image: ..., command: ...), not a %s", kindName(top.Kind))
	}
	keyLine := map[string]int{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		keyLine[top.Content[i].Value] = top.Content[i].Line
	}
	var body map[string]any
	if err := top.Decode(&body); err != nil {
		return engine.Spec{}, fail(0, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	flags := map[string]bool{}
	for _, k := range []string{autoRemoveKey, publishAllKey} {
		if v, ok := body[k]; ok {
			b, isBool := v.(bool)
			if !isBool {
				return engine.Spec{}, fail(keyLine[k], "%s: want true or false", k)
			}
			flags[k] = b
		}
	}
	_, hasImage := body["image"]
	_, hasBuild := body["build"]
	if !hasImage && !hasBuild {
		return engine.Spec{}, fail(0, "no image: a spec needs one (image: busybox), or a build: section")
	}
	if _, ok := body["container_name"]; ok {
		return engine.Spec{}, fail(keyLine["container_name"], "container_name: the container's name is the file's name")
	}

	// What compose knows but FlyingDutchman does not do yet is refused, not ignored,
	// before the loader runs: it would read the files some of them name.
	var unsupported []string
	for k := range body {
		if !slices.Contains(ServiceKeys, k) && !strings.HasPrefix(k, "x-") {
			unsupported = append(unsupported, k)
		}
	}
	if len(unsupported) > 0 {
		sort.Slice(unsupported, func(i, j int) bool { return keyLine[unsupported[i]] < keyLine[unsupported[j]] })
		k := unsupported[0]
		if !composeKeys()[k] {
			return engine.Spec{}, fail(keyLine[k], "unknown key %s (the keys a spec takes: %s)", k, strings.Join(ServiceKeys, ", "))
		}
		return engine.Spec{}, fail(keyLine[k], "%s: not supported by FlyingDutchman yet (the keys it takes: %s)", k, strings.Join(ServiceKeys, ", "))
	}

	topVolumes, err := namedVolumes(body["volumes"])
	if err != nil {
		return engine.Spec{}, fail(keyLine["volumes"], "volumes: %v", err)
	}
	networkOrder, err := networkNames(top)
	if err != nil {
		return engine.Spec{}, fail(keyLine["networks"], "networks: %v", err)
	}
	if m, _ := body["network_mode"].(string); strings.HasPrefix(m, "service:") || strings.HasPrefix(m, "container:") {
		// Refused before the loader, which would look for the service.
		return engine.Spec{}, fail(keyLine["network_mode"], "network_mode: %s", unsupportedMode(m))
	}
	topNetworks := map[string]any{}
	for _, n := range networkOrder {
		// Each is the engine's network of that name, as a project's external network.
		topNetworks[n] = map[string]any{"name": n, "external": true}
	}
	dir := filepath.Dir(filename)
	// Env files are read here, not by the loader: see readEnvFiles.
	envFiles, err := envFileList(body["env_file"], dir)
	if err != nil {
		return engine.Spec{}, fail(keyLine["env_file"], "env_file: %v", err)
	}
	delete(body, "env_file")

	name := strings.TrimSuffix(base, filepath.Ext(base))
	envMap := types.Mapping{}
	for k, v := range opts.Env {
		envMap[k] = v
	}
	details := types.ConfigDetails{
		WorkingDir:  filepath.Dir(filename),
		ConfigFiles: []types.ConfigFile{{Filename: filename, Config: map[string]any{"services": map[string]any{name: body}, "volumes": topVolumes, "networks": topNetworks}}},
		Environment: envMap,
	}
	project, err := loader.LoadWithContext(ctx, details, func(o *loader.Options) {
		o.SetProjectName("dutchman", true)
		o.ResolvePaths = false
	})
	if err != nil {
		key := blame(err.Error(), name, keyLine)
		return engine.Spec{}, fail(keyLine[key], "%s", explain(err, name))
	}
	s, ok := project.Services[name]
	if !ok {
		return engine.Spec{}, fail(0, "no service in the file")
	}
	environment, err := readEnvFiles(envFiles, s.Environment, envMap)
	if err != nil {
		return engine.Spec{}, fail(keyLine["env_file"], "%v", err)
	}
	s.Environment = environment
	if s.Build != nil {
		// The image built is the spec's image:, or the container's name.
		if err := checkBuild(name, s.Build); err != nil {
			return engine.Spec{}, fail(keyLine["build"], "%v", err)
		}
		if s.Image == "" {
			s.Image = name
		}
	}
	spec, key, err := specOf(project, s, networkOrder, dir, opts)
	if err != nil {
		return engine.Spec{}, fail(keyLine[key], "%v", err)
	}
	if s.Build != nil {
		b := BuildOptionsOf(project, s, opts)
		spec.Build = &b
	}
	spec.AutoRemove, spec.PublishAll = flags[autoRemoveKey], flags[publishAllKey]
	// An empty command (command: []) clears the image's, as docker run --entrypoint "".
	if _, ok := body["command"]; ok && spec.Command == nil {
		spec.Command = []string{}
	}
	if _, ok := body["entrypoint"]; ok && spec.Entrypoint == nil {
		spec.Entrypoint = []string{}
	}
	if err := engine.ValidateSpec(&spec); err != nil {
		return engine.Spec{}, fail(keyLine[blameSpec(err)], "%s", err.Error())
	}
	return spec, nil
}

// bindSource sets the source of bind m, which the file at dir says as v.Source: a host
// path (absolute, or under ~), which opts may refuse, or a path relative to dir, which in
// the tree is a directory of the tree.
func bindSource(m *volumes.Mount, v types.ServiceVolumeConfig, dir string, opts LoadOptions) error {
	src := v.Source
	// Compose makes a missing source unless bind.create_host_path is false.
	m.CreateHostPath = v.Bind == nil || bool(v.Bind.CreateHostPath)
	hostPath := filepath.IsAbs(src) || strings.HasPrefix(src, "~")
	switch {
	case src == "":
		return errors.New("a bind mount needs a source")
	case hostPath && !opts.Privileged:
		return fmt.Errorf("bind mount of %s: a spec file in the tree of a user other than root binds only directories of the tree (a path relative to the spec, such as ./site); a bind of a host path gives the container's root the host's files. Use a named volume, or dutchman run -v", src)
	case hostPath:
		if strings.HasPrefix(src, "~") {
			home, err := os.UserHomeDir()
			if err != nil {
				return fmt.Errorf("bind mount of %s: %w", src, err)
			}
			src = filepath.Join(home, strings.TrimPrefix(src, "~"))
		}
		m.Source = filepath.Clean(src)
	case opts.InTree:
		// The tree's directories are not made for a bind: the directory would be
		// root's, not the tree owner's.
		m.Source, m.InTree, m.CreateHostPath = filepath.Join(dir, src), true, false
	default:
		m.Source = filepath.Join(dir, src)
	}
	return nil
}

// namedVolumes reads a spec's volumes: and returns the named volumes it uses, declared
// as a compose project's top-level volumes must be (each is the engine's volume of that
// name, not a project's).
func namedVolumes(v any) (map[string]any, error) {
	top := map[string]any{}
	list, ok := v.([]any)
	if v != nil && !ok {
		return nil, errors.New("want a list of mounts")
	}
	for _, e := range list {
		var typ, source string
		switch e := e.(type) {
		case string:
			parts := strings.Split(e, ":")
			if len(parts) >= 2 {
				source = parts[0]
			}
			typ = "volume"
			if strings.ContainsAny(source, "/~") || strings.HasPrefix(source, ".") {
				typ = "bind"
			}
		case map[string]any:
			typ, _ = e["type"].(string)
			source, _ = e["source"].(string)
		default:
			return nil, fmt.Errorf("want a mount (NAME:/path or type: ...), not %v", e)
		}
		switch typ {
		case "volume", "":
			if source != "" {
				if err := volumes.ValidName(source); err != nil {
					return nil, err
				}
				top[source] = map[string]any{"name": source, "external": true}
			}
		}
	}
	return top, nil
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "single value"
	}
	return "document"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// blame finds the key of the service an error of the compose loader is about.
func blame(msg, service string, keyLine map[string]int) string {
	re := regexp.MustCompile(`services(?:\.` + regexp.QuoteMeta(service) + `|\[` + regexp.QuoteMeta(service) + `\])\.([a-z_]+)`)
	if m := re.FindStringSubmatch(msg); m != nil {
		return m[1]
	}
	// Messages that name no path (an env file, an address) name the key's value.
	for _, k := range ServiceKeys {
		if strings.Contains(msg, strings.ReplaceAll(k, "_", " ")) && keyLine[k] > 0 {
			return k
		}
	}
	return ""
}

// explain makes a compose loader's message read as one about a spec file.
func explain(err error, service string) string {
	msg := err.Error()
	msg = strings.ReplaceAll(msg, "decoding failed due to the following error(s):\n\n", "")
	msg = regexp.MustCompile(`validating [^:]+: `).ReplaceAllString(msg, "")
	msg = strings.ReplaceAll(msg, "services."+service+".", "")
	msg = strings.ReplaceAll(msg, "'services["+service+"].", "'")
	msg = strings.ReplaceAll(msg, "services."+service+" ", "")
	// The schema's word for a value of the wrong type.
	msg = strings.ReplaceAll(msg, " must be a null", " must be a string or a list")
	if strings.HasSuffix(msg, " false schema") {
		msg = "unknown key " + strings.TrimSuffix(msg, " false schema")
	}
	return strings.TrimSpace(msg)
}

// blameSpec finds the key an engine's spec validation error is about.
func blameSpec(err error) string {
	msg := err.Error()
	for _, kw := range []struct{ word, key string }{
		{"restart policy", "restart"}, {"memory", "mem_limit"}, {"cpus", "cpus"},
		{"signal", "stop_signal"}, {"working directory", "working_dir"}, {"grace period", "stop_grace_period"},
		{"environment", "environment"}, {"runtime", "runtime"}, {"--rm", "restart"}, {"mount", "volumes"},
		{"ports cannot be published", "ports"}, {"network host:", "network_mode"},
		{"healthcheck", "healthcheck"}, {"port", "ports"}, {"network", "networks"}, {"alias", "networks"}, {"IPv4", "networks"},
	} {
		if strings.Contains(msg, kw.word) {
			return kw.key
		}
	}
	return ""
}

// maxEnvFile is the largest env_file a spec may name.
const maxEnvFile = 1 << 20

// envFileList reads a spec's env_file: (a path, or a list of paths or of {path,
// required, format} mappings), with paths made absolute in dir.
func envFileList(v any, dir string) ([]types.EnvFile, error) {
	var list []types.EnvFile
	add := func(p string, required bool, format string) error {
		if strings.Contains(p, "$") {
			return fmt.Errorf("%s: variables are not taken in env_file paths", p)
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		list = append(list, types.EnvFile{Path: p, Required: types.OptOut(required), Format: format})
		return nil
	}
	switch v := v.(type) {
	case nil:
	case string:
		return list, add(v, true, "")
	case []any:
		for _, e := range v {
			var err error
			switch e := e.(type) {
			case string:
				err = add(e, true, "")
			case map[string]any:
				p, _ := e["path"].(string)
				if p == "" {
					return nil, errors.New("an entry needs a path")
				}
				required := true
				if r, ok := e["required"].(bool); ok {
					required = r
				}
				format, _ := e["format"].(string)
				err = add(p, required, format)
			default:
				return nil, fmt.Errorf("want a path or {path, required}, not %v", e)
			}
			if err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("want a path or a list of paths, not %v", v)
	}
	return list, nil
}

// readEnvFiles reads the env files in order into the environment explicit starts, and
// returns it, the explicit values winning, as Compose does. The daemon reads them (as
// root): each is opened without blocking (a FIFO), checked on its descriptor to be a
// regular file, and read through it, at most 1 MiB: a device node swapped in after a
// check by path would hand the daemon a disk or /dev/zero.
func readEnvFiles(files []types.EnvFile, explicit types.MappingWithEquals, project types.Mapping) (types.MappingWithEquals, error) {
	if len(files) == 0 {
		return explicit, nil
	}
	environment := explicit.ToMapping()
	resolve := func(k string) (string, bool) {
		if v, ok := project.Resolve(k); ok {
			return v, true
		}
		if v, ok := explicit[k]; ok && v != nil {
			return *v, true
		}
		return "", false
	}
	for _, ef := range files {
		data, err := readEnvFile(ef.Path)
		if errors.Is(err, fs.ErrNotExist) {
			if !bool(ef.Required) {
				continue
			}
			return nil, fmt.Errorf("env file %s not found", ef.Path)
		}
		if err != nil {
			return nil, err
		}
		if err := dotenv.ParseWithFormat(bytes.NewReader(data), ef.Path, environment, resolve, ef.Format); err != nil {
			return nil, err
		}
	}
	return environment.ToMappingWithEquals().OverrideBy(explicit), nil
}

// readEnvFile reads the env file at path: a regular file of at most 1 MiB.
func readEnvFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxEnvFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxEnvFile {
		return nil, fmt.Errorf("%s is larger than 1 MiB", path)
	}
	return data, nil
}

// composeKeys are the keys of a compose service, from compose-go's own type.
var composeKeys = sync.OnceValue(func() map[string]bool {
	keys := map[string]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			switch {
			case strings.Contains(opts, "inline") && f.Type.Kind() == reflect.Struct:
				walk(f.Type)
			case name != "" && name != "-" && !strings.HasPrefix(name, "#"):
				keys[name] = true
			}
		}
	}
	walk(reflect.TypeOf(types.ServiceConfig{}))
	return keys
})

// networkNames reads the networks a spec's service joins (networks: as a list of names
// or a mapping of name to settings), in the file's order: the first is the container's
// first interface.
func networkNames(top *yaml.Node) ([]string, error) {
	var v *yaml.Node
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value == "networks" {
			v = top.Content[i+1]
		}
	}
	if v == nil {
		return nil, nil
	}
	var names []string
	switch v.Kind {
	case yaml.SequenceNode:
		for _, n := range v.Content {
			if n.Kind != yaml.ScalarNode {
				return nil, errors.New("want a list of network names, or a mapping of names to settings")
			}
			names = append(names, n.Value)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(v.Content); i += 2 {
			names = append(names, v.Content[i].Value)
		}
	default:
		return nil, errors.New("want a list of network names, or a mapping of names to settings")
	}
	for _, n := range names {
		switch n {
		case network.None, network.Host:
			return nil, fmt.Errorf("%s is a network mode: write network_mode: %s", n, n)
		}
		if err := network.ValidName(n); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// networkRequests are the networks service s joins, as its network_mode or networks say.
func networkRequests(s types.ServiceConfig, order []string) ([]network.Request, error) {
	if s.NetworkMode != "" {
		if len(s.Networks) > 0 {
			return nil, errors.New("network_mode and networks cannot be combined")
		}
		switch s.NetworkMode {
		case network.None, network.Host, network.Default:
			return []network.Request{{Network: s.NetworkMode}}, nil
		}
		return nil, errors.New(unsupportedMode(s.NetworkMode))
	}
	var reqs []network.Request
	for _, name := range order {
		r := network.Request{Network: name}
		if c := s.Networks[name]; c != nil {
			switch {
			case c.Ipv6Address != "", len(c.LinkLocalIPs) > 0:
				return nil, fmt.Errorf("%s: only IPv4 addresses are supported (ipv4_address)", name)
			case c.MacAddress != "", c.InterfaceName != "", len(c.DriverOpts) > 0, c.GatewayPriority != 0, c.Priority != 0:
				return nil, fmt.Errorf("%s: aliases and ipv4_address are the settings supported", name)
			}
			r.IP, r.Aliases = c.Ipv4Address, c.Aliases
		}
		reqs = append(reqs, r)
	}
	return reqs, nil
}

func unsupportedMode(mode string) string {
	return fmt.Sprintf("%s is not supported (none, host, or %s; or networks: to join networks by name)", mode, network.Default)
}

// publishedPorts reads a compose port as docker run -p would: [IP:][HOSTPORT:]PORT/PROTO.
func publishedPorts(p types.ServicePortConfig) ([]network.Port, error) {
	spec := strconv.FormatUint(uint64(p.Target), 10)
	if p.HostIP != "" || p.Published != "" {
		spec = p.Published + ":" + spec
	}
	if p.HostIP != "" {
		spec = p.HostIP + ":" + spec
	}
	if p.Protocol != "" {
		spec += "/" + p.Protocol
	}
	return network.ParsePort(spec)
}
