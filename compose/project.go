package compose

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/flyingdutchman/flyingdutchman/engine"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// Docker Compose's labels, which FlyingDutchman sets the same way so that tools that
// read them (and people who know them) find what they expect.
const (
	LabelProject     = "com.docker.compose.project"
	LabelService     = "com.docker.compose.service"
	LabelNumber      = "com.docker.compose.container-number"
	LabelConfigHash  = "com.docker.compose.config-hash"
	LabelOneoff      = "com.docker.compose.oneoff"
	LabelWorkingDir  = "com.docker.compose.project.working_dir"
	LabelConfigFiles = "com.docker.compose.project.config_files"
	LabelDependsOn   = "com.docker.compose.depends_on"
	LabelNetwork     = "com.docker.compose.network"
	LabelVolume      = "com.docker.compose.volume"
)

// Options say which project to load, as docker compose's global flags do.
type Options struct {
	// Files are the compose files, merged in order; none: compose.yaml (or
	// compose.yml, docker-compose.yaml, docker-compose.yml) in WorkingDir.
	Files []string `json:"files,omitempty"`
	// WorkingDir is the project's directory (the first file's if "").
	WorkingDir string `json:"workingDir,omitempty"`
	// Name is the project's name (-p); "" takes name: from the files, or the
	// directory's name.
	Name     string   `json:"name,omitempty"`
	Profiles []string `json:"profiles,omitempty"`
	// Env is the environment the files are interpolated from (the caller's shell's);
	// the project's .env adds what it lacks.
	Env map[string]string `json:"env,omitempty"`
	// Guarded reads the files as root on behalf of someone else (the tree's project):
	// the compose files and .env must be regular files of at most 1 MiB (a FIFO would
	// block the reader), and env files go through the same checked reader as spec files'.
	Guarded bool `json:"guarded,omitempty"`
}

// Load reads a project as docker compose does: files merged with overrides, .env,
// interpolation, profiles, extends and include.
func Load(ctx context.Context, o Options) (*types.Project, error) {
	quietLoader.Do(quiet)
	if o.Guarded {
		return loadGuarded(ctx, o)
	}
	env := make([]string, 0, len(o.Env))
	for k, v := range o.Env {
		env = append(env, k+"="+v)
	}
	po, err := cli.NewProjectOptions(o.Files,
		cli.WithWorkingDirectory(o.WorkingDir),
		cli.WithEnv(env),
		cli.WithEnvFiles(),
		cli.WithDotEnv,
		cli.WithConfigFileEnv,
		cli.WithDefaultConfigPath,
		cli.WithName(o.Name),
		cli.WithProfiles(o.Profiles))
	if err != nil {
		return nil, errdefs.Invalid(err)
	}
	p, err := po.LoadProject(ctx)
	if err != nil {
		return nil, errdefs.Invalid(blameFile(err, po.ConfigPaths))
	}
	return p, nil
}

