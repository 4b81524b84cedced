package main

import (
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/shim"
	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm"
)

func runShim(dir string) int {
	return shim.Main(dir, map[string]shim.NewLauncher{vm.LauncherName: vm.NewLauncher})
}

func runVMShare(arg string) int { return vm.ShareMain(arg) }
