// Package errdefs holds the kinds of error that every door of the engine (the HTTP API,
// the tree, the CLI) must tell apart: not found, invalid, in use, and so on.
//
// A package below the doors wraps its error with a kind (errdefs.NotFound(err)); the doors
// map kinds to HTTP status codes and errnos, each in one table. The message is always the
// wrapped error's own, so kinds never change what a person reads.
package errdefs

import "errors"

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
)

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
