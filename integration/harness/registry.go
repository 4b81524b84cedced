//go:build linux

package harness

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Registry is a real CNCF distribution registry (Debian's docker-registry) serving plain
// HTTP on a loopback port, with its storage in a test directory.
type Registry struct {
	// Addr is host:port, e.g. 127.0.0.1:40123.
	Addr string
	// Storage is the registry's storage root; blobs live under
	// docker/registry/v2/blobs/sha256/<xx>/<hex>/data.
	Storage string
	dir     string
	cmd     *exec.Cmd
	// htpasswd, when set, turns on basic authentication.
	htpasswd string
	host     string
}

// RegistryOption configures StartRegistry.
type RegistryOption func(*Registry)

// WithHtpasswd makes the registry require the credentials in an htpasswd file (bcrypt).
func WithHtpasswd(path string) RegistryOption {
	return func(r *Registry) { r.htpasswd = path }
}

// WithHost makes the registry listen on ip instead of 127.0.0.1.
func WithHost(ip string) RegistryOption {
	return func(r *Registry) { r.host = ip }
}

// StartRegistry starts a registry for test t and stops it when t ends.
func StartRegistry(t testing.TB, opts ...RegistryOption) *Registry {
	t.Helper()
	if _, err := exec.LookPath("docker-registry"); err != nil {
		t.Fatal("docker-registry is not installed: run make deps")
	}
	dir := Dir(t)
	r := &Registry{dir: dir, Storage: filepath.Join(dir, "storage"), host: "127.0.0.1"}
	for _, o := range opts {
		o(r)
	}
	r.Addr = freeAddr(t, r.host)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

func freeAddr(t testing.TB, host string) string {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Start starts (or restarts, on the same address and storage) the registry process.
func (r *Registry) Start() error {
	auth := ""
	if r.htpasswd != "" {
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: dutchman-test\n    path: %s\n", r.htpasswd)
	}
	config := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog: {disabled: false}
storage:
  filesystem: {rootdirectory: %s}
  delete: {enabled: true}
%shttp:
  addr: %s
`, r.Storage, auth, r.Addr)
	cfgPath := filepath.Join(r.dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(r.dir, "registry.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command("docker-registry", "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start docker-registry: %w", err)
	}
	logf.Close()
	r.cmd = cmd
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + r.Addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.Stop()
	log, _ := os.ReadFile(filepath.Join(r.dir, "registry.log"))
	return fmt.Errorf("docker-registry did not come up on %s: %s", r.Addr, strings.TrimSpace(string(log)))
}

// Stop kills the registry process; its storage stays for a restart.
func (r *Registry) Stop() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Kill()
	r.cmd.Wait()
	r.cmd = nil
}

// BlobPath is where the registry keeps the data of blob digest ("sha256:<hex>").
func (r *Registry) BlobPath(digest string) string {
	hex := strings.TrimPrefix(digest, "sha256:")
	return filepath.Join(r.Storage, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data")
}

// Ref is the reference of repo:tag in this registry.
func (r *Registry) Ref(repoTag string) string { return r.Addr + "/" + repoTag }

// BlobGets counts the successful blob downloads (GET .../blobs/<digest> answered 200 or
// 307) the registry has logged for digest, or for all blobs when digest is "".
func (r *Registry) BlobGets(digest string) int {
	b, _ := os.ReadFile(filepath.Join(r.dir, "registry.log"))
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, `"GET /v2/`) || !strings.Contains(line, "/blobs/"+digest) {
			continue
		}
		if strings.Contains(line, `HTTP/1.1" 200 `) || strings.Contains(line, `HTTP/1.1" 307 `) {
			n++
		}
	}
	return n
}

func httpGet(url string) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}
