package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/flyingdutchman/flyingdutchman/compose"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// projectName is Compose's rule for project names.
var projectName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// composeDir is compose/: one directory per project, holding the project's files
// (compose.yaml, .env, and whatever else people keep there) as real files of the backing
// directory, beside the files the engine shows: ctl, state, logs, error, services/.
// mkdir makes a project; rmdir removes an emptied one that is down.
type composeDir struct {
	*backedDir
}

var (
	_ gofs.NodeMkdirer  = (*composeDir)(nil)
	_ gofs.NodeRmdirer  = (*composeDir)(nil)
	_ gofs.NodeRenamer  = (*composeDir)(nil)
	_ gofs.NodeLookuper = (*composeDir)(nil)
)

func (t *tree) composeDir() gofs.InodeEmbedder {
	d := &composeDir{}
	errFile := t.value("error", "compose/error", func(context.Context) ([]byte, error) { return line(t.composeErr.get()), nil })
	list, find := t.namedDirs(compose.TreeDir, errFile, t.projectEntry)
	d.backedDir = t.newBackedDir(t.backing, false,
		func(ctx context.Context) ([]entry, error) {
			out, err := list(ctx)
			if err != nil {
				return nil, err
			}
			// Projects run from elsewhere (dutchman compose -f PATH up), shown read-only.
			if t.projects != nil {
				for _, rec := range t.projects.Projects() {
					if !rec.InTree && !slices.ContainsFunc(out, func(e entry) bool { return e.name == rec.Name }) {
						out = append(out, t.outsideProjectEntry(rec))
					}
				}
			}
			return out, nil
		},
		func(ctx context.Context, name string) (entry, bool, error) {
			e, ok, err := find(ctx, name)
			if err == nil && !ok && t.projects != nil && projectName.MatchString(name) {
				if rec, err := t.projects.Project(name); err == nil && !rec.InTree {
					return t.outsideProjectEntry(rec), true, nil
				}
			}
			return e, ok, err
		})
	return d
}

// namedDirs lists and finds the directories of the backing directory's dir (compose/,
// builds/) whose names are projectName's kind, as entries made by entryOf, after the
// directory's error file.
func (t *tree) namedDirs(dir string, errFile entry, entryOf func(name string) entry) (
	list func(ctx context.Context) ([]entry, error), find func(ctx context.Context, name string) (entry, bool, error)) {
	list = func(ctx context.Context) ([]entry, error) {
		all, err := t.backingDir.list(filepath.Join(t.backing.Path, dir), t.backing)
		if err != nil {
			return nil, err
		}
		out := []entry{errFile}
		for _, f := range all {
			if f.Mode&syscall.S_IFMT == syscall.S_IFDIR && projectName.MatchString(f.Name) && f.Name != errFile.name {
				out = append(out, entryOf(f.Name))
			}
		}
		return out, nil
	}
	find = func(ctx context.Context, name string) (entry, bool, error) {
		if name == errFile.name {
			return errFile, true, nil
		}
		if !projectName.MatchString(name) {
			return entry{}, false, nil
		}
		var st syscall.Stat_t
		var err error
		if errno := t.backingDir.in(ctx, func() { err = syscall.Lstat(path.Join("/", dir, name), &st) }); errno != 0 {
			return entry{}, false, errno
		}
		if err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			return entry{}, false, nil
		}
		return entryOf(name), true, nil
	}
	return list, find
}

// projectEntry is the directory of the tree's project name.
func (t *tree) projectEntry(name string) entry {
	return entry{name: name, mode: syscall.S_IFDIR | 0o755, key: "compose/" + name, timeout: stableTimeout,
		node: func() gofs.InodeEmbedder { return t.projectDir(name) }}
}

// Mkdir makes a project: a directory for its files. Its name is Compose's kind of
// project name (lowercase letters, digits, - and _).
func (d *composeDir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return d.mkdirNamed(ctx, name, mode, out, &d.t.composeErr, "project name", d.t.projectEntry)
}

