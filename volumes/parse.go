package volumes

import (
	"encoding/csv"
	"errors"
	"fmt"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// ParseVolume parses Docker's -v/--volume: "NAME:/path[:opts]", "/host:/path[:opts]" or
// "/path" (an anonymous volume). A source starting with "/" is a host path, which is
// created if missing, as Docker does; one starting with "." or holding a "/" is a relative
// host path, refused as Docker refuses it; any other is a volume name. opts is a comma
// list of ro, rw and nocopy; SELinux labels (z, Z), propagation (private, shared, slave
// and their r forms) and Docker Desktop's consistency words are accepted and dropped.
// Errors are errdefs.Invalid. The result is valid (see Validate).
func ParseVolume(spec string) (Mount, error) {
	m, err := parseVolume(spec)
	if err == nil {
		err = m.Validate()
	}
	if err != nil {
		return Mount{}, errdefs.Invalid(fmt.Errorf("invalid volume specification %q: %w", spec, err))
	}
	return m, nil
}

func parseVolume(spec string) (Mount, error) {
	parts := strings.Split(spec, ":")
	if len(parts) == 1 {
		return Mount{Type: TypeVolume, Target: cleanAbs(spec)}, nil
	}
	if len(parts) > 3 {
		return Mount{}, errors.New("too many colons")
	}
	src := parts[0]
	m := Mount{Target: cleanAbs(parts[1])}
	switch {
	case src == "":
		return Mount{}, errors.New("empty source")
	case strings.HasPrefix(src, "/"):
		m.Type, m.Source, m.CreateHostPath = TypeBind, path.Clean(src), true
	case strings.HasPrefix(src, ".") || strings.Contains(src, "/"):
		return Mount{}, fmt.Errorf("host path %q must be absolute", src)
	default:
		m.Type, m.Source = TypeVolume, src
	}
	if len(parts) == 3 {
		if err := volumeFlags(&m, parts[2]); err != nil {
			return Mount{}, err
		}
	}
	return m, nil
}

// droppedFlags are the -v options accepted for compatibility and ignored: SELinux labels
// (this engine does not relabel), propagation (the engine chooses it), and Docker
// Desktop's consistency hints (meaningless on Linux).
var droppedFlags = []string{
	"z", "Z",
	"private", "rprivate", "shared", "rshared", "slave", "rslave",
	"consistent", "cached", "delegated",
}

func volumeFlags(m *Mount, flags string) error {
	var ro, rw bool
	for _, f := range strings.Split(flags, ",") {
		switch {
		case f == "ro":
			ro = true
		case f == "rw":
			rw = true
		case f == "nocopy":
			m.NoCopy = true
		case !slices.Contains(droppedFlags, f):
			return fmt.Errorf("unknown option %q", f)
		}
	}
	if ro && rw {
		return errors.New("both ro and rw")
	}
	m.ReadOnly = ro
	return nil
}

// ParseMount parses Docker's --mount: comma-separated key=value fields (CSV, so a value
// may be quoted), such as "type=bind,source=/a,target=/b,readonly". The keys are type
// (default volume), source or src, target, destination or dst, readonly or ro,
// volume-nocopy, bind-create-host-path (Compose's, not Docker's; --mount does not create a
// missing host path otherwise), tmpfs-size (see ParseSize) and tmpfs-mode (octal). The
// boolean keys may stand alone or take true or false. Errors are errdefs.Invalid. The
// result is valid (see Validate).
func ParseMount(spec string) (Mount, error) {
	m, err := parseMount(spec)
	if err == nil {
		err = m.Validate()
	}
	if err != nil {
		return Mount{}, errdefs.Invalid(fmt.Errorf("invalid mount %q: %w", spec, err))
	}
	return m, nil
}

func parseMount(spec string) (Mount, error) {
	fields, err := csv.NewReader(strings.NewReader(spec)).Read()
	if err != nil {
		return Mount{}, err
	}
	m := Mount{Type: TypeVolume}
	for _, field := range fields {
		key, value, hasValue := strings.Cut(field, "=")
		k, ok := mountKeys[strings.ToLower(key)]
		switch {
		case !ok:
			return Mount{}, fmt.Errorf("unknown key %q", key)
		case !hasValue && !k.flag:
			return Mount{}, fmt.Errorf("key %q needs a value", key)
		case !hasValue:
			value = "true"
		}
		if err := k.set(&m, value); err != nil {
			return Mount{}, fmt.Errorf("%s: %w", key, err)
		}
	}
	m.Target = cleanAbs(m.Target)
	if m.Type == TypeBind {
		m.Source = cleanAbs(m.Source)
	}
	return m, nil
}

// mountKey is a key of --mount and what it sets.
type mountKey struct {
	flag bool // may stand alone, meaning true
	set  func(m *Mount, value string) error
}

var mountKeys = map[string]mountKey{
	"type":                  {set: func(m *Mount, v string) error { m.Type = strings.ToLower(v); return nil }},
	"source":                {set: setSource},
	"src":                   {set: setSource},
	"target":                {set: setTarget},
	"destination":           {set: setTarget},
	"dst":                   {set: setTarget},
	"readonly":              boolKey(func(m *Mount) *bool { return &m.ReadOnly }),
	"ro":                    boolKey(func(m *Mount) *bool { return &m.ReadOnly }),
	"volume-nocopy":         boolKey(func(m *Mount) *bool { return &m.NoCopy }),
	"bind-create-host-path": boolKey(func(m *Mount) *bool { return &m.CreateHostPath }),
	"tmpfs-size":            {set: setTmpfsSize},
	"tmpfs-mode":            {set: setTmpfsMode},
}

func setSource(m *Mount, v string) error { m.Source = v; return nil }
func setTarget(m *Mount, v string) error { m.Target = v; return nil }

func setTmpfsSize(m *Mount, v string) (err error) {
	m.TmpfsSize, err = ParseSize(v)
	return err
}

func setTmpfsMode(m *Mount, v string) (err error) {
	m.TmpfsMode, err = parseMode(v)
	return err
}

// boolKey is a key that sets the boolean field returns.
func boolKey(field func(*Mount) *bool) mountKey {
	return mountKey{flag: true, set: func(m *Mount, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", v)
		}
		*field(m) = b
		return nil
	}}
}

