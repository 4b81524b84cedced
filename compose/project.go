package compose

import (
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

// defaultFiles are the names a project's file may have, and the override files, in the
// project's directory.
var defaultFiles = []string{
	"compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml",
	"compose.override.yaml", "compose.override.yml", "docker-compose.override.yaml", "docker-compose.override.yml", ".env",
}

// Load reads a project as docker compose does: files merged with overrides, .env,
// interpolation, profiles, extends and include.
func Load(ctx context.Context, o Options) (*types.Project, error) {
	quietLoader.Do(quiet)
	env := make([]string, 0, len(o.Env))
	for k, v := range o.Env {
		env = append(env, k+"="+v)
	}
	opts := []cli.ProjectOptionsFn{
		cli.WithWorkingDirectory(o.WorkingDir),
		cli.WithEnv(env),
		cli.WithEnvFiles(),
		cli.WithDotEnv,
		cli.WithConfigFileEnv,
		cli.WithDefaultConfigPath,
		cli.WithName(o.Name),
		cli.WithProfiles(o.Profiles),
	}
	if o.Guarded {
		files := slices.Clone(o.Files)
		for _, f := range defaultFiles {
			files = append(files, filepath.Join(o.WorkingDir, f))
		}
		for _, f := range files {
			if _, err := readEnvFile(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, errdefs.Invalid(fmt.Errorf("%s: %w", f, err))
			}
		}
		opts = append(opts, cli.WithoutEnvironmentResolution)
	}
	po, err := cli.NewProjectOptions(o.Files, opts...)
	if err != nil {
		return nil, errdefs.Invalid(err)
	}
	p, err := po.LoadProject(ctx)
	if err != nil {
		return nil, errdefs.Invalid(blameFile(err, po.ConfigPaths))
	}
	if o.Guarded {
		for name, s := range p.Services {
			s.Environment = s.Environment.Resolve(p.Environment.Resolve)
			env, err := readEnvFiles(s.EnvFiles, s.Environment, p.Environment)
			if err != nil {
				return nil, errdefs.Invalid(fmt.Errorf("service %s: %w", name, err))
			}
			s.Environment = env
			p.Services[name] = s
		}
	}
	return p, nil
}

// blameFile names the file an error is about when the loader's message does not: a
// YAML syntax error says only its line.
func blameFile(err error, files []string) error {
	for _, f := range files {
		if strings.Contains(err.Error(), f) {
			return err
		}
	}
	for _, f := range files {
		data, rerr := os.ReadFile(f)
		if rerr != nil {
			continue
		}
		var doc yaml.Node
		if yerr := yaml.Unmarshal(data, &doc); yerr != nil {
			return fmt.Errorf("%s: %s", f, strings.TrimPrefix(yerr.Error(), "yaml: "))
		}
	}
	if len(files) == 1 {
		return fmt.Errorf("%s: %w", files[0], err)
	}
	return err
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
	if s.Build != nil && s.Image == "" {
		return engine.Spec{}, errdefs.Invalid(fmt.Errorf("service %s: build: is not supported yet; give it an image", s.Name))
	}
	if s.Image == "" {
		return engine.Spec{}, errdefs.Invalid(fmt.Errorf("service %s has neither an image nor a build context", s.Name))
	}
	var order []string
	for name := range s.Networks {
		order = append(order, name)
	}
	// Compose orders a service's networks by priority, then by name.
	sort.SliceStable(order, func(i, j int) bool {
		pi, pj := 0, 0
		if c := s.Networks[order[i]]; c != nil {
			pi = c.Priority
		}
		if c := s.Networks[order[j]]; c != nil {
			pj = c.Priority
		}
		if pi != pj {
			return pi > pj
		}
		return order[i] < order[j]
	})
	for _, c := range s.Networks {
		if c != nil {
			c.Priority = 0 // used above; not a setting of the network itself
		}
	}
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
