//go:build !linux

package engine

// readProcess: without /proc, a process is its pid.
func readProcess(pid int) (Process, bool) { return Process{PID: pid}, true }