// mkdirNamed makes directory name of a directory of named directories (compose/,
// builds/), which takes projectName's kind of names, as entryOf's entry; what is the
// name of, the message of a bad name in errFile.
func (d *backedDir) mkdirNamed(ctx context.Context, name string, mode uint32, out *fuse.EntryOut, errFile *lastError, what string, entryOf func(string) entry) (*gofs.Inode, syscall.Errno) {
	if name == "error" {
		return nil, syscall.EEXIST
	}
	if !projectName.MatchString(name) {
		errFile.set(fmt.Sprintf("invalid %s %q: lowercase letters, digits, '-' and '_', starting with a letter or digit", what, name))
		return nil, syscall.EINVAL
	}
	if _, errno := d.passNode.Mkdir(ctx, name, mode, out); errno != 0 {
		return nil, errno
	}
	errFile.set("")
	return d.t.newChild(ctx, &d.Inode, entryOf(name), out)
}

// Rmdir removes a project's directory: EBUSY while the project is up, ENOTEMPTY while
// it holds files.
func (d *composeDir) Rmdir(ctx context.Context, name string) syscall.Errno {
	if d.t.projects != nil && d.t.projects.IsUp(name) {
		d.t.composeErr.set(fmt.Sprintf("project %s is up: echo down > compose/%s/ctl first", name, name))
		return syscall.EBUSY
	}
	return d.passNode.Rmdir(ctx, name)
}

// Rename of a project's directory is refused: its name is the project's, which its
// containers, networks and volumes carry.
func (d *composeDir) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if _, ok, _ := d.find(ctx, name); ok {
		return syscall.EPERM
	}
	return d.backedDir.Rename(ctx, name, newParent, newName, flags)
}

// projectDir is compose/NAME/: the project's files, and the engine's view of it.
func (t *tree) projectDir(name string) gofs.InodeEmbedder {
	entries := t.projectViews(name, "compose/"+name+"/", func() *ctlFile { return t.projectCtl(name) })
	find := func(ctx context.Context, n string) (entry, bool, error) {
		for _, e := range entries {
			if e.name == n {
				return e, true, nil
			}
		}
		return entry{}, false, nil
	}
	return t.newBackedDir(t.backing, false, func(context.Context) ([]entry, error) { return entries, nil }, find)
}

// projectViews are the engine's files of project name's directory (key is its inode
// key): ctl (made by ctl), state, error, logs and services/.
func (t *tree) projectViews(name, key string, ctl func() *ctlFile) []entry {
	return []entry{
		{name: "ctl", mode: syscall.S_IFREG | 0o644, key: key + "ctl", timeout: stableTimeout,
			node: func() gofs.InodeEmbedder { return ctl() }},
		t.value("state", key+"state", func(context.Context) ([]byte, error) { return t.projectState(name), nil }),
		t.value("error", key+"error", func(context.Context) ([]byte, error) { return line(t.projectError(name)), nil }),
		t.stream("logs", key+"logs", func() (string, error) { return t.projects.LogFile(name) }),
		{name: "services", mode: syscall.S_IFDIR | 0o555, key: key + "services", timeout: noTimeout,
			node: func() gofs.InodeEmbedder { return t.projectServices(name) }},
	}
}

