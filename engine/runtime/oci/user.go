//go:build linux

package oci

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// The messages Docker (moby/sys/user) gives, so that people and scripts that know Docker's
// errors recognise ours.
var (
	errNoPasswdEntries = errors.New("no matching entries in passwd file")
	errNoGroupEntries  = errors.New("no matching entries in group file")
)

// maxID is the largest uid or gid Docker accepts: ids are signed 32-bit in many C
// libraries, and -1 means "unchanged" to the set*id calls.
const maxID = 1<<31 - 1

// maxUserDBSize bounds how much of an image's /etc/passwd or /etc/group the daemon reads:
// the file is the container's, and a huge one must not exhaust the daemon's memory.
const maxUserDBSize = 16 << 20

// passwdEntry is a line of /etc/passwd.
type passwdEntry struct {
	name     string
	uid, gid int
	home     string
}

// groupEntry is a line of /etc/group.
type groupEntry struct {
	name    string
	gid     int
	members []string
}

// ResolveUser resolves user ("", "uid", "uid:gid", "name", "name:group", "uid:group",
// "name:gid") against rootfs's /etc/passwd and /etc/group, as Docker does:
//
//   - "" is uid 0, with the groups and home of uid 0's entry if there is one;
//   - a numeric id needs no entry (and is always an id, never a name);
//   - a name must have an entry, else "unable to find user NAME: no matching entries in
//     passwd file" (errdefs.Invalid), and likewise for a group;
//   - without an explicit group, the gid is the passwd entry's and the supplementary
//     groups are those of /etc/group that list the user as a member;
//   - with an explicit group, there are no supplementary groups.
//
// The primary gid is always the first of AdditionalGids, as containerd does since
// CVE-2023-25173 and Docker likewise: otherwise a process could shed its primary group
// (setgid, newgrp) and reach files whose group permissions deny more than their other
// permissions.
//
// It also returns the user's home directory for HOME, "/" if unknown. rootfs is the
// container's and untrusted: the files are opened inside it (a symlink to /etc/shadow
// resolves to rootfs/etc/shadow), must be regular files, and are bounded in size.
func ResolveUser(rootfs, user string) (specs.User, string, error) {
	userArg, groupArg, _ := strings.Cut(user, ":")
	if strings.Contains(groupArg, ":") {
		return specs.User{}, "", errdefs.Invalid(fmt.Errorf("invalid user %q: want name[:group] or uid[:gid]", user))
	}
	uidArg, uidErr := strconv.Atoi(userArg)
	gidArg, gidErr := strconv.Atoi(groupArg)

	users, err := readPasswd(rootfs)
	if err != nil {
		return specs.User{}, "", err
	}
	uid, gid, home := 0, 0, "/"
	var matched *passwdEntry
	for i := range users {
		u := &users[i]
		var ok bool
		switch {
		case userArg == "":
			ok = u.uid == 0
		case uidErr == nil:
			ok = u.uid == uidArg
		default:
			ok = u.name == userArg
		}
		if ok {
			matched = u // the first match wins, as in libc and Docker
			break
		}
	}
	switch {
	case matched != nil:
		uid, gid = matched.uid, matched.gid
		if matched.home != "" {
			home = matched.home
		}
	case userArg == "":
	case uidErr != nil:
		return specs.User{}, "", errdefs.Invalid(fmt.Errorf("unable to find user %s: %w", userArg, errNoPasswdEntries))
	default:
		uid = uidArg
	}
	if uid < 0 || uid > maxID {
		return specs.User{}, "", errdefs.Invalid(fmt.Errorf("invalid user %q: uids and gids must be in range 0-%d", user, maxID))
	}

	var sgids []int
	if groupArg != "" || matched != nil {
		groups, err := readGroup(rootfs)
		if err != nil {
			return specs.User{}, "", err
		}
		if groupArg != "" {
			found := false
			for _, g := range groups {
				if (gidErr == nil && g.gid == gidArg) || (gidErr != nil && g.name == groupArg) {
					gid, found = g.gid, true
					break
				}
			}
			if !found {
				if gidErr != nil {
					return specs.User{}, "", errdefs.Invalid(fmt.Errorf("unable to find group %s: %w", groupArg, errNoGroupEntries))
				}
				gid = gidArg
			}
		} else {
			for _, g := range groups {
				if slices.Contains(g.members, matched.name) {
					sgids = append(sgids, g.gid)
				}
			}
		}
	}
	if gid < 0 || gid > maxID {
		return specs.User{}, "", errdefs.Invalid(fmt.Errorf("invalid user %q: uids and gids must be in range 0-%d", user, maxID))
	}

	u := specs.User{UID: uint32(uid), GID: uint32(gid), AdditionalGids: []uint32{uint32(gid)}}
	for _, g := range sgids {
		if !slices.Contains(u.AdditionalGids, uint32(g)) {
			u.AdditionalGids = append(u.AdditionalGids, uint32(g))
		}
	}
	return u, home, nil
}