// ParseTmpfs parses Docker's --tmpfs: "/path[:opts]", where opts is a comma list of
// size=SIZE (see ParseSize), mode=OCTAL, ro and rw; noexec, nosuid and nodev are taken
// as they are always so. Other mount options (exec...) are errdefs.Invalid. The result is valid (see Validate).
func ParseTmpfs(spec string) (Mount, error) {
	m, err := parseTmpfs(spec)
	if err == nil {
		err = m.Validate()
	}
	if err != nil {
		return Mount{}, errdefs.Invalid(fmt.Errorf("invalid tmpfs %q: %w", spec, err))
	}
	return m, nil
}

func parseTmpfs(spec string) (Mount, error) {
	target, opts, hasOpts := strings.Cut(spec, ":")
	m := Mount{Type: TypeTmpfs, Target: cleanAbs(target)}
	if !hasOpts {
		return m, nil
	}
	for _, opt := range strings.Split(opts, ",") {
		key, value, _ := strings.Cut(opt, "=")
		var err error
		switch {
		case opt == "ro":
			m.ReadOnly = true
		case opt == "rw":
		case opt == "noexec" || opt == "nosuid" || opt == "nodev":
			// Always so: a tmpfs is mounted noexec, nosuid and nodev, as Docker's are.
		case key == "size":
			err = setTmpfsSize(&m, value)
		case key == "mode":
			err = setTmpfsMode(&m, value)
		default:
			err = fmt.Errorf("unsupported option %q (want size=, mode=, ro, rw, noexec, nosuid or nodev)", opt)
		}
		if err != nil {
			return Mount{}, err
		}
	}
	return m, nil
}

// parseMode parses a tmpfs mode: octal permission bits.
func parseMode(s string) (uint32, error) {
	mode, err := strconv.ParseUint(s, 8, 32)
	if err != nil || mode > 0o7777 {
		return 0, fmt.Errorf("mode %q: want octal permission bits such as 1777", s)
	}
	return uint32(mode), nil
}

// sizeUnits are the suffixes ParseSize takes: binary multiples, as Docker's and the
// kernel's (size=64m is 64 MiB).
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
	"t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
}

// ParseSize parses a size in bytes: a whole number with an optional suffix k, m, g or t
// (any case, optionally followed by b or ib), each 1024 times the one before: "1024",
// "10k", "64m", "1g". Errors are errdefs.Invalid.
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		i = len(s)
	}
	unit, ok := sizeUnits[strings.ToLower(strings.TrimSpace(s[i:]))]
	if i == 0 || !ok {
		return 0, errdefs.Invalid(fmt.Errorf("invalid size %q: want a whole number with an optional k, m, g or t suffix", s))
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil || n > math.MaxInt64/unit {
		return 0, errdefs.Invalid(fmt.Errorf("invalid size %q: too large", s))
	}
	return n * unit, nil
}

// cleanAbs cleans p if it is absolute, and leaves a relative p as it is for Validate to
// name it.
func cleanAbs(p string) string {
	if path.IsAbs(p) {
		return path.Clean(p)
	}
	return p
}
