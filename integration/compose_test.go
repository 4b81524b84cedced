package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flyingdutchman/flyingdutchman/integration/harness"
)

// shopProject writes a four-service project into a new directory named shop: a front
// (busybox httpd, published on port) whose CGI script asks the api by its service
// name, restarted when the api is remade; the api, which starts once the db is healthy
// and an init job has completed; the db and the job, both writing to a named volume. A
// debug service is in a profile.
func shopProject(t *testing.T, bb string, port int, apiGreeting string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "shop")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cgi := `mkdir -p /www/cgi-bin && printf '#!/bin/sh\necho Content-Type: text/plain\necho\nwget -q -O - http://api/\n' > /www/cgi-bin/api && chmod +x /www/cgi-bin/api && exec httpd -f -p 80 -h /www`
	// Their processes ignore SIGTERM (PID 1 without a handler): a short grace keeps
	// stops quick.
	project := fmt.Sprintf(`x-quick: &quick
  stop_grace_period: 1s
services:
  front:
    <<: *quick
    image: %[1]s
    command: [sh, -c, %[2]q]
    ports: ["127.0.0.1:%[3]d:80"]
    depends_on:
      api: {condition: service_started, restart: true}
  api:
    <<: *quick
    image: %[1]s
    command: [sh, -c, 'mkdir -p /www && echo "$$GREETING from api, data $$(cat /data/seed) $$(cat /data/init)" > /www/index.html && exec httpd -f -p 80 -h /www']
    environment:
      GREETING: ${GREETING:-%[4]s}
    volumes: ["data:/data"]
    depends_on:
      init:
        condition: service_completed_successfully
      db:
        condition: service_healthy
  db:
    <<: *quick
    image: %[1]s
    command: [sh, -c, "sleep 1; echo seeded > /data/seed; exec sleep 1000"]
    volumes: ["data:/data"]
    healthcheck:
      test: [CMD, cat, /data/seed]
      interval: 200ms
      start_period: 10s
      start_interval: 200ms
  init:
    <<: *quick
    image: %[1]s
    command: [sh, -c, "echo initialised > /data/init && echo initialised"]
    volumes: ["data:/data"]
  debug:
    <<: *quick
    image: %[1]s
    command: [sleep, "1000"]
    profiles: [debug]
volumes:
  data:
`, bb, cgi, port, apiGreeting)
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(project), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// composeIDs maps the containers of a project (-f FILE, or -p NAME) to "ID state".
func composeIDs(t *testing.T, d *harness.Daemon, file string) map[string]string {
	t.Helper()
	var list []struct {
		ID, Name, State string
	}
	which := []string{"-f", file}
	if !strings.Contains(file, "/") {
		which = []string{"-p", file}
	}
	if err := json.Unmarshal([]byte(d.MustRun(append(append([]string{"compose"}, which...), "ps", "-a", "--format", "json")...)), &list); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, c := range list {
		ids[c.Name] = c.ID + " " + c.State
	}
	return ids
}

