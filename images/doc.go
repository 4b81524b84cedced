// Package images owns the image store: pulling images from registries, the content store
// of blobs, the layer cache of unpacked snapshots, the index of names, and the root
// filesystems prepared for containers.
//
// Layout under the store's root (the data root's images/ directory):
//
//	blobs/sha256/<hex>   every manifest, config and layer blob, once, verified
//	snapshots/<hex>      each layer unpacked once, named by its chain ID, shared by every
//	                     image and container that uses it; an overlayfs lower directory
//	rootfs/<id>/         a container's root filesystem: upper/, work/ and merged/
//	ingest/              downloads and unpacks in progress; emptied at start
//
// The index (names, image records, snapshot sizes, and which containers use which image)
// is kept in the images bucket of the daemon's bbolt database.
//
// What appears under blobs/ and snapshots/ is always whole and verified: both are written
// in ingest/ and renamed into place after their digests have been checked. A layer is
// unpacked while it downloads, in parallel with the other layers; snapshots of a layer do
// not depend on each other because each holds only its own layer's changes.
//
// This package knows nothing of containers beyond an ID and an owner name for the root
// filesystems it prepares, and nothing of HTTP or FUSE.
package images
