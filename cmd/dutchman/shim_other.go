//go:build !linux

package main

import (
	"fmt"
	"os"
)

func runShim(string) int {
	fmt.Fprintln(os.Stderr, "dutchman shim: the oci runtime runs on Linux only")
	return 1
}

func runVMShare(string) int {
	fmt.Fprintln(os.Stderr, "dutchman vm-share: the vm runtime runs on Linux only")
	return 1
}
