// Package oci runs containers with an OCI runtime binary (runc), each under a dutchman
// shim, isolated by Linux namespaces and cgroups.
//
// Spec translates the engine's runtime-neutral runtime.Config into an OCI runtime spec
// (config.json) with Docker's defaults: namespaces, capabilities, masked and read-only
// paths, the default mounts and device rules, rlimits and resources. ExecProcess does the
// same for a process run inside a running container (runc exec --process).
//
// ResolveUser turns "name[:group]" or "uid[:gid]" into ids by reading the container's own
// /etc/passwd and /etc/group. Those files belong to the image and are untrusted: they are
// opened with filepath-securejoin so a symlink cannot make the daemon read the host's.
package oci
