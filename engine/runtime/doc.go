// Package runtime is the seam between the engine and what isolates a container: the
// Runtime and Task interfaces, and the runtime-neutral description of a container's
// process (Config) and of a process run inside it (ExecConfig).
//
// One package per runtime implements them: oci (namespaces and cgroups through runc,
// each container under a `dutchman shim`) and, later, vm (a lightweight VM per
// container). The engine never knows which one it talks to.
package runtime
