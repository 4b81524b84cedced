package api

import (
	"errors"
	"fmt"
	"net/http"
	"syscall"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// Error is an error as it travels over the API.
type Error struct {
	Message string `json:"message"`
	// Code is stable: clients test it, never the message.
	Code string `json:"code"`
	// Status is the HTTP status it came with (not sent in the body).
	Status int `json:"-"`
}

func (e *Error) Error() string { return e.Message }

// Is makes errors.Is(err, errdefs.ErrNotFound) hold on the client for an error the
// server classified as not found.
func (e *Error) Is(target error) bool {
	for _, k := range errorKinds {
		if k.kind == target {
			return k.code == e.Code
		}
	}
	return false
}

// errorKinds maps kinds of error to codes and HTTP statuses: the one table.
var errorKinds = []struct {
	kind   error
	code   string
	status int
}{
	{errdefs.ErrNotFound, "not_found", http.StatusNotFound},
	{errdefs.ErrAlreadyExists, "already_exists", http.StatusConflict},
	{errdefs.ErrInvalidArgument, "invalid_argument", http.StatusBadRequest},
	{errdefs.ErrConflict, "conflict", http.StatusConflict},
	{errdefs.ErrUnauthorized, "unauthorized", http.StatusUnauthorized},
	{errdefs.ErrNoSpace, "no_space", http.StatusInsufficientStorage},
	{syscall.ENOSPC, "no_space", http.StatusInsufficientStorage},
	{errdefs.ErrUnavailable, "unavailable", http.StatusBadGateway},
	{errdefs.ErrCannotRun, "cannot_run", http.StatusInternalServerError},
}

// toError classifies err for the wire.
func toError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	for _, k := range errorKinds {
		if errors.Is(err, k.kind) {
			return &Error{Message: err.Error(), Code: k.code, Status: k.status}
		}
	}
	return &Error{Message: err.Error(), Code: "internal", Status: http.StatusInternalServerError}
}

func badRequest(format string, args ...any) error {
	return errdefs.Invalid(fmt.Errorf(format, args...))
}
