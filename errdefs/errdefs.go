// Package errdefs holds the kinds of error that every door of the engine (the HTTP API,
// the tree, the CLI) must tell apart: not found, invalid, in use, and so on.
//
// A package below the doors wraps its error with a kind (errdefs.NotFound(err)); the doors
// map kinds to HTTP status codes and errnos, each in one table. The message is always the
// wrapped error's own, so kinds never change what a person reads.
package errdefs

import (
	"errors"
	"strings"
)

// The kinds. Test with errors.Is(err, errdefs.ErrNotFound).
var (
	ErrNotFound        = errors.New("not found")
	ErrAlreadyExists   = errors.New("already exists")
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrConflict: the object's state forbids the operation (in use, busy).
	ErrConflict = errors.New("conflict")
	// ErrUnavailable: something the engine depends on (a registry) failed or is unreachable.
	ErrUnavailable  = errors.New("unavailable")
	ErrUnauthorized = errors.New("unauthorized")
	// ErrNoSpace: a disk filled up. Also true of errors wrapping syscall.ENOSPC.
	ErrNoSpace = errors.New("no space left on device")
	// ErrCannotRun: the container's runtime could not run it on this host (runc refused
	// it, its VM stopped before its agent answered, KVM was asked for and cannot run it).
	ErrCannotRun = errors.New("cannot run")
)

// names names the kinds, for errors that cross a process boundary (a shim's answers).
var names = []struct {
	name string
	kind error
}{
	{"not_found", ErrNotFound},
	{"already_exists", ErrAlreadyExists},
	{"invalid_argument", ErrInvalidArgument},
	{"conflict", ErrConflict},
	{"unavailable", ErrUnavailable},
	{"unauthorized", ErrUnauthorized},
	{"no_space", ErrNoSpace},
	{"cannot_run", ErrCannotRun},
}

// KindOf names err's kinds, joined by commas ("" for an error of none), for WithKinds
// on the other side of a process boundary.
func KindOf(err error) string {
	var out []string
	for _, n := range names {
		if errors.Is(err, n.kind) {
			out = append(out, n.name)
		}
	}
	return strings.Join(out, ",")
}

// WithKinds marks err with the kinds KindOf named; names it does not know are ignored.
func WithKinds(kinds string, err error) error {
	for _, k := range strings.Split(kinds, ",") {
		for _, n := range names {
			if n.name == k {
				err = wrap(n.kind, err)
			}
		}
	}
	return err
}

type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.err, e.kind} }

func wrap(kind, err error) error {
	if err == nil {
		return nil
	}
	return &kindError{kind: kind, err: err}
}

// NotFound marks err as ErrNotFound.
func NotFound(err error) error { return wrap(ErrNotFound, err) }

// AlreadyExists marks err as ErrAlreadyExists.
func AlreadyExists(err error) error { return wrap(ErrAlreadyExists, err) }

// Invalid marks err as ErrInvalidArgument.
func Invalid(err error) error { return wrap(ErrInvalidArgument, err) }

// Conflict marks err as ErrConflict.
func Conflict(err error) error { return wrap(ErrConflict, err) }

// Unavailable marks err as ErrUnavailable.
func Unavailable(err error) error { return wrap(ErrUnavailable, err) }

// Unauthorized marks err as ErrUnauthorized.
func Unauthorized(err error) error { return wrap(ErrUnauthorized, err) }

// NoSpace marks err as ErrNoSpace.
func NoSpace(err error) error { return wrap(ErrNoSpace, err) }

// CannotRun marks err as ErrCannotRun.
func CannotRun(err error) error { return wrap(ErrCannotRun, err) }
