package volumes

import (
	"errors"
	"strings"
	"testing"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		m       Mount
		wantErr string // "" for valid
	}{
		{Mount{Type: TypeBind, Source: "/host", Target: "/data"}, ""},
		{Mount{Type: TypeBind, Source: "/", Target: "/host", ReadOnly: true, CreateHostPath: true}, ""},
		{Mount{Type: TypeVolume, Target: "/data"}, ""},
		{Mount{Type: TypeVolume, Source: "db-data", Target: "/var/lib/db", NoCopy: true}, ""},
		{Mount{Type: TypeTmpfs, Target: "/tmp", TmpfsSize: 1 << 20, TmpfsMode: 0o1770, ReadOnly: true}, ""},
		{Mount{Type: TypeVolume, Target: "/procfs"}, ""},
		{Mount{Type: TypeVolume, Target: "/system"}, ""},

		{Mount{Type: "npipe", Target: "/x"}, "unknown mount type"},
		{Mount{Target: "/x"}, "unknown mount type"},
		{Mount{Type: TypeVolume}, "empty"},
		{Mount{Type: TypeVolume, Target: "data"}, "absolute"},
		{Mount{Type: TypeVolume, Target: "/data/"}, "not clean"},
		{Mount{Type: TypeVolume, Target: "/a/../b"}, "not clean"},
		{Mount{Type: TypeVolume, Target: "/"}, "root filesystem"},
		{Mount{Type: TypeVolume, Target: "/proc"}, "mounting over /proc hides the kernel's view"},
		{Mount{Type: TypeTmpfs, Target: "/proc/sys"}, "mounting over /proc hides the kernel's view"},
		{Mount{Type: TypeBind, Source: "/x", Target: "/sys"}, "mounting over /sys hides the kernel's view"},
		{Mount{Type: TypeBind, Source: "/x", Target: "/sys/x"}, "mounting over /sys hides the kernel's view"},
		{Mount{Type: TypeBind, Target: "/x"}, "absolute host path"},
		{Mount{Type: TypeBind, Source: "./x", Target: "/x"}, "absolute host path"},
		{Mount{Type: TypeVolume, Source: "../x", Target: "/x"}, "invalid volume name"},
		{Mount{Type: TypeTmpfs, Source: "tmpfs", Target: "/x"}, "no source"},
		{Mount{Type: TypeBind, Source: "/x", Target: "/x", NoCopy: true}, "nocopy applies to volume"},
		{Mount{Type: TypeVolume, Target: "/x", CreateHostPath: true}, "create_host_path applies to bind"},
		{Mount{Type: TypeVolume, Target: "/x", TmpfsSize: 10}, "tmpfs size applies to tmpfs"},
		{Mount{Type: TypeBind, Source: "/x", Target: "/x", TmpfsMode: 0o700}, "tmpfs mode applies to tmpfs"},
		{Mount{Type: TypeTmpfs, Target: "/x", TmpfsSize: -1}, "negative"},
		{Mount{Type: TypeTmpfs, Target: "/x", TmpfsMode: 0o10000}, "permission bits"},
	}
	for _, tt := range tests {
		err := tt.m.Validate()
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%+v: %v", tt.m, err)
		case tt.wantErr == "":
		case !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.wantErr):
			t.Errorf("%+v: got %v, want invalid %q", tt.m, err, tt.wantErr)
		}
	}
}
