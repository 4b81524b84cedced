//go:build !linux

package network

import "errors"

var errNoNetNS = errors.New("network namespaces are Linux's")

// NewNS: see the Linux version.
func NewNS(path string) error { return errNoNetNS }

// RemoveNS: see the Linux version.
func RemoveNS(path string) error { return nil }
