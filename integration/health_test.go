package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/flyingdutchman/flyingdutchman/integration/harness"
)

type health struct {
	Healthcheck *struct{ Test []string }
	Health      *struct {
		Status        string
		FailingStreak int
		Log           []struct {
			ExitCode int
			Output   string
		}
	}
}

func inspectHealth(t *testing.T, d *harness.Daemon, name string) health {
	t.Helper()
	var out []health
	if err := json.Unmarshal([]byte(d.MustRun("inspect", name)), &out); err != nil || len(out) != 1 {
		t.Fatalf("inspect %s: %v", name, err)
	}
	return out[0]
}

// TestHealthcheck runs a container whose health test passes while a file exists: it
// goes from starting to healthy, then unhealthy after its retries once the file goes,
// with health_status events, the status in ps and in the probes' log.
func TestHealthcheck(t *testing.T) {
	d, bb := busyboxDaemon(t)
	d.MustRun("run", "-d", "--name", "hc", "--health-cmd", "cat /ok", "--health-interval", "200ms", "--health-retries", "2",
		bb, "sh", "-c", "echo fine > /ok; exec sleep 1000")
	status := func() string {
		if h := inspectHealth(t, d, "hc").Health; h != nil {
			return h.Status
		}
		return "none"
	}
	eventually(t, 15*time.Second, func() string {
		if s := status(); s != "healthy" {
			return "health " + s + ", want healthy"
		}
		return ""
	})
	if out := d.MustRun("ps"); !strings.Contains(out, "(healthy)") {
		t.Errorf("ps of a healthy container:\n%s", out)
	}
	if h := inspectHealth(t, d, "hc").Health; len(h.Log) == 0 || h.Log[len(h.Log)-1].Output != "fine\n" {
		t.Errorf("the probes' log: %+v", h)
	}
	d.MustRun("exec", "hc", "rm", "/ok")
	eventually(t, 15*time.Second, func() string {
		if s := status(); s != "unhealthy" {
			return "health " + s + ", want unhealthy"
		}
		return ""
	})
	if h := inspectHealth(t, d, "hc").Health; h.FailingStreak < 2 || h.Log[len(h.Log)-1].ExitCode == 0 {
		t.Errorf("an unhealthy container's health: %+v", h)
	}
	events := d.MustRun("events", "--no-follow", "--filter", "container=hc")
	if !strings.Contains(events, "health_status: healthy") || !strings.Contains(events, "health_status: unhealthy") {
		t.Errorf("events lack the health changes:\n%s", events)
	}
	// A stopped container has no health.
	d.MustRun("stop", "-t", "0", "hc")
	if s := status(); s != "none" {
		t.Errorf("health of a stopped container: %s", s)
	}
	// Bad settings are refused.
	if r := d.Run("run", "--health-interval", "0s", "--health-cmd", "true", bb, "true"); r.Code == 0 || !strings.Contains(r.Stderr, "interval") {
		t.Errorf("a zero health interval: exit %d, %s", r.Code, r.Stderr)
	}
}

// TestImageHealthcheck honours an image's HEALTHCHECK, which --no-healthcheck turns
// off and a spec's settings override.
func TestImageHealthcheck(t *testing.T) {
	d, ref := busyboxWithConfig(t, "test/healthy:v1", func(c *v1.Config) {
		c.Healthcheck = &v1.HealthConfig{Test: []string{"CMD", "test", "-e", "/ready"}, Interval: 200 * time.Millisecond, Retries: 1}
	})

	d.MustRun("run", "-d", "--name", "img", ref, "sh", "-c", "touch /ready; exec sleep 1000")
	eventually(t, 15*time.Second, func() string {
		if h := inspectHealth(t, d, "img"); h.Health == nil || h.Health.Status != "healthy" {
			return fmt.Sprintf("the image's healthcheck: %+v", h)
		}
		return ""
	})
	d.MustRun("run", "-d", "--name", "off", "--no-healthcheck", ref, "sleep", "1000")
	if h := inspectHealth(t, d, "off"); h.Healthcheck != nil || h.Health != nil {
		t.Errorf("--no-healthcheck: %+v", h)
	}
	d.MustRun("create", "--name", "over", "--health-cmd", "true", ref, "sleep", "1000")
	if h := inspectHealth(t, d, "over"); h.Healthcheck == nil || strings.Join(h.Healthcheck.Test, " ") != "CMD-SHELL true" {
		t.Errorf("--health-cmd over the image's: %+v", h.Healthcheck)
	}
}

// TestHealthProbeTimeoutKillsTheProbe: a probe that runs past its timeout is killed in
// the container, not left behind.
func TestHealthProbeTimeoutKillsTheProbe(t *testing.T) {
	d, bb := busyboxDaemon(t)
	d.MustRun("run", "-d", "--name", "slow", "--health-cmd", "sleep 777", "--health-timeout", "300ms", "--health-interval", "200ms", bb, "sleep", "1000")
	eventually(t, 20*time.Second, func() string {
		if h := inspectHealth(t, d, "slow").Health; h == nil || h.FailingStreak < 3 {
			return fmt.Sprintf("health %+v; want 3 timed-out probes", h)
		}
		return ""
	})
	time.Sleep(500 * time.Millisecond)
	if h := inspectHealth(t, d, "slow").Health; !strings.Contains(h.Log[len(h.Log)-1].Output, "exceeded timeout") {
		t.Errorf("a probe past its timeout: %+v", h.Log)
	}
	if out := d.MustRun("exec", "slow", "ps"); strings.Count(out, "sleep 777") > 1 {
		t.Errorf("probes past their timeout are still running:\n%s", out)
	}
}
