//go:build linux

package vm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm/agent"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// The tests' stand-ins for QEMU: this test binary, run with FAKE_QEMU set, serves the
// agent's side of the conversation on QEMU's agent descriptor, as the guest's agent
// would; or a shell script that says what QEMU says and aborts, or hangs.
func TestMain(m *testing.M) {
	switch os.Getenv("FAKE_QEMU") {
	case "agent", "agent-without-host-cpu":
		if os.Getenv("FAKE_QEMU") == "agent-without-host-cpu" && slices.Contains(os.Args, "host") {
			os.Stderr.WriteString("qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n")
			os.Exit(1)
		}
		agent.Serve(os.NewFile(agentFd, "agent"), agent.Options{})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fakeQEMU is a QEMU stand-in: the test binary in the role of kind, or a shell script.
func fakeQEMU(t *testing.T, kind string) string {
	t.Helper()
	dir := t.TempDir()
	var script string
	switch kind {
	case "agent", "agent-without-host-cpu":
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		script = "#!/bin/sh\nFAKE_QEMU=" + kind + " exec " + self + " \"$@\"\n"
	case "abort":
		script = "#!/bin/sh\necho 'qemu-system-x86_64: warning: host doesn'\\''t support requested feature: CPUID.01H:ECX.pni [bit 0]' >&2\n" +
			"echo 'qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69' >&2\n" +
			"echo 'qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion failed.' >&2\nkill -ABRT $$\n"
	case "hang":
		script = "#!/bin/sh\necho 'Probing EDD (edd=off to disable)... ok' >&4\nexec sleep 60\n"
	}
	p := filepath.Join(dir, "qemu")
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func testRuntime(t *testing.T) *Runtime {
	t.Helper()
	kernels, err := NewKernels(filepath.Join(t.TempDir(), "kernels"), filepath.Join(t.TempDir(), "no-agent"), "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(t.TempDir(), kernels, WithShim("/bin/true"))
	if err != nil {
		t.Fatal(err)
	}
	r.probeDeadline = 500 * time.Millisecond
	t.Cleanup(func() { r.Close() })
	return r
}

func TestProbeVerdicts(t *testing.T) {
	for _, tc := range []struct {
		qemu   string
		ok     bool
		cpu    string
		reason []string
	}{
		{qemu: "agent", ok: true, cpu: "host"},
		// A KVM that refuses the host's CPU features runs QEMU's default model.
		{qemu: "agent-without-host-cpu", ok: true, cpu: ""},
		{qemu: "abort", reason: []string{
			"with -cpu host, QEMU aborted: failed to set MSR 0x10a to 0x69; ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion failed.",
			"with QEMU's default CPU, QEMU aborted: failed to set MSR",
		}},
		{qemu: "hang", reason: []string{
			`with -cpu host, no answer from the guest within 500ms (its console's last line: "Probing EDD (edd=off to disable)... ok")`,
			"with QEMU's default CPU, no answer from the guest within 500ms",
		}},
	} {
		t.Run(tc.qemu, func(t *testing.T) {
			r := testRuntime(t)
			start := time.Now()
			p := r.probe(context.Background(), fakeQEMU(t, tc.qemu), "/vmlinuz", "/initramfs")
			if p == nil {
				t.Fatal("no verdict")
			}
			if p.OK != tc.ok || p.CPU != tc.cpu {
				t.Errorf("verdict %+v, want ok %v with cpu %q", p, tc.ok, tc.cpu)
			}
			for _, w := range tc.reason {
				if !strings.Contains(p.Reason, w) {
					t.Errorf("reason %q, want it to say %q", p.Reason, w)
				}
			}
			if strings.Contains(p.Reason, "warning") || strings.Contains(p.Reason, "\n") {
				t.Errorf("reason %q: QEMU's errors on one line, not its warnings", p.Reason)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("the probe took %s", took)
			}
		})
	}
}

func TestProbeEndsWithTheRuntime(t *testing.T) {
	r := testRuntime(t)
	r.probeDeadline = time.Minute
	done := make(chan *probe, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- r.probe(ctx, fakeQEMU(t, "hang"), "/vmlinuz", "/initramfs") }()
	time.Sleep(200 * time.Millisecond)
	cancel()
	select {
	case p := <-done:
		if p != nil {
			t.Errorf("a probe whose context ended gave a verdict: %+v", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the probe did not end with its context")
	}
}

func TestVerdictIsKept(t *testing.T) {
	r := testRuntime(t)
	key := probeKey{BootID: "b", Kernel: "k", Agent: "a", QEMU: "q"}
	done := make(chan struct{})
	r.probing = done
	r.probes.Add(1)
	r.runProbe(key, fakeQEMU(t, "agent"), "/vmlinuz", "/initramfs", done)
	select {
	case <-done:
	default:
		t.Fatal("runProbe did not close its channel")
	}
	// Another runtime on the same root reads it back.
	again, err := New(r.root, r.kernels)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	again.probeMu.Lock()
	again.loadProbeLocked()
	p := again.probed
	again.probeMu.Unlock()
	if p == nil || p.probeKey != key || !p.OK || p.CPU != "host" || p.Took <= 0 {
		t.Errorf("the kept verdict: %+v", p)
	}
}

func TestChoose(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "kvm")
	for _, tc := range []struct {
		setting, device string
		kvm             bool
		why, err        string
	}{
		{setting: AccelTCG, device: "/dev/null"},
		{setting: AccelAuto, device: missing, why: "no usable /dev/kvm (open " + missing + ": no such file or directory)"},
		{setting: AccelKVM, device: missing, err: "--vm-accel kvm, but there is no usable KVM: open " + missing},
	} {
		r := testRuntime(t)
		r.accel, r.kvmDevice = tc.setting, tc.device
		got, err := r.choose(context.Background(), &Kernel{Name: "k"})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, errdefs.ErrCannotRun) {
				t.Errorf("%s with %s: %v, want a cannot-run error saying %q", tc.setting, tc.device, err, tc.err)
			}
			continue
		}
		if err != nil || got.kvm != tc.kvm || got.why != tc.why {
			t.Errorf("%s with %s: %+v %v, want kvm %v, why %q", tc.setting, tc.device, got, err, tc.kvm, tc.why)
		}
		info := r.AccelInfo()
		if info.Accel != AccelNameTCG || info.KVM || info.Reason == "" {
			t.Errorf("%s with %s: info %+v", tc.setting, tc.device, info)
		}
	}
}

func TestCheckAccel(t *testing.T) {
	for _, s := range []string{"", "auto", "kvm", "tcg"} {
		if err := CheckAccel(s); err != nil {
			t.Errorf("CheckAccel(%q): %v", s, err)
		}
	}
	if err := CheckAccel("hvf"); err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("CheckAccel(hvf): %v", err)
	}
}

func TestTail(t *testing.T) {
	tl := newTail(16)
	tl.Write([]byte("first line, long\nsecond\r\n\nthird"))
	if got := tl.lines(5); !slices.Equal(got, []string{"second", "third"}) {
		t.Errorf("lines: %q (the cut first line dropped, CRLF and empty lines gone)", got)
	}
	if got := newTail(100).lines(3); len(got) != 0 {
		t.Errorf("an empty tail: %q", got)
	}
}
