package compose

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestGuardedLoadRefusesWhatWouldBlock loads a project on someone else's behalf: a FIFO
// where a compose file, the .env or an env file would be is refused at once instead of
// blocking the reader, and env files are read.
func TestGuardedLoadRefusesWhatWouldBlock(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("name: g\nservices:\n  web:\n    image: busybox\n    env_file: web.env\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "web.env"), []byte("A=1\n"), 0o644)
	p, err := Load(context.Background(), Options{WorkingDir: dir, Guarded: true})
	if err != nil {
		t.Fatal(err)
	}
	if v := p.Services["web"].Environment["A"]; v == nil || *v != "1" {
		t.Errorf("env file not read: %v", p.Services["web"].Environment)
	}
	for _, fifo := range []string{".env", "compose.override.yaml", "web.env"} {
		path := filepath.Join(dir, fifo)
		os.Remove(path)
		if err := syscall.Mkfifo(path, 0o644); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := Load(context.Background(), Options{WorkingDir: dir, Guarded: true})
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "regular file") {
				t.Errorf("a FIFO as %s: %v; want it refused as no regular file", fifo, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("a FIFO as %s blocked the load", fifo)
		}
		os.Remove(path)
		if fifo == "web.env" {
			os.WriteFile(path, []byte("A=1\n"), 0o644)
		}
	}
}
