package build

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
	"github.com/flyingdutchman/flyingdutchman/images"
)

// Where binfmt_misc lives, and where Debian's qemu-user-static puts its registrations.
var (
	binfmtDir  = "/proc/sys/fs/binfmt_misc"
	binfmtConf = "/usr/lib/binfmt.d"
)

// qemuNames maps GOARCH names to QEMU's, for the architectures qemu-user-static runs.
var qemuNames = map[string]string{
	"arm64": "aarch64", "arm": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
	"riscv64": "riscv64", "mips64le": "mips64el", "loong64": "loongarch64", "386": "i386", "amd64": "x86_64",
}

// native reports whether the host runs arch's programs itself (not arm on arm64: many
// arm64 processors do not run 32-bit code).
func native(arch string) bool {
	return arch == runtime.GOARCH || (runtime.GOARCH == "amd64" && arch == "386")
}

// ensurePlatforms makes the host able to run the programs of every platform asked for:
// each foreign one's QEMU interpreter is registered with binfmt_misc (mounted first if
// it is not), from the registration Debian's qemu-user-static ships. Its flag F opens
// the interpreter once, so RUN steps in containers find it.
func (m *Manager) ensurePlatforms(platforms []string) error {
	m.binfmtMu.Lock()
	defer m.binfmtMu.Unlock()
	for _, s := range platforms {
		p, err := images.ParsePlatform(s)
		if err != nil {
			return err
		}
		if p.OS != "linux" {
			return errdefs.Invalid(fmt.Errorf("build: platform %s: only linux images can be built here", s))
		}
		if native(p.Architecture) {
			continue
		}
		q, ok := qemuNames[p.Architecture]
		if !ok {
			return errdefs.Invalid(fmt.Errorf("build: platform %s: no emulator is known for %s", s, p.Architecture))
		}
		if err := registerBinfmt(q); err != nil {
			return fmt.Errorf("build: platform %s: %w", s, err)
		}
	}
	return nil
}

func registerBinfmt(q string) error {
	entry := filepath.Join(binfmtDir, "qemu-"+q)
	if b, err := os.ReadFile(entry); err == nil {
		if strings.HasPrefix(string(b), "enabled") {
			return nil
		}
		return fmt.Errorf("%s is registered but disabled (echo 1 > %s enables it)", entry, entry)
	}
	conf, err := os.ReadFile(filepath.Join(binfmtConf, "qemu-"+q+".conf"))
	if errors.Is(err, os.ErrNotExist) {
		return errdefs.Unavailable(fmt.Errorf("running %s programs needs QEMU's user-mode emulators: apt-get install qemu-user-static", q))
	}
	if err != nil {
		return err
	}
	register := filepath.Join(binfmtDir, "register")
	if _, err := os.Stat(register); err != nil {
		if err := unix.Mount("binfmt_misc", binfmtDir, "binfmt_misc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("mount binfmt_misc on %s: %w", binfmtDir, err)
		}
	}
	line := strings.TrimSpace(string(conf))
	if err := os.WriteFile(register, []byte(line), 0); err != nil {
		// Another registered it meanwhile.
		if _, serr := os.Stat(entry); serr == nil {
			return nil
		}
		return fmt.Errorf("register %s with binfmt_misc: %w", q, err)
	}
	return nil
}
