package compose

import (
	"fmt"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/flyingdutchman/flyingdutchman/engine"
	"github.com/flyingdutchman/flyingdutchman/volumes"
)

// specOf makes the spec of a container of service s in project p: p's volumes and
// networks by their engine names, bind sources relative to dir, networks in the order
// given. With an error it returns the service's key to blame.
func specOf(p *types.Project, s types.ServiceConfig, networkOrder []string, dir string, opts LoadOptions) (engine.Spec, string, error) {
	spec := engine.Spec{
		Image: s.Image, WorkingDir: s.WorkingDir, User: s.User, Restart: s.Restart,
		Hostname: s.Hostname, Memory: int64(s.MemLimit), CPUs: float64(s.CPUS), Runtime: s.Runtime,
		StopSignal: s.StopSignal, Tty: s.Tty, OpenStdin: s.StdinOpen, Unprivileged: !opts.Privileged,
	}
	if s.Command != nil {
		spec.Command = append([]string{}, s.Command...)
	}
	if s.Entrypoint != nil {
		spec.Entrypoint = append([]string{}, s.Entrypoint...)
	}
	for _, k := range sortedKeys(s.Environment) {
		if v := s.Environment[k]; v != nil {
			spec.Env = append(spec.Env, k+"="+*v)
		}
	}
	for k, v := range s.Labels {
		// As written: the spec file of a project's container keeps Compose's labels,
		// which a project's up sets over any the file has.
		if spec.Labels == nil {
			spec.Labels = map[string]string{}
		}
		spec.Labels[k] = v
	}
	if s.StopGracePeriod != nil {
		d := engine.Duration(time.Duration(*s.StopGracePeriod))
		spec.StopGracePeriod = &d
	}
	for _, v := range s.Volumes {
		m := volumes.Mount{Type: v.Type, Source: v.Source, Target: v.Target, ReadOnly: v.ReadOnly}
		switch v.Type {
		case "volume":
			if pv, ok := p.Volumes[v.Source]; ok && pv.Name != "" {
				m.Source = pv.Name
			}
		case "tmpfs":
		case "bind":
			// Told apart once loaded: a variable (${SRC}, or type: ${T:-bind}) can make
			// a host path of what the raw file does not show as one.
			if err := bindSource(&m, v, dir, opts); err != nil {
				return engine.Spec{}, "volumes", fmt.Errorf("volumes: %w", err)
			}
		default:
			return engine.Spec{}, "volumes", fmt.Errorf("volumes: %s mounts (%s) are not supported yet", v.Type, v.Source)
		}
		if v.Volume != nil {
			m.NoCopy = v.Volume.NoCopy
		}
		if v.Tmpfs != nil {
			m.TmpfsSize, m.TmpfsMode = int64(v.Tmpfs.Size), v.Tmpfs.Mode
		}
		spec.Mounts = append(spec.Mounts, m)
	}
	for _, t := range s.Tmpfs {
		m, err := volumes.ParseTmpfs(t)
		if err != nil {
			return engine.Spec{}, "tmpfs", fmt.Errorf("tmpfs: %w", err)
		}
		spec.Mounts = append(spec.Mounts, m)
	}
	reqs, err := networkRequests(s, networkOrder)
	if err != nil {
		key := "networks"
		if s.NetworkMode != "" {
			key = "network_mode"
		}
		return engine.Spec{}, key, fmt.Errorf("%s: %w", key, err)
	}
	for i, r := range reqs {
		if pn, ok := p.Networks[r.Network]; ok && pn.Name != "" {
			reqs[i].Network = pn.Name
		}
	}
	spec.Networks = reqs
	if hc := s.HealthCheck; hc != nil {
		spec.Healthcheck = &engine.Healthcheck{Test: hc.Test, Disable: hc.Disable}
		dur := func(d *types.Duration) *engine.Duration {
			if d == nil {
				return nil
			}
			v := engine.Duration(*d)
			return &v
		}
		h := spec.Healthcheck
		h.Interval, h.Timeout, h.StartPeriod, h.StartInterval = dur(hc.Interval), dur(hc.Timeout), dur(hc.StartPeriod), dur(hc.StartInterval)
		if hc.Retries != nil {
			h.Retries = int(*hc.Retries)
		}
	}
	for _, port := range s.Ports {
		ports, err := publishedPorts(port)
		if err != nil {
			return engine.Spec{}, "ports", fmt.Errorf("ports: %w", err)
		}
		spec.Ports = append(spec.Ports, ports...)
	}
	return spec, "", nil
}