// loadGuarded loads a project read as root on someone else's behalf (the tree's): its
// own files only (the default names in its directory, no COMPOSE_FILE, no search above,
// no include, no extends of another file, no label_file), each read once, through the
// checked reader, and handed to the loader as bytes; paths stay as written (a bind of
// ./site is a directory of the tree); env files are read with the same reader.
func loadGuarded(ctx context.Context, o Options) (*types.Project, error) {
	read := func(f string) ([]byte, bool, error) {
		data, err := readEnvFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, errdefs.Invalid(fmt.Errorf("%s: %w", f, err))
		}
		return data, true, nil
	}
	var files []types.ConfigFile
	add := func(names []string) error {
		for _, n := range names {
			f := filepath.Join(o.WorkingDir, n)
			data, ok, err := read(f)
			if err != nil {
				return err
			}
			if ok {
				files = append(files, types.ConfigFile{Filename: f, Content: data})
				return nil
			}
		}
		return nil
	}
	// As Compose picks them: the first of the default names, then the first override.
	if err := add(cli.DefaultFileNames); err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, errdefs.NotFound(fmt.Errorf("no compose.yaml in %s", o.WorkingDir))
	}
	if err := add(cli.DefaultOverrideFileNames); err != nil {
		return nil, err
	}
	for _, f := range files {
		if err := refuseOtherFiles(f); err != nil {
			return nil, err
		}
	}
	env := types.Mapping{}
	if data, ok, err := read(filepath.Join(o.WorkingDir, ".env")); err != nil {
		return nil, err
	} else if ok {
		vars, err := dotenv.ParseWithLookup(bytes.NewReader(data), func(k string) (string, bool) { v, ok := o.Env[k]; return v, ok })
		if err != nil {
			return nil, errdefs.Invalid(fmt.Errorf("%s: %w", filepath.Join(o.WorkingDir, ".env"), err))
		}
		for k, v := range vars {
			env[k] = v
		}
	}
	for k, v := range o.Env {
		env[k] = v // the caller's environment wins over .env, as in Compose
	}
	p, err := loader.LoadWithContext(ctx, types.ConfigDetails{WorkingDir: o.WorkingDir, ConfigFiles: files, Environment: env}, func(lo *loader.Options) {
		if o.Name != "" {
			lo.SetProjectName(o.Name, true)
		}
		lo.ResolvePaths = false
		lo.SkipResolveEnvironment = true
		lo.SkipResolveLabels = true
		lo.SkipInclude = true
		lo.Profiles = o.Profiles
	})
	if err != nil {
		return nil, errdefs.Invalid(blameContent(err, files))
	}
	for name, s := range p.Services {
		s.Environment = s.Environment.Resolve(p.Environment.Resolve)
		for i, f := range s.EnvFiles {
			if !filepath.IsAbs(f.Path) {
				s.EnvFiles[i].Path = filepath.Join(p.WorkingDir, f.Path)
			}
		}
		env, err := readEnvFiles(s.EnvFiles, s.Environment, p.Environment)
		if err != nil {
			return nil, errdefs.Invalid(fmt.Errorf("service %s: %w", name, err))
		}
		s.Environment = env
		p.Services[name] = s
	}
	return p, nil
}

