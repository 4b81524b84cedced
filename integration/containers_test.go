//go:build linux

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flyingdutchman/flyingdutchman/integration/harness"
)

// container is what the tests read of `dutchman inspect`.
type container struct {
	OOMKilled       bool   `json:"oomKilled"`
	ID              string `json:"id"`
	Name            string `json:"name"`
	State           string `json:"state"`
	Pid             int    `json:"pid"`
	ExitCode        int    `json:"exitCode"`
	Error           string `json:"error"`
	RestartCount    int    `json:"restartCount"`
	ManuallyStopped bool   `json:"manuallyStopped"`
}

func inspectContainer(t *testing.T, d *harness.Daemon, name string) container {
	t.Helper()
	var out []container
	if err := json.Unmarshal([]byte(d.MustRun("inspect", name)), &out); err != nil || len(out) != 1 {
		t.Fatalf("inspect %s: %v %v", name, out, err)
	}
	return out[0]
}

// eventually retries check until it returns "" or the time is up; it reports the last
// complaint. (A state reached in the background: a restart, an exit.)
func eventually(t *testing.T, within time.Duration, check func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sleeper runs forever and exits 0 on SIGTERM (a shell as PID 1 ignores it otherwise).
const sleeper = `trap 'echo got TERM; exit 0' TERM; trap 'echo got USR1' USR1; echo ready; while true; do sleep 0.1; done`

func busyboxDaemon(t *testing.T) (*harness.Daemon, string) {
	t.Helper()
	_, ims := harness.SharedImages(t)
	d := harness.StartDaemon(t)
	d.MustRun("pull", "-q", ims.Busybox)
	return d, ims.Busybox
}

func TestRunInTheForeground(t *testing.T) {
	d, bb := busyboxDaemon(t)
	r := d.Run("run", "--rm", bb, "echo", "hello", "world")
	if r.Code != 0 || r.Stdout != "hello world\n" {
		t.Fatalf("run echo: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	r = d.Run("run", "--name", "streams", bb, "sh", "-c", "echo out; echo err >&2; exit 3")
	if r.Code != 3 || r.Stdout != "out\n" || r.Stderr != "err\n" {
		t.Errorf("run with both streams: exit %d, stdout %q, stderr %q; want 3, out, err", r.Code, r.Stdout, r.Stderr)
	}
	if c := inspectContainer(t, d, "streams"); c.State != "stopped" || c.ExitCode != 3 {
		t.Errorf("after exit: %+v", c)
	}
	// --rm removed the first one; the second stays.
	if out := d.MustRun("ps", "-a", "-q"); len(strings.Fields(out)) != 1 {
		t.Errorf("ps -a after run --rm: %q; want only the container without --rm", out)
	}
	// Input, with -i.
	r = d.RunStdin([]byte("one\ntwo\n"), "run", "--rm", "-i", bb, "sh", "-c", "cat; echo done")
	if r.Code != 0 || r.Stdout != "one\ntwo\ndone\n" {
		t.Errorf("run -i: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	// A large output arrives whole.
	r = d.Run("run", "--rm", bb, "sh", "-c", "seq 1 100000")
	if lines := strings.Count(r.Stdout, "\n"); r.Code != 0 || lines != 100000 || !strings.HasSuffix(r.Stdout, "\n100000\n") {
		t.Errorf("run seq 1 100000: exit %d, %d lines", r.Code, lines)
	}
}

func TestRunExitCodesLikeDocker(t *testing.T) {
	d, bb := busyboxDaemon(t)
	cases := []struct {
		args  []string
		code  int
		words string
	}{
		{[]string{"run", "--rm", bb, "nosuchcommand"}, 127, "executable file not found"},
		{[]string{"run", "--rm", bb, "/etc/passwd"}, 126, "permission denied"},
		{[]string{"run", "--rm", "127.0.0.1:1/nothing:here"}, 125, "connection refused"},
		{[]string{"run", "--rm", "--memory", "1k", bb, "true"}, 125, "minimum is 6MB"},
		{[]string{"run", "--rm", "--cpus", "99", bb, "true"}, 125, "only 2 CPUs available"},
		{[]string{"run", "--rm", "--restart", "sometimes", bb, "true"}, 125, "invalid restart policy"},
		{[]string{"run", "--rm", "--restart", "always", bb, "true"}, 125, "cannot have a restart policy"},
		{[]string{"run", "--name", "bad name", bb, "true"}, 125, "invalid container name"},
		{[]string{"run", "--name", "../x", bb, "true"}, 125, "invalid container name"},
		{[]string{"run", "-u", "alice", bb, "true"}, 125, "unable to find user alice"},
		{[]string{"run", "-w", "relative", bb, "true"}, 125, "absolute path"},
		{[]string{"run", "--stop-signal", "SIGNOPE", bb, "true"}, 125, "invalid signal"},
	}
	if n := strconv.Itoa(numCPU()); n != "2" {
		cases[4].words = "only " + n + " CPUs available"
	}
	for _, c := range cases {
		r := d.Run(c.args...)
		if r.Code != c.code || !strings.Contains(r.Stderr, c.words) {
			t.Errorf("dutchman %s: exit %d, stderr %q; want %d saying %q", strings.Join(c.args, " "), r.Code, r.Stderr, c.code, c.words)
		}
	}
	// What failed before its process could start is recorded as exited 128 with its
	// error (as Docker keeps it); --rm removed the others; invalid specs made nothing.
	eventually(t, 5*time.Second, func() string {
		var list []container
		json.Unmarshal([]byte(d.MustRun("ps", "-a", "--format", "json")), &list)
		if len(list) != 1 || list[0].State != "stopped" || list[0].ExitCode != 128 || !strings.Contains(list[0].Error, "unable to find user alice") {
			return fmt.Sprintf("containers left after the failed runs: %+v; want only the one whose user is missing", list)
		}
		return ""
	})
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

func TestEveryLifecycleVerb(t *testing.T) {
	d, bb := busyboxDaemon(t)
	id := strings.TrimSpace(d.MustRun("create", "--name", "life", bb, "sh", "-c", sleeper))
	if c := inspectContainer(t, d, "life"); c.State != "created" || c.ID != id {
		t.Fatalf("after create: %+v (id %s)", c, id)
	}
	d.MustRun("start", "life")
	eventually(t, 10*time.Second, func() string {
		if out := d.MustRun("logs", "life"); !strings.Contains(out, "ready") {
			return "no output yet: " + out
		}
		return ""
	})
	c := inspectContainer(t, d, "life")
	if c.State != "running" || c.Pid == 0 || syscall.Kill(c.Pid, 0) != nil {
		t.Fatalf("after start: %+v", c)
	}
	if out := d.MustRun("ps"); !regexp.MustCompile(`(?m)^` + id[:12] + `\s.*Up .*life$`).MatchString(out) {
		t.Errorf("ps:\n%s", out)
	}
	if out := d.MustRun("info"); !strings.Contains(out, "Containers: 1 (running 1, paused 0, stopped 0)") || !strings.Contains(out, "Runtimes: oci") {
		t.Errorf("info:\n%s", out)
	}

	d.MustRun("pause", "life")
	if c := inspectContainer(t, d, "life"); c.State != "paused" {
		t.Errorf("after pause: %s", c.State)
	}
	if state := freezerState(t, id); state != "FROZEN" {
		t.Errorf("freezer state %q after pause, want FROZEN", state)
	}
	if r := d.Run("pause", "life"); r.Code == 0 || !strings.Contains(r.Stderr, "it is paused") {
		t.Errorf("pause twice: %d %q", r.Code, r.Stderr)
	}
	d.MustRun("unpause", "life")
	if c := inspectContainer(t, d, "life"); c.State != "running" {
		t.Errorf("after unpause: %s", c.State)
	}

	d.MustRun("kill", "-s", "USR1", "life")
	eventually(t, 10*time.Second, func() string {
		if !strings.Contains(d.MustRun("logs", "life"), "got USR1") {
			return "the container did not get SIGUSR1"
		}
		return ""
	})
	if r := d.Run("kill", "-s", "NOPE", "life"); r.Code == 0 || !strings.Contains(r.Stderr, "invalid signal") {
		t.Errorf("kill -s NOPE: %d %q", r.Code, r.Stderr)
	}

	if r := d.Run("rm", "life"); r.Code == 0 || !strings.Contains(r.Stderr, "stop it first, or force") {
		t.Errorf("rm of a running container: %d %q", r.Code, r.Stderr)
	}
	d.MustRun("restart", "-t", "5", "life")
	c2 := inspectContainer(t, d, "life")
	if c2.State != "running" || c2.Pid == c.Pid {
		t.Errorf("after restart: %+v (pid before %d)", c2, c.Pid)
	}

	d.MustRun("stop", "life")
	c3 := inspectContainer(t, d, "life")
	if c3.State != "stopped" || c3.ExitCode != 0 || !c3.ManuallyStopped {
		t.Errorf("after stop: %+v; want stopped, exit 0 (the trap), manually stopped", c3)
	}
	if !strings.Contains(d.MustRun("logs", "life"), "got TERM") {
		t.Error("stop did not send SIGTERM first")
	}
	if out := strings.TrimSpace(d.MustRun("wait", "life")); out != "0" {
		t.Errorf("wait on a stopped container: %q", out)
	}
	d.MustRun("stop", "life") // stopping a stopped container is no error

	d.MustRun("rename", "life", "renamed")
	if r := d.Run("inspect", "life"); r.Code == 0 {
		t.Error("the old name still answers after rename")
	}
	d.MustRun("start", "renamed")
	d.MustRun("rm", "-f", "renamed")
	if r := d.Run("inspect", "renamed"); r.Code == 0 || !strings.Contains(r.Stderr, "no such container") {
		t.Errorf("inspect after rm: %d %q", r.Code, r.Stderr)
	}
	if syscall.Kill(c2.Pid, 0) == nil {
		t.Errorf("the container's process %d still runs after rm -f", c2.Pid)
	}
	// Every verb of a container that is not there.
	for _, verb := range [][]string{{"start", "ghost"}, {"stop", "ghost"}, {"kill", "ghost"}, {"rm", "ghost"}, {"logs", "ghost"}, {"exec", "ghost", "true"}, {"wait", "ghost"}} {
		if r := d.Run(verb...); r.Code == 0 || !strings.Contains(r.Stderr, "no such container: ghost") {
			t.Errorf("dutchman %s: %d %q", strings.Join(verb, " "), r.Code, r.Stderr)
		}
	}
}

// freezerState reads the container's cgroup freezer (v1 here, v2 elsewhere).
func freezerState(t *testing.T, id string) string {
	if b, err := os.ReadFile("/sys/fs/cgroup/freezer/dutchman/" + id + "/freezer.state"); err == nil {
		return strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/dutchman/" + id + "/cgroup.freeze"); err == nil {
		if strings.TrimSpace(string(b)) == "1" {
			return "FROZEN"
		}
		return "THAWED"
	}
	t.Fatalf("cannot find the freezer of container %s", id)
	return ""
}

func TestWaitAndDuplicateNames(t *testing.T) {
	d, bb := busyboxDaemon(t)
	d.MustRun("run", "-d", "--name", "dup", bb, "sh", "-c", "sleep 0.5; exit 4")
	r := d.Run("run", "-d", "--name", "dup", bb, "true")
	if r.Code != 125 || !strings.Contains(r.Stderr, `the container name "dup" is already in use`) {
		t.Errorf("a duplicate name: %d %q", r.Code, r.Stderr)
	}
	if out := strings.TrimSpace(d.MustRun("wait", "dup")); out != "4" {
		t.Errorf("wait: %q, want 4", out)
	}
	// The image cannot go while a container uses it.
	r = d.Run("rmi", bb)
	if r.Code == 0 || !strings.Contains(r.Stderr, "in use by container dup") {
		t.Errorf("rmi of an image a container uses: %d %q", r.Code, r.Stderr)
	}
}

func TestLogs(t *testing.T) {
	d, bb := busyboxDaemon(t)
	// The two streams come through two pipes: pauses keep their order certain.
	d.MustRun("run", "--name", "talk", bb, "sh", "-c", "for i in 1 2 3 4 5; do echo out$i; sleep 0.05; echo err$i >&2; sleep 0.05; done")
	r := d.Run("logs", "talk")
	if r.Stdout != "out1\nout2\nout3\nout4\nout5\n" || r.Stderr != "err1\nerr2\nerr3\nerr4\nerr5\n" {
		t.Errorf("logs: stdout %q stderr %q", r.Stdout, r.Stderr)
	}
	r = d.Run("logs", "--tail", "2", "talk")
	if r.Stdout+r.Stderr != "out5\nerr5\n" && r.Stdout+r.Stderr != "err5\nout5\n" {
		t.Errorf("logs --tail 2: stdout %q stderr %q; want the last two lines", r.Stdout, r.Stderr)
	}
	r = d.Run("logs", "-t", "--tail", "1", "talk")
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z err5\n$`).MatchString(r.Stderr) {
		t.Errorf("logs -t --tail 1: stdout %q stderr %q", r.Stdout, r.Stderr)
	}
	// Follow: until the container exits.
	d.MustRun("run", "-d", "--name", "slow", bb, "sh", "-c", "for i in 1 2 3; do echo tick$i; sleep 0.3; done")
	r = d.Run("logs", "-f", "slow")
	if r.Code != 0 || r.Stdout != "tick1\ntick2\ntick3\n" {
		t.Errorf("logs -f: exit %d, %q", r.Code, r.Stdout)
	}
	if r := d.Run("logs", "--since", "yesterday", "slow"); r.Code == 0 {
		t.Errorf("logs --since yesterday: accepted")
	}
}

func TestExec(t *testing.T) {
	d, bb := busyboxDaemon(t)
	d.MustRun("run", "-d", "--name", "box", "-e", "FROM_RUN=1", bb, "sh", "-c", sleeper)
	cases := []struct {
		args []string
		out  string
		code int
	}{
		{[]string{"exec", "box", "echo", "hi"}, "hi\n", 0},
		{[]string{"exec", "box", "sh", "-c", "echo $FROM_RUN $FROM_EXEC"}, "1\n", 0},
		{[]string{"exec", "-e", "FROM_EXEC=2", "box", "sh", "-c", "echo $FROM_RUN $FROM_EXEC"}, "1 2\n", 0},
		{[]string{"exec", "-u", "nobody", "box", "id", "-u"}, "65534\n", 0},
		{[]string{"exec", "-w", "/tmp", "box", "pwd"}, "/tmp\n", 0},
		{[]string{"exec", "box", "sh", "-c", "exit 9"}, "", 9},
		{[]string{"exec", "box", "nosuchcommand"}, "", 127},
	}
	for _, c := range cases {
		r := d.Run(c.args...)
		if r.Code != c.code || (c.out != "" && r.Stdout != c.out) {
			t.Errorf("dutchman %s: exit %d, stdout %q, stderr %q; want %d, %q", strings.Join(c.args, " "), r.Code, r.Stdout, r.Stderr, c.code, c.out)
		}
	}
	if r := d.RunStdin([]byte("piped\n"), "exec", "-i", "box", "cat"); r.Stdout != "piped\n" {
		t.Errorf("exec -i cat: %q %q", r.Stdout, r.Stderr)
	}
	d.MustRun("stop", "box")
	if r := d.Run("exec", "box", "true"); r.Code == 0 || !strings.Contains(r.Stderr, "it is stopped") {
		t.Errorf("exec in a stopped container: %d %q", r.Code, r.Stderr)
	}
}

// cliTerminal runs the CLI against d on a terminal of rows by cols.
func cliTerminal(t *testing.T, d *harness.Daemon, rows, cols uint16, args ...string) *harness.Terminal {
	t.Helper()
	cmd := exec.Command(harness.Binary(t), args...)
	cmd.Env = append(os.Environ(), "DUTCHMAN_HOST="+d.Host(), "TERM=xterm")
	return harness.StartTerminal(t, cmd, rows, cols)
}

// checkTerminal checks, at the prompt of a shell in a container on a 37x91 window, that
// the shell has a terminal of that size, that it computes, and that resizing the window
// resizes its terminal. It leaves the shell at its prompt.
func checkTerminal(t *testing.T, term *harness.Terminal) {
	t.Helper()
	term.Type("tty; stty size; echo sum=$((40+2))\r")
	term.Expect("/dev/pts/0", 10*time.Second)
	term.Expect("37 91", 10*time.Second)
	term.Expect("sum=42", 10*time.Second)
	term.Expect("/ # ", 10*time.Second)
	term.Resize(50, 120)
	eventually(t, 10*time.Second, func() string {
		term.Type("stty size\r")
		time.Sleep(200 * time.Millisecond)
		if !term.Shows("50 120") {
			return "the container's terminal did not follow the window to 50x120"
		}
		return ""
	})
}

func TestRunWithATerminal(t *testing.T) {
	d, bb := busyboxDaemon(t)
	run := func() *harness.Terminal { return cliTerminal(t, d, 37, 91, "run", "-it", "--rm", bb, "sh") }
	term := run()
	term.Expect("/ # ", 30*time.Second)
	checkTerminal(t, term)
	// Ctrl-C interrupts the foreground command in the container, not the CLI.
	term.Expect("/ # ", 10*time.Second)
	term.Type("sleep 100; echo after-sleep\r")
	time.Sleep(300 * time.Millisecond)
	term.Type("\x03")
	term.Expect("/ # ", 10*time.Second)
	term.Type("exit 5\r")
	if code := term.Wait(30 * time.Second); code != 5 {
		t.Errorf("run -it sh; exit 5: the CLI exited %d", code)
	}
	// exec -it: a shell in a running container answers as it goes, not at its end.
	d.MustRun("run", "-d", "--name", "host", bb, "sh", "-c", sleeper)
	ex := cliTerminal(t, d, 30, 100, "exec", "-it", "host", "sh")
	ex.Expect("/ # ", 30*time.Second)
	ex.Type("echo in-exec-$((6*7))\r")
	ex.Expect("in-exec-42", 10*time.Second)
	ex.Type("exit 3\r")
	if code := ex.Wait(30 * time.Second); code != 3 {
		t.Errorf("exec -it sh; exit 3: the CLI exited %d", code)
	}

	// Ctrl-D on an empty line ends the shell.
	term = run()
	term.Expect("/ # ", 30*time.Second)
	term.Type("\x04")
	if code := term.Wait(30 * time.Second); code != 0 {
		t.Errorf("run -it sh; Ctrl-D: the CLI exited %d", code)
	}
}

func TestRestartPolicies(t *testing.T) {
	d, bb := busyboxDaemon(t)
	d.MustRun("run", "-d", "--name", "onfail", "--restart", "on-failure:2", bb, "sh", "-c", "echo run; exit 2")
	d.MustRun("run", "-d", "--name", "always", "--restart", "always", bb, "sh", "-c", "echo run; exit 0")
	d.MustRun("run", "-d", "--name", "never", bb, "sh", "-c", "exit 1")
	d.MustRun("run", "-d", "--name", "success", "--restart", "on-failure", bb, "sh", "-c", "exit 0")
	eventually(t, 20*time.Second, func() string {
		c := inspectContainer(t, d, "onfail")
		if c.State != "stopped" || c.RestartCount != 2 {
			return fmt.Sprintf("on-failure:2: %+v", c)
		}
		if runs := strings.Count(d.MustRun("logs", "onfail"), "run"); runs != 3 {
			return fmt.Sprintf("on-failure:2 ran %d times, want 3", runs)
		}
		return ""
	})
	eventually(t, 20*time.Second, func() string {
		if c := inspectContainer(t, d, "always"); c.RestartCount < 3 {
			return fmt.Sprintf("always: %+v", c)
		}
		return ""
	})
	for _, name := range []string{"never", "success"} {
		if c := inspectContainer(t, d, name); c.State != "stopped" || c.RestartCount != 0 {
			t.Errorf("%s: %+v; want stopped, never restarted", name, c)
		}
	}
	// Stopping by hand wins over the policy.
	d.MustRun("stop", "always")
	time.Sleep(500 * time.Millisecond)
	if c := inspectContainer(t, d, "always"); c.State != "stopped" {
		t.Errorf("always after stop: %s", c.State)
	}
}

func TestPoliciesAcrossADaemonRestart(t *testing.T) {
	_, ims := harness.SharedImages(t)
	d := harness.NewDaemon(t)
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	d.MustRun("pull", "-q", ims.Busybox)
	for _, name := range []string{"always", "unless", "unless-stopped-by-hand", "no"} {
		policy := map[string]string{"always": "always", "unless": "unless-stopped", "unless-stopped-by-hand": "unless-stopped", "no": "no"}[name]
		d.MustRun("run", "-d", "--name", name, "--restart", policy, ims.Busybox, "sh", "-c", sleeper)
	}
	for _, name := range []string{"always", "unless-stopped-by-hand", "no"} {
		d.MustRun("stop", name)
	}
	d.Kill()
	// Containers keep running without the daemon; the ones still running are found
	// again, and the stopped ones start if their policy says so.
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"always": "running", "unless": "running", "unless-stopped-by-hand": "stopped", "no": "stopped"}
	eventually(t, 20*time.Second, func() string {
		for name, state := range want {
			if c := inspectContainer(t, d, name); c.State != state {
				return fmt.Sprintf("%s is %s, want %s", name, c.State, state)
			}
		}
		return ""
	})
}

func TestLiveRestoreAfterKill9(t *testing.T) {
	_, ims := harness.SharedImages(t)
	d := harness.NewDaemon(t)
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	d.MustRun("pull", "-q", ims.Busybox)
	d.MustRun("run", "-d", "--name", "ticker", ims.Busybox, "sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done")
	d.MustRun("run", "-d", "--name", "short", ims.Busybox, "sh", "-c", "sleep 1; echo bye; exit 7")
	before := inspectContainer(t, d, "ticker")
	d.Kill() // SIGKILL: no chance to clean up
	time.Sleep(2 * time.Second)
	if syscall.Kill(before.Pid, 0) != nil {
		t.Fatal("the container died with the daemon")
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	after := inspectContainer(t, d, "ticker")
	if after.State != "running" || after.Pid != before.Pid {
		t.Errorf("after the daemon came back: %+v; want the same process (%d) running", after, before.Pid)
	}
	// No output was lost while no daemon ran: the ticks are consecutive.
	time.Sleep(300 * time.Millisecond)
	out := d.MustRun("logs", "ticker")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i, l := range lines {
		if l != "tick "+strconv.Itoa(i) {
			t.Fatalf("line %d is %q: output was lost or garbled while the daemon was down", i, l)
		}
	}
	if len(lines) < 30 {
		t.Errorf("only %d ticks in 2.5 s", len(lines))
	}
	short := inspectContainer(t, d, "short")
	if short.State != "stopped" || short.ExitCode != 7 {
		t.Errorf("a container that exited while the daemon was down: %+v; want exit code 7", short)
	}
	if out := d.MustRun("logs", "short"); out != "bye\n" {
		t.Errorf("its output: %q", out)
	}
	// And the reattached container can still be stopped and streamed.
	d.MustRun("stop", "-t", "1", "ticker")
}

func TestAShimThatDies(t *testing.T) {
	d, bb := busyboxDaemon(t)
	d.MustRun("run", "-d", "--name", "orphan", bb, "sh", "-c", sleeper)
	c := inspectContainer(t, d, "orphan")
	out, err := os.ReadFile(d.DataRoot + "/runtime/oci/containers/" + c.ID + "/shim.pid")
	pid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || pid == 0 {
		t.Fatalf("find the shim: %v %q", err, out)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	eventually(t, 15*time.Second, func() string {
		c := inspectContainer(t, d, "orphan")
		if c.State != "stopped" || c.ExitCode != 255 || !strings.Contains(c.Error, "shim is gone") {
			return fmt.Sprintf("after its shim was killed: %+v", c)
		}
		return ""
	})
	eventually(t, 10*time.Second, func() string {
		if syscall.Kill(c.Pid, 0) == nil {
			return fmt.Sprintf("the container's process %d outlived its shim", c.Pid)
		}
		return ""
	})
	// The store is consistent: it can be started and removed.
	d.MustRun("start", "orphan")
	d.MustRun("rm", "-f", "orphan")
}

func TestLimitsAndUsers(t *testing.T) {
	d, bb := busyboxDaemon(t)
	r := d.Run("run", "--rm", "--memory", "64m", "--cpus", "0.5", "-u", "nobody", "--hostname", "limited", bb,
		"sh", "-c", "id -u; hostname; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max")
	want := "65534\nlimited\n67108864\n50000\n"
	if r.Code != 0 || r.Stdout != want {
		t.Errorf("limits and user: exit %d, stdout %q, stderr %q; want %q", r.Code, r.Stdout, r.Stderr, want)
	}
	r = d.Run("run", "--rm", "--entrypoint", "echo", bb, "from", "entrypoint")
	if r.Stdout != "from entrypoint\n" {
		t.Errorf("--entrypoint: %q %q", r.Stdout, r.Stderr)
	}
	envFile := harness.Dir(t) + "/env"
	os.WriteFile(envFile, []byte("# comment\nA=from-file\nB=2\n"), 0o644)
	r = d.Run("run", "--rm", "--env-file", envFile, "-e", "B=override", bb, "sh", "-c", "echo $A $B")
	if r.Stdout != "from-file override\n" {
		t.Errorf("--env-file and -e: %q %q", r.Stdout, r.Stderr)
	}
}

func TestEvents(t *testing.T) {
	d, bb := busyboxDaemon(t)
	d.MustRun("run", "--rm", "--name", "evt", bb, "true")
	out := d.MustRun("events", "--no-follow", "--filter", "container=evt")
	var actions []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) > 2 {
			actions = append(actions, f[2])
		}
	}
	if got := strings.Join(actions, " "); got != "create start die destroy" {
		t.Errorf("events of run --rm: %q\n%s", got, out)
	}
	out = d.MustRun("events", "--no-follow", "--filter", "type=image", "--format", "json")
	if !strings.Contains(out, `"action":"pull"`) {
		t.Errorf("image events lack the pull:\n%s", out)
	}
}

func TestAnInterruptedStopCanBeFinished(t *testing.T) {
	d, bb := busyboxDaemon(t)
	// A shell as PID 1 without a trap ignores SIGTERM: stop has to wait for SIGKILL.
	d.MustRun("run", "-d", "--name", "stubborn", bb, "sh", "-c", "while true; do sleep 0.1; done")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.Binary(t), "stop", "-t", "30", "stubborn")
	cmd.Env = append(os.Environ(), "DUTCHMAN_HOST="+d.Host())
	cmd.Run() // cut short by the timeout, as Ctrl-C would
	if c := inspectContainer(t, d, "stubborn"); c.State != "stopping" && c.State != "running" {
		t.Fatalf("after an interrupted stop: %s", c.State)
	}
	start := time.Now()
	d.MustRun("rm", "-f", "stubborn")
	if time.Since(start) > 20*time.Second {
		t.Errorf("rm -f waited for the interrupted stop's grace period")
	}
}

func TestForegroundRunsEndWithTheirExit(t *testing.T) {
	d, bb := busyboxDaemon(t)
	// With a restart policy the container runs again, but run reports the exit it saw.
	r := d.Run("run", "--name", "again", "--restart", "always", bb, "sh", "-c", "echo hi; exit 3")
	if r.Code != 3 || r.Stdout != "hi\n" {
		t.Errorf("run --restart always: exit %d, stdout %q", r.Code, r.Stdout)
	}
	d.MustRun("stop", "again")

	// exec -i returns when the process ends, even with its input still open.
	d.MustRun("run", "-d", "--name", "box", bb, "sh", "-c", sleeper)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.Binary(t), "exec", "-i", "box", "sh", "-c", "exit 6")
	cmd.Env = append(os.Environ(), "DUTCHMAN_HOST="+d.Host())
	pr, pw, _ := os.Pipe()
	defer pw.Close()
	cmd.Stdin = pr
	err := cmd.Run()
	pr.Close()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 6 {
		t.Errorf("exec -i with open input: %v; want exit 6 as soon as the process ends", err)
	}

	// Input typed before a terminal's process starts is not lost.
	r = d.RunStdin([]byte("hello\n"), "run", "-i", "-t", "--rm", bb, "sh", "-c", "read x; echo got:$x")
	if !strings.Contains(r.Stdout, "got:hello") {
		t.Errorf("run -i -t with input ready at once: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
}

func TestASlowReaderGetsEveryByte(t *testing.T) {
	d, bb := busyboxDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.Binary(t), "run", "--rm", bb, "head", "-c", "50000000", "/dev/zero")
	cmd.Env = append(os.Environ(), "DUTCHMAN_HOST="+d.Host())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // a reader that looks away for a while
	n, _ := io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil || n != 50000000 {
		t.Errorf("run --rm with a slow reader: %d bytes, %v (stderr %q); want all 50000000 and exit 0\ndaemon log:\n%s", n, err, stderr.String(), d.Log())
	}
}

func TestOOMKilled(t *testing.T) {
	d, bb := busyboxDaemon(t)
	for _, tty := range []string{"-i", "-t"} {
		name := "oom" + strings.TrimPrefix(tty, "-")
		// tail keeps a line without an end in memory: 64 MB of it in an 8 MB container.
		r := d.Run("run", tty, "--name", name, "--memory", "8m", bb, "sh", "-c", "head -c 64m /dev/zero | tail")
		c := inspectContainer(t, d, name)
		if r.Code != 137 || !c.OOMKilled {
			t.Errorf("run %s over its memory limit: exit %d, %+v; want 137 and oomKilled", tty, r.Code, c)
		}
		if out := d.MustRun("events", "--no-follow", "--filter", "container="+name); !strings.Contains(out, " oom ") {
			t.Errorf("no oom event for %s:\n%s", name, out)
		}
	}
}

func TestAStartByHandResetsTheRestartCount(t *testing.T) {
	d, bb := busyboxDaemon(t)
	d.MustRun("run", "-d", "--name", "once", "--restart", "on-failure:1", bb, "sh", "-c", "echo run; exit 2")
	runs := func() int { return strings.Count(d.MustRun("logs", "once"), "run") }
	eventually(t, 15*time.Second, func() string {
		if c := inspectContainer(t, d, "once"); c.State != "stopped" || runs() != 2 {
			return fmt.Sprintf("on-failure:1: %+v after %d runs", c, runs())
		}
		return ""
	})
	d.MustRun("start", "once")
	eventually(t, 15*time.Second, func() string {
		if c := inspectContainer(t, d, "once"); c.State != "stopped" || runs() != 4 {
			return fmt.Sprintf("after a start by hand: %+v after %d runs; want the policy's one retry again", c, runs())
		}
		return ""
	})
}

func TestAStoppedContainerIsNotMounted(t *testing.T) {
	d, bb := busyboxDaemon(t)
	d.MustRun("run", "--name", "done", bb, "true")
	c := inspectContainer(t, d, "done")
	if m := harness.Mounts(d.DataRoot + "/images/rootfs/" + c.ID); len(m) != 0 {
		t.Errorf("a stopped container's filesystem is still mounted: %v", m)
	}
	d.MustRun("start", "done") // mounts it again
	d.MustRun("wait", "done")
}
