package images

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncFS flushes the filesystem holding dir to disk.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// startWriteback asks the kernel to start writing a file's dirty pages to disk now,
// without waiting, so that the sync before an image is recorded finds little left to do:
// the disk works while the pull still downloads and decompresses.
func startWriteback(fd int) {
	unix.SyncFileRange(fd, 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}
