//go:build !linux

package network

func deleteLink(name string) {}
