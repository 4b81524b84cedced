package images

import (
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/flyingdutchman/flyingdutchman/integration/harness"
)

func unsynced(t *testing.T, s *Store, ref string) string {
	t.Helper()
	return mustImage(t, s, ref).Unsynced
}

func TestSyncerMakesImagesDurable(t *testing.T) {
	_, ims := testImages(t)
	s := newStore(t, withSyncDelay(10*time.Millisecond), withBootID("boot-a"))
	if _, err := s.Pull(ctx, ims.Busybox); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for unsynced(t, s, ims.Busybox) != "" {
		if time.Now().After(deadline) {
			t.Fatal("the image is still marked unsynced 5s after the pull")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// crashedStore pulls ref into a store whose syncer never runs, then drops the store
// without closing it, as a crash would; it returns the data directory.
func crashedStore(t *testing.T, ref string) string {
	t.Helper()
	root := harness.Dir(t)
	db, err := bolt.Open(filepath.Join(root, "test.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, filepath.Join(root, "images"), db, withSyncDelay(time.Hour), withBootID("boot-a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if got := unsynced(t, s, ref); got != "boot-a" {
		t.Fatalf("unsynced mark %q right after the pull, want boot-a", got)
	}
	close(s.syncer.stop) // no flush: the process dies here
	s.syncer.wg.Wait()
	db.Close()
	return root
}

func TestImagesUnflushedWhenTheMachineWentDownAreRemoved(t *testing.T) {
	_, ims := testImages(t)
	root := crashedStore(t, ims.Layered)
	s := newStoreAt(t, root, withBootID("boot-b"))
	if list, _ := s.List(ctx); len(list) != 0 {
		t.Fatalf("after a reboot, %d unflushed images remain", len(list))
	}
	if n := count(t, s.blobs.dir) + count(t, s.snaps.dir); n != 0 {
		t.Errorf("%d blobs and snapshots of the lost image remain", n)
	}
	if _, err := s.Pull(ctx, ims.Layered); err != nil {
		t.Fatalf("pull again: %v", err)
	}
}

func TestImagesUnflushedWhenTheDaemonDiedAreKept(t *testing.T) {
	_, ims := testImages(t)
	root := crashedStore(t, ims.Layered)
	s := newStoreAt(t, root, withBootID("boot-a"))
	if got := unsynced(t, s, ims.Layered); got != "" {
		t.Errorf("after a daemon restart on the same boot, the image is still marked %q; Open should flush it", got)
	}
	if _, err := s.CreateRootfs(ctx, "c", "c", ims.Layered); err != nil {
		t.Fatal(err)
	}
}

func TestPullingADurableImageAgainKeepsItDurable(t *testing.T) {
	_, ims := testImages(t)
	s := newStore(t, withSyncDelay(time.Hour), withBootID("boot-a"))
	if _, err := s.Pull(ctx, ims.Busybox); err != nil {
		t.Fatal(err)
	}
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(ctx, ims.Busybox); err != nil {
		t.Fatal(err)
	}
	if got := unsynced(t, s, ims.Busybox); got != "" {
		t.Errorf("a second pull of a flushed image marked it unsynced (%q): a crash would then remove it", got)
	}
}

func TestUnflushedImagesContainersUseAreKept(t *testing.T) {
	_, ims := testImages(t)
	root := harness.Dir(t)
	db, err := bolt.Open(filepath.Join(root, "test.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, filepath.Join(root, "images"), db, withSyncDelay(time.Hour), withBootID("boot-a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(ctx, ims.Busybox); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateRootfs(ctx, "c1", "web", ims.Busybox); err != nil {
		t.Fatal(err)
	}
	close(s.syncer.stop)
	s.syncer.wg.Wait()
	s.Unmount(ctx, "c1")
	db.Close()

	s2 := newStoreAt(t, root, withBootID("boot-b"))
	if _, err := s2.Get(ctx, ims.Busybox); err != nil {
		t.Fatalf("an image container web uses was removed after the reboot: %v", err)
	}
	if _, err := s2.Rootfs(ctx, "c1"); err != nil {
		t.Fatalf("container web's root filesystem: %v", err)
	}
}
