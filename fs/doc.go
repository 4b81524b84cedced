// Package fs is the FlyingDutchman tree: the FUSE filesystem the daemon mounts (default
// ~/FlyingDutchman), a view of the engine and a way to control it. It holds no logic of
// its own beyond turning file operations into engine calls and engine state into files;
// ../shared/design/tree.md (and docs/tree.md) is its contract.
//
// Concepts, for a newcomer to go-fuse: every file and directory is an Inode, made by
// its parent's Lookup and identified by a stable inode number (here a hash of its path in
// the tree, so `ls -i` and `find` see the same numbers for the life of an object). The
// kernel caches names (entries) and attributes for the timeouts each answer carries;
// files whose content changes behind the kernel's back (state, logs, events) use no attr
// cache and direct I/O or passthrough, so that stat and read always see the truth.
//
// Which node serves which path:
//
//	/                       rootDir      README.md, info (valueFile), events (streamFile)
//	/containers/            containersDir one containerDir per container
//	/containers/NAME/       containerDir ctl (ctlFile), state, status.json, error,
//	                                     config.json (valueFile), logs, stdout, stderr
//	                                     (streamFile)
//	/images/                imagesDir    pull (pullFile), one directory per repository path
//	/images/REPO.../TAG/    imageDir     ref, digest, size, platform, manifest.json,
//	                                     config.json, history (valueFile), ctl (ctlFile)
//
// Errors: a failed write returns an errno from one table (errno.go) and leaves the full
// message in the nearest error file and in events. Reads never change anything and never
// wait on slow work: listings and attributes come from the engine's memory.
package fs
