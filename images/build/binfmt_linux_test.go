package build

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// fakeBinfmt points the binfmt code at a directory that stands for binfmt_misc (its
// register file a plain file) and one for Debian's registrations.
func fakeBinfmt(t *testing.T) (misc, conf string) {
	misc, conf = t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(misc, "register"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	oldMisc, oldConf := binfmtDir, binfmtConf
	binfmtDir, binfmtConf = misc, conf
	t.Cleanup(func() { binfmtDir, binfmtConf = oldMisc, oldConf })
	return misc, conf
}

func TestEnsurePlatforms(t *testing.T) {
	misc, conf := fakeBinfmt(t)
	m := New(Config{Root: t.TempDir()})
	defer m.Close()
	line := ":qemu-aarch64:M::\\x7fELF:\\xff\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF"

	// The host's own platforms need nothing.
	if err := m.ensurePlatforms([]string{"linux/amd64", "linux/386"}); err != nil {
		t.Errorf("the host's platforms: %v", err)
	}
	// A foreign one without qemu-user-static: say what to install.
	err := m.ensurePlatforms([]string{"linux/arm64"})
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "apt-get install qemu-user-static") {
		t.Errorf("arm64 without an emulator: %v", err)
	}
	// With Debian's registration: it is written to register.
	os.WriteFile(filepath.Join(conf, "qemu-aarch64.conf"), []byte(line+"\n"), 0o644)
	if err := m.ensurePlatforms([]string{"linux/arm64/v8"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(misc, "register")); string(b) != line {
		t.Errorf("registered %q; want %q", b, line)
	}
	// Registered and enabled: nothing to do. Disabled: say how to enable it.
	os.WriteFile(filepath.Join(misc, "register"), nil, 0o644)
	os.WriteFile(filepath.Join(misc, "qemu-aarch64"), []byte("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n"), 0o644)
	if err := m.ensurePlatforms([]string{"linux/arm64"}); err != nil {
		t.Errorf("registered already: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(misc, "register")); len(b) != 0 {
		t.Errorf("registered again: %q", b)
	}
	os.WriteFile(filepath.Join(misc, "qemu-aarch64"), []byte("disabled\n"), 0o644)
	if err := m.ensurePlatforms([]string{"linux/arm64"}); err == nil || !strings.Contains(err.Error(), "disabled") {
		t.Errorf("a disabled registration: %v", err)
	}
	// What no emulator runs, and other systems' images.
	for _, p := range []string{"linux/sparc64", "windows/amd64", "linux"} {
		if err := m.ensurePlatforms([]string{p}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v; want invalid", p, err)
		}
	}
}