// TestComposeUpEditDown brings a project up, reaches its front from the host and the
// api through it by service name, re-applies an edit that recreates only the service
// it changes, and takes the project down, keeping its volume unless asked.
func TestComposeUpEditDown(t *testing.T) {
	d, bb := busyboxDaemon(t)
	port := freeHostPort(t)
	dir := shopProject(t, bb, port, "hello")
	file := filepath.Join(dir, "compose.yaml")

	r := d.Run("compose", "-f", file, "up", "-d")
	if r.Code != 0 {
		t.Fatalf("compose up: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, step := range []string{"Network shop_default  Created", "Volume shop_data  Created", "Container shop-front-1  Started", "Container shop-init-1  Exited", "Container shop-db-1  Healthy"} {
		if !strings.Contains(r.Stderr, step) {
			t.Errorf("compose up does not say %q:\n%s", step, r.Stderr)
		}
	}
	if got, err := hostFetch(t, fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/api", port)); got != "hello from api, data seeded initialised\n" {
		t.Errorf("the front's answer from the api: %q, %v", got, err)
	}
	before := composeIDs(t, d, file)
	if len(before) != 4 || !strings.HasSuffix(before["shop-init-1"], " stopped") || !strings.HasSuffix(before["shop-api-1"], " running") {
		t.Errorf("compose ps -a after up: %v", before)
	}
	labels := strings.Join(strings.Fields(d.MustRun("inspect", "shop-api-1")), "")
	for _, l := range []string{`"com.docker.compose.project":"shop"`, `"com.docker.compose.service":"api"`, `"com.docker.compose.container-number":"1"`, `"com.docker.compose.config-hash":"`} {
		if !strings.Contains(labels, l) {
			t.Errorf("shop-api-1 lacks label %s", l)
		}
	}

	// An edit of the api's environment recreates the api alone, and restarts the front
	// (depends_on restart: true).
	frontPid, dbPid := inspectContainer(t, d, "shop-front-1").Pid, inspectContainer(t, d, "shop-db-1").Pid
	t.Setenv("GREETING", "howdy")
	r = d.Run("compose", "-f", file, "up", "-d")
	if r.Code != 0 {
		t.Fatalf("compose up again: exit %d\n%s", r.Code, r.Stderr)
	}
	after := composeIDs(t, d, file)
	if after["shop-front-1"] != before["shop-front-1"] || after["shop-db-1"] != before["shop-db-1"] || after["shop-api-1"] == before["shop-api-1"] {
		t.Errorf("after changing the api's environment:\nbefore %v\nafter  %v\nwant the api recreated and the front kept", before, after)
	}
	if got, err := hostFetch(t, fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/api", port)); got != "howdy from api, data seeded initialised\n" {
		t.Errorf("the front's answer from the recreated api: %q, %v", got, err)
	}
	if pid := inspectContainer(t, d, "shop-front-1").Pid; pid == frontPid || !strings.Contains(r.Stderr, "Container shop-front-1  Restarted") {
		t.Errorf("the front (restart: true on the api) was not restarted: pid %d, was %d\n%s", pid, frontPid, r.Stderr)
	}
	if pid := inspectContainer(t, d, "shop-db-1").Pid; pid != dbPid {
		t.Errorf("the db restarted: pid %d, was %d", pid, dbPid)
	}

	// The same project, saved with vim where it lives: the daemon's watch re-applies it.
	applies := projectEvents(t, d, "apply")
	if out, err := exec.Command("vim", "-u", "NONE", "-N", "-es", "-c", "%s/from api/from the api/", "-c", "wq", file).CombinedOutput(); err != nil {
		t.Fatalf("vim: %v %s", err, out)
	}
	eventually(t, 30*time.Second, func() string {
		if got, _ := hostFetch(t, fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/api", port)); got != "howdy from the api, data seeded initialised\n" {
			return "after vim's save where the project lives: " + got
		}
		return ""
	})
	if n := projectEvents(t, d, "apply"); n != applies+1 {
		t.Errorf("vim's save made %d applies", n-applies)
	}
	after = composeIDs(t, d, file)

	// A profile's service comes up only with its profile.
	if _, ok := after["shop-debug-1"]; ok {
		t.Errorf("the debug service runs without its profile")
	}
	d.MustRun("compose", "-f", file, "--profile", "debug", "up", "-d")
	if ids := composeIDs(t, d, file); !strings.HasSuffix(ids["shop-debug-1"], " running") {
		t.Errorf("with --profile debug: %v", ids)
	}

	// logs, prefixed by container.
	if out := d.MustRun("compose", "-f", file, "logs", "init"); !strings.HasPrefix(out, "init-1 | initialised\n") {
		t.Errorf("compose logs: %q", out)
	}

	// Down: containers and network gone, the volume kept; down -v removes it.
	r = d.Run("compose", "-f", file, "down")
	if r.Code != 0 {
		t.Fatalf("compose down: exit %d\n%s", r.Code, r.Stderr)
	}
	if ids := composeIDs(t, d, file); len(ids) != 0 {
		t.Errorf("containers after down: %v", ids)
	}
	if out := d.MustRun("network", "ls", "-q"); strings.Contains(out, "shop_default") {
		t.Errorf("the project's network stayed after down: %q", out)
	}
	if out := d.MustRun("volume", "ls", "-q"); !strings.Contains(out, "shop_data") {
		t.Errorf("down removed the volume: %q", out)
	}
	d.MustRun("compose", "-f", file, "down", "-v")
	if out := d.MustRun("volume", "ls", "-q"); strings.Contains(out, "shop_data") {
		t.Errorf("down -v kept the volume: %q", out)
	}
}

// TestComposeConfig prints the resolved project: overrides merged, .env and
// defaults interpolated, profiles applied.
func TestComposeConfig(t *testing.T) {
	d := harness.StartDaemon(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("name: cfg\nservices:\n  web:\n    image: busybox:${TAG:-1}\n    environment: [\"A=${A:?A is required}\"]\n  extra:\n    image: busybox\n    profiles: [x]\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "compose.override.yaml"), []byte("services:\n  web:\n    command: [echo, overridden]\n"), 0o644)
	os.WriteFile(filepath.Join(dir, ".env"), []byte("A=from-dotenv\n"), 0o644)
	out := d.MustRun("compose", "--project-directory", dir, "config")
	for _, want := range []string{"name: cfg", "image: busybox:1", "A: from-dotenv", "- overridden"} {
		if !strings.Contains(out, want) {
			t.Errorf("compose config lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "extra") {
		t.Errorf("compose config shows a service of a profile not enabled:\n%s", out)
	}
	os.WriteFile(filepath.Join(dir, ".env"), []byte(""), 0o644)
	if r := d.Run("compose", "--project-directory", dir, "config"); r.Code == 0 || !strings.Contains(r.Stderr, "A is required") {
		t.Errorf("a required variable unset: exit %d, %s", r.Code, r.Stderr)
	}
}

// projectEvents counts the project events of an action.
func projectEvents(t *testing.T, d *harness.Daemon, action string) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(d.MustRun("events", "--no-follow", "--filter", "type=project"), "\n") {
		if strings.Contains(line, " project "+action+" ") {
			n++
		}
	}
	return n
}

// TestComposeWatchesItsFiles brings up a project from a file outside the tree and edits
// the file with vim: each save re-applies the project once, recreating only the service
// it changes; a broken file changes nothing and says why; after down, edits do nothing.
func TestComposeWatchesItsFiles(t *testing.T) {
	d, bb := busyboxDaemon(t)
	dir := filepath.Join(t.TempDir(), "watched")
	os.Mkdir(dir, 0o755)
	file := filepath.Join(dir, "compose.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`services:
  web:
    image: %[1]s
    command: [sleep, "1000"]
    stop_signal: SIGKILL
  api:
    image: %[1]s
    command: [sleep, "1000"]
    stop_signal: SIGKILL
    environment: [VERSION=1]
`, bb)), 0o644)
	d.MustRun("compose", "-f", file, "up", "-d")
	before := composeIDs(t, d, file)
	applies := projectEvents(t, d, "apply")

	vim := func(cmds ...string) {
		t.Helper()
		args := []string{"-u", "NONE", "-N", "-es"}
		for _, c := range cmds {
			args = append(args, "-c", c)
		}
		if out, err := exec.Command("vim", append(args, "-c", "wq", file)...).CombinedOutput(); err != nil {
			t.Fatalf("vim: %v %s", err, out)
		}
	}
	vim("%s/VERSION=1/VERSION=2/")
	eventually(t, 20*time.Second, func() string {
		if n := projectEvents(t, d, "apply"); n != applies+1 {
			return fmt.Sprintf("%d applies after a save; want %d", n, applies+1)
		}
		return ""
	})
	after := composeIDs(t, d, file)
	if after["watched-web-1"] != before["watched-web-1"] || after["watched-api-1"] == before["watched-api-1"] || !strings.HasSuffix(after["watched-api-1"], " running") {
		t.Errorf("after a save that changes the api:\nbefore %v\nafter  %v", before, after)
	}
	time.Sleep(time.Second) // no second apply for the one save
	if n := projectEvents(t, d, "apply"); n != applies+1 {
		t.Errorf("one save made %d applies", n-applies)
	}

	// A broken file changes nothing, and says what and where.
	vim("%s/    command: \\[sleep, \"1000\"\\]/    command: [sleep/")
	eventually(t, 20*time.Second, func() string {
		if projectEvents(t, d, "error") == 0 {
			return "no error event after a broken save"
		}
		return ""
	})
	var ls []struct{ Name, Error string }
	json.Unmarshal([]byte(d.MustRun("compose", "ls", "--format", "json")), &ls)
	if len(ls) != 1 || !strings.Contains(ls[0].Error, "line") {
		t.Errorf("compose ls after a broken save: %+v; want the error with its line", ls)
	}
	if !strings.Contains(ls[0].Error, file) {
		t.Errorf("the error does not name the file: %q", ls[0].Error)
	}
	if now := composeIDs(t, d, "watched"); fmt.Sprint(now) != fmt.Sprint(after) {
		t.Errorf("a broken save changed the containers:\nbefore %v\nafter  %v", after, now)
	}

	// After down (by name: the file does not load), a save does nothing.
	d.MustRun("compose", "-p", "watched", "down")
	os.WriteFile(file, []byte(fmt.Sprintf("services:\n  web:\n    image: %s\n    command: [sleep, \"1000\"]\n", bb)), 0o644)
	time.Sleep(time.Second)
	if ids := composeIDs(t, d, file); len(ids) != 0 {
		t.Errorf("a save after down made containers: %v", ids)
	}
}

// TestTreeCompose runs a project from the tree: mkdir, its compose.yaml written there,
// echo up > ctl, state and services/, an edit with vim that recreates only the service
// it changes, a broken save that changes nothing and says why in error, and down.
func TestTreeCompose(t *testing.T) {
	d, bb := treeDaemon(t)
	port := freeHostPort(t)
	src := shopProject(t, bb, port, "hello")
	mustOwnerSh(t, d, "mkdir compose/shop")
	failSh(t, d, "mkdir compose/Bad_Name", "Invalid argument")
	mustSh(t, d, "cp "+filepath.Join(src, "compose.yaml")+" compose/shop/compose.yaml && echo up > compose/shop/ctl")
	if got := mustSh(t, d, "cat compose/shop/state"); got != "api 1/1 -\ndb 1/1 healthy\nfront 1/1 -\ninit 0/1 -\n" {
		t.Errorf("compose/shop/state after up:\n%s", got)
	}
	if got, err := hostFetch(t, fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/api", port)); got != "hello from api, data seeded initialised\n" {
		t.Errorf("the tree project's front: %q, %v", got, err)
	}
	if got := mustSh(t, d, "readlink compose/shop/services/api-1; cat compose/shop/services/api-1/state"); got != "../../../containers/shop-api-1\nrunning\n" {
		t.Errorf("services/api-1: %q", got)
	}
	if got := mustSh(t, d, "cat compose/shop/logs"); !strings.Contains(got, "init-1  | initialised\n") {
		t.Errorf("compose/shop/logs:\n%s", got)
	}
	// tail -f follows the project: a restart runs the init job again, whose line comes.
	if got := mustSh(t, d, "(timeout 15 tail -n +1 -f compose/shop/logs > ../tail.out &) ; sleep 1; echo restart > compose/shop/ctl; for i in $(seq 100); do [ $(grep -c 'init-1  | initialised' ../tail.out) -ge 2 ] && break; sleep 0.1; done; grep -c 'init-1  | initialised' ../tail.out"); got != "2\n" {
		out, _ := os.ReadFile(filepath.Join(d.Dir, "tail.out"))
		t.Errorf("tail -f compose/shop/logs across a restart saw the init job's line %s times; want 2\n%s\nlogs now:\n%s\n%s", strings.TrimSpace(got), out, sh(t, d, "cat compose/shop/logs; cat compose/shop/state").Stdout, d.Run("ps", "-a").Stdout)
	}
	failSh(t, d, "rmdir compose/shop", "Device or resource busy")

	// vim's save (rename the old file away, write a new one) re-applies once, and only
	// the api is recreated.
	before := composeIDs(t, d, "shop")
	applies := projectEvents(t, d, "apply")
	mustSh(t, d, "vim -u NONE -N -es -c '%s/GREETING:-hello/GREETING:-howdy/' -c 'wq' compose/shop/compose.yaml")
	eventually(t, 30*time.Second, func() string {
		if n := projectEvents(t, d, "apply"); n != applies+1 {
			return fmt.Sprintf("%d applies after vim's save; want %d", n-applies, 1)
		}
		return ""
	})
	after := composeIDs(t, d, "shop")
	for _, c := range []string{"shop-front-1", "shop-db-1"} {
		if after[c] != before[c] {
			t.Errorf("%s was recreated by a change to the api: %s -> %s", c, before[c], after[c])
		}
	}
	if after["shop-api-1"] == before["shop-api-1"] {
		t.Errorf("the api was not recreated after its change")
	}
	if got, err := hostFetch(t, fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/api", port)); got != "howdy from api, data seeded initialised\n" {
		t.Errorf("after the edit: %q, %v", got, err)
	}
	time.Sleep(time.Second)
	if n := projectEvents(t, d, "apply"); n != applies+1 {
		t.Errorf("vim's save made %d applies", n-applies)
	}

	// An atomic save (a temporary file renamed over the old one) re-applies once too.
	applies = projectEvents(t, d, "apply")
	mustSh(t, d, "sed 's/GREETING:-howdy/GREETING:-hey/' compose/shop/compose.yaml > compose/shop/.compose.yaml.tmp && mv compose/shop/.compose.yaml.tmp compose/shop/compose.yaml")
	eventually(t, 30*time.Second, func() string {
		if got, _ := hostFetch(t, fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/api", port)); got != "hey from api, data seeded initialised\n" {
			return "after an atomic save: " + got
		}
		return ""
	})
	time.Sleep(time.Second)
	if n := projectEvents(t, d, "apply"); n != applies+1 {
		t.Errorf("an atomic save made %d applies", n-applies)
	}
	after = composeIDs(t, d, "shop")

	// A broken save changes nothing; error says what and where.
	mustSh(t, d, "vim -u NONE -N -es -c '%s/^services:/services: [/' -c 'wq' compose/shop/compose.yaml")
	eventually(t, 30*time.Second, func() string {
		if got := mustSh(t, d, "cat compose/shop/error"); !strings.Contains(got, "compose.yaml") || !strings.Contains(got, "line") {
			return "compose/shop/error after a broken save: " + got
		}
		return ""
	})
	if now := composeIDs(t, d, "shop"); fmt.Sprint(now) != fmt.Sprint(after) {
		t.Errorf("a broken save changed the containers:\nbefore %v\nafter  %v", after, now)
	}

	// down: containers gone, the volume kept; then the directory can go.
	mustSh(t, d, "echo down > compose/shop/ctl")
	if ids := composeIDs(t, d, "shop"); len(ids) != 0 {
		t.Errorf("containers after down: %v", ids)
	}
	if out := d.MustRun("volume", "ls", "-q"); !strings.Contains(out, "shop_data") {
		t.Errorf("down removed the volume: %q", out)
	}
	failSh(t, d, "echo bogus > compose/shop/ctl", "Invalid argument")
	if got := mustSh(t, d, "cat compose/shop/error"); !strings.Contains(got, `unknown verb "bogus"`) {
		t.Errorf("error after a bad verb: %q", got)
	}
	failSh(t, d, "rmdir compose/shop", "Directory not empty")
	mustSh(t, d, "rm compose/shop/compose.yaml* && rmdir compose/shop")
}

// TestComposeScaleAndNames scales a service up and down to zero, and refuses a
// container_name that an unrelated container has.
func TestComposeScaleAndNames(t *testing.T) {
	d, bb := busyboxDaemon(t)
	dir := filepath.Join(t.TempDir(), "scaled")
	os.Mkdir(dir, 0o755)
	file := filepath.Join(dir, "compose.yaml")
	write := func(scale int, extra string) {
		os.WriteFile(file, []byte(fmt.Sprintf("services:\n  web:\n    image: %s\n    command: [sleep, \"1000\"]\n    stop_signal: SIGKILL\n    scale: %d\n%s", bb, scale, extra)), 0o644)
	}
	write(2, "")
	d.MustRun("compose", "-f", file, "up", "-d")
	if ids := composeIDs(t, d, file); len(ids) != 2 || ids["scaled-web-2"] == "" {
		t.Errorf("scale 2: %v", ids)
	}
	write(0, "")
	d.MustRun("compose", "-f", file, "up", "-d")
	if ids := composeIDs(t, d, file); len(ids) != 0 {
		t.Errorf("scale 0 left %v", ids)
	}
	d.MustRun("create", "--name", "taken", bb, "true")
	write(1, "  other:\n    image: "+bb+"\n    container_name: taken\n")
	if r := d.Run("compose", "-f", file, "up", "-d"); r.Code == 0 || !strings.Contains(r.Stderr, "already in use") {
		t.Errorf("a container_name taken by another container: exit %d, %s", r.Code, r.Stderr)
	}
	if c := inspectContainer(t, d, "taken"); c.State != "created" {
		t.Errorf("the unrelated container was touched: %+v", c)
	}
	d.MustRun("compose", "-f", file, "down")
}

// TestTreeComposeDownCancelsUp takes down a project whose up waits for a dependency
// that never completes: the down ends the wait, and the up fails.
func TestTreeComposeDownCancelsUp(t *testing.T) {
	d, bb := treeDaemon(t)
	mustOwnerSh(t, d, "mkdir compose/stuck")
	mustSh(t, d, fmt.Sprintf("printf 'services:\\n  init:\\n    image: %[1]s\\n    command: [sleep, \"1000\"]\\n    stop_signal: SIGKILL\\n  web:\\n    image: %[1]s\\n    command: [sleep, \"1000\"]\\n    depends_on: {init: {condition: service_completed_successfully}}\\n' > compose/stuck/compose.yaml", bb))
	// The writer of up is interrupted (Ctrl-C: the kernel runs one write of a file at a
	// time, so down waits for it otherwise); the up goes on waiting, until down.
	r := sh(t, d, "timeout -s INT 5 sh -c 'echo up > compose/stuck/ctl'")
	if r.Code == 0 {
		t.Fatalf("up of a project whose dependency never completes returned: %s", r.Stderr)
	}
	if got := mustSh(t, d, "cat compose/stuck/state"); got != "init 1/1 -\n" {
		t.Errorf("state while up waits: %q", got)
	}
	// Without the cancel, down would wait behind the up for good (sh gives up after a
	// minute and fails the test).
	mustSh(t, d, "echo down > compose/stuck/ctl")
	eventually(t, 10*time.Second, func() string {
		if projectEvents(t, d, "error") == 0 {
			return "the cancelled up reported no error"
		}
		return ""
	})
	if ids := composeIDs(t, d, "stuck"); len(ids) != 0 {
		t.Errorf("containers after down: %v", ids)
	}
}

// TestTreeShowsProjectsFromElsewhere: a project brought up with -f from a directory of
// its own appears under compose/ with its state, services and a link to where it lives
// (its files only where the tree's owner may read them: here they are root's), and
// its ctl takes it down.
func TestTreeShowsProjectsFromElsewhere(t *testing.T) {
	d, bb := treeDaemon(t)
	dir := filepath.Join(t.TempDir(), "repo")
	os.Mkdir(dir, 0o755)
	file := filepath.Join(dir, "compose.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf("name: elsewhere\nservices:\n  web:\n    image: %s\n    command: [sleep, \"1000\"]\n    stop_signal: SIGKILL\n", bb)), 0o644)
	d.MustRun("compose", "-f", file, "up", "-d")
	if got := mustSh(t, d, "ls compose/elsewhere; readlink compose/elsewhere/source; cat compose/elsewhere/state; readlink compose/elsewhere/services/web-1"); got != "ctl\nerror\nlogs\nservices\nsource\nstate\n"+dir+"\nweb 1/1 -\n../../../containers/elsewhere-web-1\n" {
		t.Errorf("compose/elsewhere:\n%s", got)
	}
	failSh(t, d, "echo up > compose/elsewhere/ctl", "Invalid argument")
	failSh(t, d, "touch compose/elsewhere/x", "")
	mustSh(t, d, "echo down > compose/elsewhere/ctl")
	if got := mustSh(t, d, "ls compose"); strings.Contains(got, "elsewhere") {
		t.Errorf("compose/ after down:\n%s", got)
	}
	if ids := composeIDs(t, d, "elsewhere"); len(ids) != 0 {
		t.Errorf("containers after down from the tree: %v", ids)
	}
}

// TestComposeStopSurvivesASave: a stopped project stays stopped when a save re-applies
// it (the change is made, nothing is started), until start.
func TestComposeStopSurvivesASave(t *testing.T) {
	d, bb := busyboxDaemon(t)
	dir := filepath.Join(t.TempDir(), "halted")
	os.Mkdir(dir, 0o755)
	file := filepath.Join(dir, "compose.yaml")
	write := func(v string) {
		os.WriteFile(file, []byte(fmt.Sprintf("services:\n  web:\n    image: %s\n    command: [sleep, \"1000\"]\n    stop_signal: SIGKILL\n    environment: [V=%s]\n", bb, v)), 0o644)
	}
	write("1")
	d.MustRun("compose", "-f", file, "up", "-d")
	d.MustRun("compose", "-f", file, "stop")
	applies := projectEvents(t, d, "apply")
	write("2")
	eventually(t, 20*time.Second, func() string {
		if projectEvents(t, d, "apply") == applies {
			return "no re-apply after a save"
		}
		return ""
	})
	if ids := composeIDs(t, d, file); !strings.HasSuffix(ids["halted-web-1"], " created") && !strings.HasSuffix(ids["halted-web-1"], " stopped") {
		t.Errorf("a save started a stopped project: %v", ids)
	}
	if env := d.MustRun("inspect", "halted-web-1"); !strings.Contains(env, "V=2") {
		t.Errorf("the save's change was not made")
	}
	d.MustRun("compose", "-f", file, "start")
	if ids := composeIDs(t, d, file); !strings.HasSuffix(ids["halted-web-1"], " running") {
		t.Errorf("after start: %v", ids)
	}
}

// TestComposeUpInTheForeground: up without -d follows the project's output, prefixed,
// until Ctrl-C, which stops the project (and it stays stopped: the daemon knows).
func TestComposeUpInTheForeground(t *testing.T) {
	d, bb := busyboxDaemon(t)
	dir := filepath.Join(t.TempDir(), "fg")
	os.Mkdir(dir, 0o755)
	file := filepath.Join(dir, "compose.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf("services:\n  web:\n    image: %s\n    command: [sh, -c, 'while true; do echo tick; sleep 1; done']\n    stop_signal: SIGKILL\n", bb)), 0o644)
	cmd := exec.Command(harness.Binary(t), "compose", "-f", file, "up")
	cmd.Env = append(os.Environ(), "DUTCHMAN_HOST="+d.Host())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil || !strings.Contains(out.String(), "web-1 | tick\n") {
		t.Errorf("compose up in the foreground, then Ctrl-C: %v\n%s", err, out.String())
	}
	if ids := composeIDs(t, d, file); !strings.HasSuffix(ids["fg-web-1"], " stopped") {
		t.Errorf("after Ctrl-C: %v; want the project stopped", ids)
	}
	var ls []struct {
		Name  string
		Error string
	}
	json.Unmarshal([]byte(d.MustRun("compose", "ls", "-a", "--format", "json")), &ls)
	if len(ls) != 1 || ls[0].Name != "fg" {
		t.Errorf("compose ls -a after Ctrl-C: %+v", ls)
	}
}
