//go:build linux

package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Terminal is a program run on a pseudo-terminal, as a person at a terminal would run
// it: tests type into it and wait for what it prints.
type Terminal struct {
	t      testing.TB
	master *os.File
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer
	done   chan struct{}
	err    error
}

// StartTerminal runs cmd on a new pseudo-terminal of rows x cols, as its controlling
// terminal. The program is killed when the test ends.
func StartTerminal(t testing.TB, cmd *exec.Cmd, rows, cols uint16) *Terminal {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	term := &Terminal{t: t, master: master, cmd: cmd, done: make(chan struct{})}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			term.mu.Lock()
			term.out.Write(buf[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() {
		term.err = cmd.Wait()
		close(term.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-term.done
		master.Close()
	})
	return term
}

// Type sends keys to the program.
func (term *Terminal) Type(keys string) {
	term.t.Helper()
	if _, err := term.master.Write([]byte(keys)); err != nil {
		term.t.Fatalf("type %q: %v", keys, err)
	}
}

// Expect waits until the program has printed want (after what earlier Expects consumed).
func (term *Terminal) Expect(want string, within time.Duration) {
	term.t.Helper()
	deadline := time.Now().Add(within)
	for {
		term.mu.Lock()
		i := bytes.Index(term.out.Bytes(), []byte(want))
		if i >= 0 {
			term.out.Next(i + len(want))
			term.mu.Unlock()
			return
		}
		seen := term.out.String()
		term.mu.Unlock()
		if time.Now().After(deadline) {
			term.t.Fatalf("the terminal did not show %q within %s; it shows %q", want, within, seen)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Wait waits for the program to exit and returns its exit code.
func (term *Terminal) Wait(within time.Duration) int {
	term.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	select {
	case <-term.done:
	case <-ctx.Done():
		term.mu.Lock()
		seen := term.out.String()
		term.mu.Unlock()
		term.t.Fatalf("the program did not exit within %s; the terminal shows %q", within, seen)
	}
	if ee, ok := term.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if term.err != nil {
		term.t.Fatal(fmt.Errorf("wait: %w", term.err))
	}
	return 0
}

// Resize changes the terminal's size, as resizing its window does (the program gets
// SIGWINCH).
func (term *Terminal) Resize(rows, cols uint16) {
	term.t.Helper()
	if err := unix.IoctlSetWinsize(int(term.master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		term.t.Fatal(err)
	}
}

// Shows tells whether the program has printed want since the last Expect, and consumes
// it if so.
func (term *Terminal) Shows(want string) bool {
	term.mu.Lock()
	defer term.mu.Unlock()
	i := bytes.Index(term.out.Bytes(), []byte(want))
	if i < 0 {
		return false
	}
	term.out.Next(i + len(want))
	return true
}