// readPasswd parses rootfs's /etc/passwd; a missing file has no entries.
func readPasswd(rootfs string) ([]passwdEntry, error) {
	var out []passwdEntry
	err := readUserDB(rootfs, "/etc/passwd", func(f []string) {
		// name:password:uid:gid:gecos:home:shell
		if len(f) < 4 {
			return
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		// A malformed id must not read as 0 (root), as it would with a lenient parser.
		if err1 != nil || err2 != nil {
			return
		}
		e := passwdEntry{name: f[0], uid: uid, gid: gid}
		if len(f) > 5 {
			e.home = f[5]
		}
		out = append(out, e)
	})
	return out, err
}

// readGroup parses rootfs's /etc/group; a missing file has no entries.
func readGroup(rootfs string) ([]groupEntry, error) {
	var out []groupEntry
	err := readUserDB(rootfs, "/etc/group", func(f []string) {
		// name:password:gid:member,member
		if len(f) < 3 {
			return
		}
		gid, err := strconv.Atoi(f[2])
		if err != nil {
			return
		}
		e := groupEntry{name: f[0], gid: gid}
		if len(f) > 3 && f[3] != "" {
			for _, m := range strings.Split(f[3], ",") {
				e.members = append(e.members, strings.TrimSpace(m))
			}
		}
		out = append(out, e)
	})
	return out, err
}

// readUserDB calls line with the colon-separated fields of each line of the file at
// path inside rootfs, skipping blank lines and comments. A file that does not exist (or
// whose directory does not) is empty, as Docker treats it.
func readUserDB(rootfs, path string, line func(fields []string)) error {
	b, err := readFileInRoot(rootfs, path)
	if err != nil {
		return err
	}
	s := bufio.NewScanner(bytes.NewReader(b))
	s.Buffer(nil, len(b)+1)
	for s.Scan() {
		l := strings.TrimSpace(s.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		f := strings.Split(l, ":")
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		line(f)
	}
	if err := s.Err(); err != nil {
		return errdefs.Invalid(fmt.Errorf("read %s of the container: %w", path, err))
	}
	return nil
}

// readFileInRoot reads path inside rootfs without following any symlink out of it. It
// returns nil for a file that does not exist. The container's files are the image's
// to choose, so a file that is not regular (a FIFO would block the daemon, a device
// could be endless) or too large is an error of the image's (errdefs.Invalid).
func readFileInRoot(rootfs, path string) ([]byte, error) {
	h, err := pathrs.OpenInRoot(rootfs, path)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, errdefs.Invalid(fmt.Errorf("open %s of the container: %w", path, err))
	}
	defer h.Close()
	// fstat works on the O_PATH handle, so the file's type is known before it is opened
	// for reading (opening a FIFO would already block).
	st, err := h.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s of the container: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, errdefs.Invalid(fmt.Errorf("%s of the container is %s, not a regular file", path, fileKind(st.Mode())))
	}
	if st.Size() > maxUserDBSize {
		return nil, errdefs.Invalid(fmt.Errorf("%s of the container is too large (%d bytes, at most %d)", path, st.Size(), maxUserDBSize))
	}
	f, err := pathrs.Reopen(h, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY)
	if err != nil {
		return nil, fmt.Errorf("open %s of the container: %w", path, err)
	}
	defer f.Close()
	// The limit guards against a file that grows after the stat.
	b, err := io.ReadAll(io.LimitReader(f, maxUserDBSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s of the container: %w", path, err)
	}
	if len(b) > maxUserDBSize {
		return nil, errdefs.Invalid(fmt.Errorf("%s of the container is too large (more than %d bytes)", path, maxUserDBSize))
	}
	return b, nil
}

// fileKind names the type of a file that is not regular, for error messages.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	default:
		return "a special file"
	}
}
