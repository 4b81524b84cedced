package engine

import (
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func dur(d time.Duration) *Duration { v := Duration(d); return &v }

// TestResolveHealthcheck merges a spec's healthcheck over the image's, setting by
// setting, as Docker does.
func TestResolveHealthcheck(t *testing.T) {
	img := &v1.HealthConfig{Test: []string{"CMD", "check"}, Interval: time.Second, Retries: 5}
	if h := resolveHealthcheck(nil, img); h == nil || h.Test[1] != "check" || time.Duration(*h.Interval) != time.Second || h.Retries != 5 {
		t.Errorf("the image's alone: %+v", h)
	}
	h := resolveHealthcheck(&Healthcheck{Test: []string{"CMD-SHELL", "true"}, Timeout: dur(2 * time.Second)}, img)
	if h == nil || h.Test[0] != "CMD-SHELL" || time.Duration(*h.Interval) != time.Second || time.Duration(*h.Timeout) != 2*time.Second || h.Retries != 5 {
		t.Errorf("the spec's over the image's: %+v", h)
	}
	if h := resolveHealthcheck(&Healthcheck{Disable: true}, img); h != nil {
		t.Errorf("disabled: %+v", h)
	}
	if h := resolveHealthcheck(&Healthcheck{Test: []string{"NONE"}}, img); h != nil {
		t.Errorf("NONE: %+v", h)
	}
	if h := resolveHealthcheck(&Healthcheck{Interval: dur(time.Second)}, nil); h != nil {
		t.Errorf("settings without a test: %+v", h)
	}
	for _, bad := range []*Healthcheck{
		{Test: []string{"CMD"}}, {Test: []string{"RUN", "x"}}, {Test: []string{"CMD-SHELL", "a", "b"}},
		{Test: []string{"CMD", "x"}, Interval: dur(0)}, {Test: []string{"CMD", "x"}, Retries: -1},
	} {
		if err := bad.validate(); err == nil {
			t.Errorf("%+v: accepted", bad)
		}
	}
}
