//go:build !linux

package network

func isolate(bridge string) error { return nil }

func unisolate(bridge string) {}
