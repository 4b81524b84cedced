// Package volumes owns named volumes and the description of a container's mounts.
//
// A volume is a directory the engine keeps for containers to store and share data in, as
// Docker's local driver does. Layout under the store's root (the data root's volumes/):
//
//	<name>/         one per volume, owner only
//	<name>/_data/   the data, bind-mounted into containers: the volume's Mountpoint
//
// Records (driver, labels, options, creation time) live in the volumes bucket of the
// daemon's bbolt database, one JSON value per name. A volume exists when its record does.
// Create makes the directories before it writes the record and Remove deletes the record
// before the directories, so a crash leaves at most a directory without a record, which
// Open removes.
//
// Mount is one mount of a container (bind, volume or tmpfs) in the shape of Compose's long
// syntax; ParseVolume, ParseMount and ParseTmpfs read Docker's -v, --mount and --tmpfs
// flags into it.
//
// This package neither mounts anything nor knows which containers use a volume: the engine
// resolves mounts, refuses to remove a volume in use, and copies an image's content into
// an empty volume.
package volumes