// outsideProjectEntry is the directory of a project run from elsewhere: its state, logs
// and services as a tree project's, a source link to where its files are, and the files
// themselves, read-only, where the tree's owner may read them (root, or the files'
// owner). Its ctl takes down, start, stop and restart; up is the CLI's, which has the
// environment to interpolate from.
func (t *tree) outsideProjectEntry(rec compose.Record) entry {
	name := rec.Name
	key := "compose/" + name + "@outside/"
	return entry{name: name, mode: syscall.S_IFDIR | 0o555, key: key, timeout: noTimeout,
		node: func() gofs.InodeEmbedder {
			src := rec.Options.WorkingDir
			if src == "" && len(rec.Options.Files) > 0 {
				src = filepath.Dir(rec.Options.Files[0])
			}
			entries := append(t.projectViews(name, key, func() *ctlFile { return t.outsideProjectCtl(name) }),
				entry{name: "source", mode: syscall.S_IFLNK | 0o777, key: key + "source", timeout: noTimeout,
					node: func() gofs.InodeEmbedder { return &symlinkNode{virtualNode: virtualNode{t: t}, target: src} }})
			for _, f := range rec.Files {
				base := filepath.Base(f)
				var st syscall.Stat_t
				if syscall.Stat(f, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG || (t.uid != 0 && st.Uid != t.uid) ||
					slices.ContainsFunc(entries, func(e entry) bool { return e.name == base }) {
					continue
				}
				entries = append(entries, t.value(base, key+base, func(context.Context) ([]byte, error) { return t.readOwned(f) }))
			}
			return &dirNode{virtualNode: virtualNode{t: t}, perm: 0o555, entries: func(context.Context) ([]entry, error) { return entries, nil }}
		}}
}

// readOwned reads a regular file of at most 1 MiB, without blocking on a FIFO, for the
// tree's owner: a file of someone else's is shown only in root's tree. The owner is
// checked on the open file (the path may have been made a link since).
func (t *tree) readOwned(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > 1<<20 {
		return nil, fmt.Errorf("%s: not a regular file of at most 1 MiB", path)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); t.uid != 0 && (!ok || sys.Uid != t.uid) {
		return nil, fmt.Errorf("%s: not the tree owner's file", path)
	}
	return io.ReadAll(io.LimitReader(f, 1<<20))
}

// outsideProjectCtl is the ctl of a project run from elsewhere.
func (t *tree) outsideProjectCtl(name string) *ctlFile {
	return t.projectCtlFile(name, "down [--volumes]\nstart\nstop\nrestart\n", func(ctx context.Context, verb string, args []string) error {
		var err error
		switch verb {
		case "down":
			vols := len(args) == 1 && (args[0] == "-v" || args[0] == "--volumes")
			if len(args) > 0 && !vols {
				return errdefs.Invalid(fmt.Errorf("down: unknown argument %q (down [--volumes])", strings.Join(args, " ")))
			}
			err = t.projects.DownOutside(ctx, name, compose.DownOptions{Volumes: vols})
		case "start":
			err = t.projects.Start(ctx, name, nil)
		case "stop":
			err = t.projects.Stop(ctx, name, nil)
		case "restart":
			if err = t.projects.Stop(ctx, name, nil); err == nil {
				err = t.projects.Start(ctx, name, nil)
			}
		default:
			return errdefs.Invalid(fmt.Errorf("project %s: unknown verb %q: a project run from elsewhere takes down [--volumes], start, stop, restart (up it where it lives: dutchman compose up)", name, verb))
		}
		return err
	})
}

// projectErrors are the last failures of verbs written to projects' ctl files.
type projectErrors struct {
	mu sync.Mutex
	m  map[string]string
}

func (p *projectErrors) set(name, msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]string{}
	}
	if msg == "" {
		delete(p.m, name)
	} else {
		p.m[name] = msg
	}
}

func (p *projectErrors) get(name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[name]
}

// projectError is the project's last error: that of a re-apply after a save, or of a
// verb.
func (t *tree) projectError(name string) string {
	if t.projects != nil {
		if rec, err := t.projects.Project(name); err == nil && rec.Error != "" {
			return rec.Error
		}
	}
	return t.projectErrs.get(name)
}

// projectState is one line per service: its name, its containers running of those it
// has, and their health.
func (t *tree) projectState(name string) []byte {
	var b bytes.Buffer
	for _, s := range compose.States(t.eng, name) {
		health := s.Health
		if health == "" {
			health = "-"
		}
		fmt.Fprintf(&b, "%s %d/%d %s\n", s.Service, s.Running, s.Total, health)
	}
	return b.Bytes()
}

// projectServices is compose/NAME/services/: a link per container of the project, to
// its directory in containers/.
func (t *tree) projectServices(name string) *dirNode {
	list := func(ctx context.Context) ([]entry, error) {
		var out []entry
		for _, c := range compose.Containers(t.eng, name) {
			link := strings.TrimPrefix(c.Name, name+"-")
			target := "../../../containers/" + c.Name
			out = append(out, entry{name: link, mode: syscall.S_IFLNK | 0o777, key: "compose/" + name + "/services/" + c.ID, timeout: noTimeout,
				node: func() gofs.InodeEmbedder { return &symlinkNode{virtualNode: virtualNode{t: t}, target: target} }})
		}
		return out, nil
	}
	return &dirNode{virtualNode: virtualNode{t: t}, perm: 0o555, entries: list}
}

