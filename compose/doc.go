// Package compose reads Docker Compose files with the compose-spec loader
// (github.com/compose-spec/compose-go/v2), so that one schema serves every door: a
// container's spec file in the tree is the body of one compose service, and a compose
// project is a compose.yaml.
package compose
