package fs

import (
	"context"
	"fmt"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/flyingdutchman/flyingdutchman/engine"
	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// buildsDir is builds/: one directory per build context, holding a Dockerfile and its
// files (or a `source` link to a project elsewhere) as real files of the backing
// directory, beside the files the engine shows: ctl, log, state, error. mkdir makes
// one; rmdir removes an emptied one. A name is an image repository's (lowercase letters,
// digits, - and _): the image is NAME:latest unless build is given tags.
type buildsDir struct {
	*backedDir
}

var (
	_ gofs.NodeMkdirer = (*buildsDir)(nil)
	_ gofs.NodeRmdirer = (*buildsDir)(nil)
	_ gofs.NodeRenamer = (*buildsDir)(nil)
)

func (t *tree) buildsDir() gofs.InodeEmbedder {
	d := &buildsDir{}
	errFile := t.value("error", "builds/error", func(context.Context) ([]byte, error) { return line(t.buildsErr.get()), nil })
	list, find := t.namedDirs("builds", errFile, t.buildEntry)
	d.backedDir = t.newBackedDir(t.backing, false, list, find)
	return d
}

func (t *tree) buildEntry(name string) entry {
	return entry{name: name, mode: syscall.S_IFDIR | 0o755, key: "builds/" + name, timeout: stableTimeout,
		node: func() gofs.InodeEmbedder { return t.buildDirNode(name) }}
}

// Mkdir makes a build directory; its name names the image.
func (d *buildsDir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return d.mkdirNamed(ctx, name, mode, out, &d.t.buildsErr, "build directory name (it names the image)", d.t.buildEntry)
}

// Rmdir removes an emptied build directory: EBUSY while it builds or pushes.
func (d *buildsDir) Rmdir(ctx context.Context, name string) syscall.Errno {
	if st := d.t.eng.BuildDirState(name).State; st == engine.BuildBuilding || st == engine.BuildPushing {
		d.t.buildsErr.set(fmt.Sprintf("builds/%s is %s", name, st))
		return syscall.EBUSY
	}
	if errno := d.passNode.Rmdir(ctx, name); errno != 0 {
		return errno
	}
	if err := d.t.eng.ForgetBuildDir(name); err != nil {
		d.t.buildsErr.set(err.Error())
	}
	d.t.buildErrs.set(name, "")
	return 0
}

// Rename of a build directory is refused: its record and log are kept by its name.
func (d *buildsDir) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if _, ok, _ := d.find(ctx, name); ok {
		return syscall.EPERM
	}
	return d.backedDir.Rename(ctx, name, newParent, newName, flags)
}

// buildVerbs are the verbs a build directory's ctl takes.
const buildVerbs = "build [--no-cache] [TAG]...\npush\ncancel\n"

// buildDirNode is builds/NAME/: the build context's files, and the engine's view of
// its builds.
func (t *tree) buildDirNode(name string) gofs.InodeEmbedder {
	key := "builds/" + name + "/"
	entries := []entry{
		{name: "ctl", mode: syscall.S_IFREG | 0o644, key: key + "ctl", timeout: stableTimeout,
			node: func() gofs.InodeEmbedder { return t.buildCtl(name) }},
		t.stream("log", key+"log", func() (string, error) { return t.eng.BuildDirLog(name), nil }),
		t.value("state", key+"state", func(context.Context) ([]byte, error) { return line(t.eng.BuildDirState(name).State), nil }),
		t.value("error", key+"error", func(context.Context) ([]byte, error) {
			if msg := t.buildErrs.get(name); msg != "" {
				return line(msg), nil
			}
			return line(t.eng.BuildDirState(name).Error), nil
		}),
	}
	return t.newBackedDir(t.backing, false, func(context.Context) ([]entry, error) { return entries, nil }, fixedFind(entries))
}

func (t *tree) buildCtl(name string) *ctlFile {
	return &ctlFile{virtualNode: virtualNode{t: t},
		verbs: func(context.Context) string { return buildVerbs },
		run: func(ctx context.Context, verb string, args []string) error {
			t.buildErrs.set(name, "")
			switch verb {
			case "build":
				o := engine.BuildDirOptions{Owner: t.uid}
				for _, a := range args {
					switch {
					case a == "--no-cache":
						o.NoCache = true
					case strings.HasPrefix(a, "-"):
						return errdefs.Invalid(fmt.Errorf("build: unknown option %q (build [--no-cache] [TAG]...)", a))
					default:
						o.Tags = append(o.Tags, a)
					}
				}
				_, err := t.eng.BuildInDir(ctx, name, o)
				return err
			case "cancel":
				if len(args) > 0 {
					return errdefs.Invalid(fmt.Errorf("cancel: too many arguments: %q", strings.Join(args, " ")))
				}
				return t.eng.CancelBuildDir(name)
			case "push":
				if len(args) > 0 {
					return errdefs.Invalid(fmt.Errorf("push: too many arguments: %q (push pushes the tags of the last build)", strings.Join(args, " ")))
				}
				return t.eng.PushBuildDir(ctx, name)
			}
			return errdefs.Invalid(fmt.Errorf("builds/%s: unknown verb %q: the verbs are build [--no-cache] [TAG]..., push, cancel", name, verb))
		},
		failed: func(_ string, err error) {
			t.buildErrs.set(name, err.Error())
		},
	}
}
