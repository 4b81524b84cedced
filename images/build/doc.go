// Package build builds images from Dockerfiles through BuildKit.
//
// The daemon manages one buildkitd of its own (Manager): it writes its config (state
// under the data root's buildkit/ directory, a unix socket there, the OCI worker on the
// engine's runc, the engine's insecure registries), starts it on the first build in a
// mount namespace of its own (its snapshot mounts live and die with it), waits until it
// lists a worker, and stops it when the engine closes.
//
// A build runs BuildKit's Dockerfile frontend on a context directory through BuildKit's
// Go client. Its result comes back as an OCI archive over the client's session and is
// loaded into the engine's image store like `dutchman load`, then tagged; with Push it is
// also pushed by BuildKit's image exporter. Foreign platforms run their RUN steps under
// Debian's qemu-user-static, registered with binfmt_misc on first need.
package build
