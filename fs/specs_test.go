package fs

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

func TestSpecNames(t *testing.T) {
	for _, c := range []struct {
		name     string
		spec     bool
		refused  bool
		resolved string
	}{
		{"web.yaml", true, false, "web"},
		{"web.yml", true, false, "web"},
		{"web.json", true, false, "web"},
		{"my-app_1.2.yaml", true, false, "my-app_1.2"},
		// Editors' and file managers' scratch files.
		{".web.yaml.swp", false, false, ""},
		{"web.yaml~", false, false, ""},
		{"4913", false, false, ""},
		{".DS_Store", false, false, ""},
		{"._web.yaml", false, false, ""},
		{".web.yaml", false, false, ""},
		{"notes.txt", false, false, ""},
		// Spec-like names no container can have.
		{"my web.yaml", false, true, ""},
		{"-web.yaml", false, true, ""},
		{".yaml", false, false, ""},
	} {
		if got := isSpecName(c.name); got != c.spec {
			t.Errorf("isSpecName(%q) = %v; want %v", c.name, got, c.spec)
		}
		if err := checkSpecName(c.name); (err != nil) != c.refused {
			t.Errorf("checkSpecName(%q) = %v; want refused %v", c.name, err, c.refused)
		}
		if c.spec && specContainer(c.name) != c.resolved {
			t.Errorf("specContainer(%q) = %q; want %q", c.name, specContainer(c.name), c.resolved)
		}
	}
}

func TestErrnos(t *testing.T) {
	for _, c := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{errdefs.Invalid(errors.New("bad")), syscall.EINVAL},
		{fmt.Errorf("wrapped: %w", errdefs.NotFound(errors.New("gone"))), syscall.ENOENT},
		{errdefs.Conflict(errors.New("running")), syscall.EBUSY},
		{errdefs.Unavailable(errors.New("registry")), syscall.EAGAIN},
		{fmt.Errorf("write: %w", syscall.ENOSPC), syscall.ENOSPC},
		{fmt.Errorf("open: %w", syscall.EROFS), syscall.EROFS},
		{errors.New("something else"), syscall.EIO},
	} {
		if got := toErrno(c.err); got != c.want {
			t.Errorf("toErrno(%v) = %v; want %v", c.err, got, c.want)
		}
	}
}

func TestInodeNumbersKeepTheirSpace(t *testing.T) {
	a, b := ino("containers/x/state"), ino("containers/y/state")
	if a == b || a&(1<<63) == 0 || b&(1<<63) == 0 {
		t.Errorf("ino: %x and %x; want distinct, with the top bit set", a, b)
	}
}
