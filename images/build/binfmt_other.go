//go:build !linux

package build

import (
	"errors"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

func (m *Manager) ensurePlatforms(platforms []string) error {
	if len(platforms) > 0 {
		return errdefs.Unavailable(errors.New("build: builds for other platforms need Linux's binfmt_misc"))
	}
	return nil
}
