package main

import "github.com/flyingdutchman/flyingdutchman/engine/runtime/oci/shim"

func runShim(dir string) int { return shim.Main(dir) }
