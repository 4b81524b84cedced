//go:build !linux

// Command dutchman-agent is the guest agent of FlyingDutchman's vm runtime; the guest is
// Linux, so it builds only there.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "dutchman-agent runs only in a Linux guest")
	os.Exit(2)
}
