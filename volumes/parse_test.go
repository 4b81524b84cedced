package volumes

import (
	"errors"
	"testing"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// parseCase is a spec and the mount it parses to; a nil want means it is invalid.
type parseCase struct {
	spec string
	want *Mount
}

func testParse(t *testing.T, parse func(string) (Mount, error), tests []parseCase) {
	t.Helper()
	for _, tt := range tests {
		got, err := parse(tt.spec)
		switch {
		case tt.want == nil && !errors.Is(err, errdefs.ErrInvalidArgument):
			t.Errorf("%q: got %+v, %v; want an invalid-argument error", tt.spec, got, err)
		case tt.want != nil && err != nil:
			t.Errorf("%q: %v", tt.spec, err)
		case tt.want != nil && got != *tt.want:
			t.Errorf("%q: got %+v, want %+v", tt.spec, got, *tt.want)
		}
	}
}

func TestParseVolume(t *testing.T) {
	testParse(t, ParseVolume, []parseCase{
		{"/data", &Mount{Type: TypeVolume, Target: "/data"}},
		{"/data/", &Mount{Type: TypeVolume, Target: "/data"}},
		{"db:/var/lib/db", &Mount{Type: TypeVolume, Source: "db", Target: "/var/lib/db"}},
		{"my.vol-1:/x:ro", &Mount{Type: TypeVolume, Source: "my.vol-1", Target: "/x", ReadOnly: true}},
		{"db:/x:nocopy", &Mount{Type: TypeVolume, Source: "db", Target: "/x", NoCopy: true}},
		{"db:/x:ro,nocopy,z", &Mount{Type: TypeVolume, Source: "db", Target: "/x", ReadOnly: true, NoCopy: true}},
		{"/host:/c", &Mount{Type: TypeBind, Source: "/host", Target: "/c", CreateHostPath: true}},
		{"/host/./a/:/c/:rw", &Mount{Type: TypeBind, Source: "/host/a", Target: "/c", CreateHostPath: true}},
		{"/host:/c:ro,Z,rshared", &Mount{Type: TypeBind, Source: "/host", Target: "/c", ReadOnly: true, CreateHostPath: true}},
		{"/host:/c:z,private,cached", &Mount{Type: TypeBind, Source: "/host", Target: "/c", CreateHostPath: true}},
		{"/:/host:ro", &Mount{Type: TypeBind, Source: "/", Target: "/host", ReadOnly: true, CreateHostPath: true}},

		{"", nil},
		{"data", nil},
		{"./x:/c", nil},
		{"../x:/c", nil},
		{".:/c", nil},
		{"a/b:/c", nil},
		{"~/x:/c", nil},
		{":/c", nil},
		{"db:", nil},
		{"db:c", nil},
		{"/data:ro", nil},
		{"db:/c:", nil},
		{"db:/c:ro,rw", nil},
		{"db:/c:exec", nil},
		{"/h:/c:nocopy", nil},
		{"db:/c:ro:x", nil},
		{"-db:/c", nil},
		{"db:/", nil},
		{"db:/proc", nil},
		{"/h:/sys/fs", nil},
	})
}

func TestParseMount(t *testing.T) {
	testParse(t, ParseMount, []parseCase{
		{"type=bind,source=/a,target=/b,readonly", &Mount{Type: TypeBind, Source: "/a", Target: "/b", ReadOnly: true}},
		{"type=bind,src=/a/,dst=/b/,ro=false,bind-create-host-path", &Mount{Type: TypeBind, Source: "/a", Target: "/b", CreateHostPath: true}},
		{"TYPE=Bind,Source=/a,Destination=/b,ro=1", &Mount{Type: TypeBind, Source: "/a", Target: "/b", ReadOnly: true}},
		{"target=/data", &Mount{Type: TypeVolume, Target: "/data"}},
		{"type=volume,source=db,target=/d,volume-nocopy", &Mount{Type: TypeVolume, Source: "db", Target: "/d", NoCopy: true}},
		{"type=volume,source=,target=/d,volume-nocopy=true", &Mount{Type: TypeVolume, Target: "/d", NoCopy: true}},
		{"type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1770", &Mount{Type: TypeTmpfs, Target: "/t", TmpfsSize: 64 << 20, TmpfsMode: 0o1770}},
		{`type=bind,"source=/a,b",target=/b`, &Mount{Type: TypeBind, Source: "/a,b", Target: "/b"}},

		{"", nil},
		{"type=bind,target=/b", nil},
		{"type=bind,source=./a,target=/b", nil},
		{"type=bind,source=/a", nil},
		{"type=volume,source=a/b,target=/b", nil},
		{"type=tmpfs,source=x,target=/t", nil},
		{"type=npipe,target=/t", nil},
		{"type=bind,source=/a,target=/b,bind-propagation=rshared", nil},
		{"type=bind,source=/a,target=/b,volume-nocopy", nil},
		{"type=volume,target=/b,tmpfs-size=1m", nil},
		{"type=volume,target=/b,bind-create-host-path", nil},
		{"type=tmpfs,target=/t,tmpfs-size=lots", nil},
		{"type=tmpfs,target=/t,tmpfs-mode=999", nil},
		{"type=tmpfs,target=/t,tmpfs-mode=17777", nil},
		{"type=tmpfs,target=/t,tmpfs-size", nil},
		{"type=volume,target=/t,readonly=maybe", nil},
		{"type,target=/t", nil},
		{"target=/t,", nil},
		{"target=/proc/x", nil},
		{"target=relative", nil},
		{`target="/t`, nil},
	})
}

func TestParseTmpfs(t *testing.T) {
	testParse(t, ParseTmpfs, []parseCase{
		{"/run", &Mount{Type: TypeTmpfs, Target: "/run"}},
		{"/run/", &Mount{Type: TypeTmpfs, Target: "/run"}},
		{"/run:size=64m,mode=1770", &Mount{Type: TypeTmpfs, Target: "/run", TmpfsSize: 64 << 20, TmpfsMode: 0o1770}},
		{"/run:rw,size=65536k", &Mount{Type: TypeTmpfs, Target: "/run", TmpfsSize: 64 << 20}},
		{"/run:ro,mode=700", &Mount{Type: TypeTmpfs, Target: "/run", ReadOnly: true, TmpfsMode: 0o700}},

		{"", nil},
		{"run", nil},
		{"/", nil},
		{"/proc", nil},
		{"/run:", nil},
		{"/run:exec", nil},
		{"/run:size=", nil},
		{"/run:size=50%", nil},
		{"/run:mode=rwx", nil},
		{"/run:mode=10000", nil},
		{"/run:uid=1000", nil},
		{"/run:ro=1", nil},
	})
}

func TestParseSize(t *testing.T) {
	good := map[string]int64{
		"0": 0, "1024": 1024, "10k": 10 << 10, "10K": 10 << 10, "64m": 64 << 20, "64MB": 64 << 20,
		"64MiB": 64 << 20, "1g": 1 << 30, "2t": 2 << 40, "100b": 100, " 8 m ": 8 << 20,
	}
	for in, want := range good {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "k", "-1", "1.5g", "10x", "8191p", "9223372036854775807k", "99999999999999999999", "1 0"} {
		if got, err := ParseSize(in); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParseSize(%q) = %d, %v; want an invalid-argument error", in, got, err)
		}
	}
}
