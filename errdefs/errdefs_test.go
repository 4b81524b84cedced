package errdefs

import (
	"errors"
	"testing"
)

func TestKindsCrossABoundary(t *testing.T) {
	for _, tc := range []struct {
		err   error
		kinds string
	}{
		{errors.New("plain"), ""},
		{NotFound(errors.New("gone")), "not_found"},
		{CannotRun(errors.New("the VM stopped")), "cannot_run"},
		{Invalid(CannotRun(errors.New("no such command"))), "invalid_argument,cannot_run"},
	} {
		got := KindOf(tc.err)
		if got != tc.kinds {
			t.Errorf("KindOf(%v) = %q, want %q", tc.err, got, tc.kinds)
		}
		back := WithKinds(got, errors.New(tc.err.Error()))
		if back.Error() != tc.err.Error() {
			t.Errorf("WithKinds changed the message: %q", back)
		}
		for _, n := range names {
			if errors.Is(back, n.kind) != errors.Is(tc.err, n.kind) {
				t.Errorf("%v: kind %s lost or added on the way", tc.err, n.name)
			}
		}
	}
	if err := WithKinds("no_such_kind", errors.New("x")); KindOf(err) != "" {
		t.Errorf("an unknown kind name gave %q", KindOf(err))
	}
}