// symlinkNode is a symbolic link of the tree's own.
type symlinkNode struct {
	virtualNode
	target string
}

var (
	_ gofs.NodeReadlinker = (*symlinkNode)(nil)
	_ gofs.NodeGetattrer  = (*symlinkNode)(nil)
)

func (s *symlinkNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	return []byte(s.target), 0
}

func (s *symlinkNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	s.t.attr(&out.Attr, syscall.S_IFLNK|0o777, uint64(len(s.target)), s.t.started)
	out.SetTimeout(noTimeout)
	return 0
}

// projectVerbs are the verbs a project's ctl takes.
const projectVerbs = "up\ndown [--volumes]\nstart\nstop\nrestart\npull\nbuild [--no-cache]\n"

func (t *tree) projectCtl(name string) *ctlFile {
	return t.projectCtlFile(name, projectVerbs, func(ctx context.Context, verb string, args []string) error {
		return t.projectVerb(ctx, name, verb, args)
	})
}

// projectCtlFile is a project's ctl, taking verbs with run: a failure goes to the
// project's error and to events; a success clears the error.
func (t *tree) projectCtlFile(name, verbs string, run func(ctx context.Context, verb string, args []string) error) *ctlFile {
	return &ctlFile{virtualNode: virtualNode{t: t},
		verbs: func(context.Context) string { return verbs },
		run: func(ctx context.Context, verb string, args []string) error {
			err := run(ctx, verb, args)
			if err == nil {
				t.projectErrs.set(name, "")
			}
			return err
		},
		failed: func(_ string, err error) {
			t.projectErrs.set(name, err.Error())
			t.eng.Publish("project", "error", name, map[string]string{"error": err.Error()})
		},
	}
}

// projectVerb runs one line written to a project's ctl.
func (t *tree) projectVerb(ctx context.Context, name, verb string, args []string) error {
	if t.projects == nil {
		return errors.New("compose projects are not served by this daemon")
	}
	noArgs := func() error {
		if len(args) > 0 {
			return errdefs.Invalid(fmt.Errorf("%s: too many arguments: %q", verb, strings.Join(args, " ")))
		}
		return nil
	}
	switch verb {
	case "up":
		if err := noArgs(); err != nil {
			return err
		}
		return t.projects.UpTree(ctx, name, nil)
	case "down":
		vols := false
		for _, a := range args {
			switch a {
			case "-v", "--volumes":
				vols = true
			default:
				return errdefs.Invalid(fmt.Errorf("down: unknown argument %q (down [--volumes])", a))
			}
		}
		return t.projects.DownTree(ctx, name, compose.DownOptions{Volumes: vols})
	case "start":
		if err := noArgs(); err != nil {
			return err
		}
		return t.projects.Start(ctx, name, nil)
	case "stop":
		if err := noArgs(); err != nil {
			return err
		}
		return t.projects.Stop(ctx, name, nil)
	case "restart":
		if err := noArgs(); err != nil {
			return err
		}
		if err := t.projects.Stop(ctx, name, nil); err != nil {
			return err
		}
		return t.projects.Start(ctx, name, nil)
	case "pull":
		if err := noArgs(); err != nil {
			return err
		}
		return t.projects.PullTree(ctx, name)
	case "build":
		noCache := false
		for _, a := range args {
			if a != "--no-cache" {
				return errdefs.Invalid(fmt.Errorf("build: unknown argument %q (build [--no-cache])", a))
			}
			noCache = true
		}
		return t.projects.BuildTree(ctx, name, noCache)
	}
	return errdefs.Invalid(fmt.Errorf("project %s: unknown verb %q: the verbs are up, down [--volumes], start, stop, restart, pull, build [--no-cache]", name, verb))
}

// composeJail runs f in the jail of the tree's backing directory, for the loader.
func (t *tree) composeJail(ctx context.Context, f func()) error {
	if errno := t.backingDir.in(ctx, f); errno != 0 {
		return errno
	}
	return nil
}