// refuseOtherFiles refuses, in a guarded project's file, what would make the loader read
// other files: include, extends of another file, label_file.
func refuseOtherFiles(f types.ConfigFile) error {
	var doc struct {
		Include  any `yaml:"include"`
		Services map[string]struct {
			Extends   any `yaml:"extends"`
			LabelFile any `yaml:"label_file"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(f.Content, &doc); err != nil {
		return errdefs.Invalid(fmt.Errorf("%s: %s", f.Filename, strings.TrimPrefix(err.Error(), "yaml: ")))
	}
	if doc.Include != nil {
		return errdefs.Invalid(fmt.Errorf("%s: include: a project in the tree is its own files; put what it includes in compose.yaml", f.Filename))
	}
	for name, s := range doc.Services {
		if m, ok := s.Extends.(map[string]any); ok && m["file"] != nil {
			return errdefs.Invalid(fmt.Errorf("%s: service %s: extends of another file: a project in the tree is its own files", f.Filename, name))
		}
		if s.LabelFile != nil {
			return errdefs.Invalid(fmt.Errorf("%s: service %s: label_file is not supported in the tree", f.Filename, name))
		}
	}
	return nil
}

// blameContent names the file a loader's error is about, from the contents it was given.
func blameContent(err error, files []types.ConfigFile) error {
	for _, f := range files {
		if strings.Contains(err.Error(), f.Filename) {
			return err
		}
	}
	for _, f := range files {
		var doc yaml.Node
		if yerr := yaml.Unmarshal(f.Content, &doc); yerr != nil {
			return fmt.Errorf("%s: %s", f.Filename, strings.TrimPrefix(yerr.Error(), "yaml: "))
		}
	}
	if len(files) == 1 {
		return fmt.Errorf("%s: %w", files[0].Filename, err)
	}
	return err
}

// blameFile names the file an error is about when the loader's message does not: a
// YAML syntax error says only its line.
func blameFile(err error, files []string) error {
	var contents []types.ConfigFile
	for _, f := range files {
		data, _ := os.ReadFile(f) // one that cannot be read is blamed for nothing
		contents = append(contents, types.ConfigFile{Filename: f, Content: data})
	}
	return blameContent(err, contents)
}

// planned is a container a project wants: its name, service, number and spec.
type planned struct {
	name    string
	service string
	number  int
	spec    engine.Spec
}

// replicas is how many containers service s wants.
func replicas(s types.ServiceConfig) int {
	switch {
	case s.Scale != nil:
		return *s.Scale
	case s.Deploy != nil && s.Deploy.Replicas != nil:
		return *s.Deploy.Replicas
	}
	return 1
}

// containerName is the name of container number n of service s, as Compose names it.
func containerName(p *types.Project, s types.ServiceConfig, n int) string {
	if s.ContainerName != "" {
		return s.ContainerName
	}
	return fmt.Sprintf("%s-%s-%d", p.Name, s.Name, n)
}

// serviceSpec is the spec of container number n of service s, labelled as Compose
// labels it. The config hash covers everything but the number, so that the replicas
// of one service share it and an unchanged service keeps its containers.
func serviceSpec(p *types.Project, s types.ServiceConfig, n int, lo LoadOptions) (engine.Spec, error) {
	if s.Build != nil {
		s.Image = ImageOf(p, s)
	}
	if s.Image == "" {
		return engine.Spec{}, errdefs.Invalid(fmt.Errorf("service %s has neither an image nor a build context", s.Name))
	}
	var order []string
	priority := map[string]int{}
	networks := map[string]*types.ServiceNetworkConfig{}
	for name, c := range s.Networks {
		order = append(order, name)
		if c != nil {
			// A copy: the project's own is shared by every replica.
			cc := *c
			priority[name], cc.Priority = c.Priority, 0
			c = &cc
		}
		networks[name] = c
	}
	s.Networks = networks
	// Compose orders a service's networks by priority, then by name.
	sort.SliceStable(order, func(i, j int) bool {
		if pi, pj := priority[order[i]], priority[order[j]]; pi != pj {
			return pi > pj
		}
		return order[i] < order[j]
	})
	spec, _, err := specOf(p, s, order, p.WorkingDir, lo)
	if err != nil {
		return engine.Spec{}, errdefs.Invalid(fmt.Errorf("service %s: %w", s.Name, err))
	}
	// Containers reach a service by its name on each of its networks.
	for i := range spec.Networks {
		if spec.Networks[i].Network != "none" && spec.Networks[i].Network != "host" && !slices.Contains(spec.Networks[i].Aliases, s.Name) {
			spec.Networks[i].Aliases = append([]string{s.Name}, spec.Networks[i].Aliases...)
		}
	}
	if spec.Labels == nil {
		spec.Labels = map[string]string{}
	}
	// Compose's labels last, over any the file sets.
	spec.Labels[LabelProject] = p.Name
	spec.Labels[LabelService] = s.Name
	spec.Labels[LabelOneoff] = "False"
	spec.Labels[LabelWorkingDir] = p.WorkingDir
	spec.Labels[LabelConfigFiles] = strings.Join(p.ComposeFiles, ",")
	var deps []string
	for name, d := range s.DependsOn {
		deps = append(deps, fmt.Sprintf("%s:%s:%t", name, d.Condition, d.Restart))
	}
	if len(deps) > 0 {
		sort.Strings(deps)
		spec.Labels[LabelDependsOn] = strings.Join(deps, ",")
	}
	b, _ := json.Marshal(spec)
	sum := sha256.Sum256(b)
	spec.Labels[LabelConfigHash] = hex.EncodeToString(sum[:])
	spec.Labels[LabelNumber] = strconv.Itoa(n)
	return spec, nil
}
