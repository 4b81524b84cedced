package logs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The base names of a generation's files. The current generation uses them as they
// are; generation k >= 1 appends ".k".
const (
	outputName = "output"
	indexName  = "index"
	stdoutName = "stdout"
	stderrName = "stderr"
)

// rotationOrder is the order in which the Writer moves and removes a generation's
// files: output before index, which snapshot relies on (doc.go, "Rotation").
func rotationOrder() []string {
	return []string{outputName, indexName, stdoutName, stderrName}
}

// genPath is the path of file base of generation k (0: current).
func genPath(dir, base string, k int) string {
	if k == 0 {
		return filepath.Join(dir, base)
	}
	return filepath.Join(dir, base+"."+strconv.Itoa(k))
}

// listGenerations returns, in increasing order, the generations k for which dir holds a
// file named after one of bases. Anything else in dir is ignored.
func listGenerations(dir string, bases ...string) ([]int, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	var ks []int
	for _, name := range names {
		base, suffix, dotted := strings.Cut(name, ".")
		if !slices.Contains(bases, base) {
			continue
		}
		k := 0
		if dotted {
			// Only the canonical spelling, so "output.01" is not taken for output.1.
			n, err := strconv.Atoi(suffix)
			if err != nil || n < 1 || strconv.Itoa(n) != suffix {
				continue
			}
			k = n
		}
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return slices.Compact(ks), nil
}

// generation is one generation opened for reading.
type generation struct {
	output *os.File
	index  *os.File // nil if the generation has no index (a crash during a rotation)
	id     fs.FileInfo
	idxID  fs.FileInfo
	next   int64 // offset in index of the next record to read
}

func (g *generation) close() {
	g.output.Close()
	if g.index != nil {
		g.index.Close()
	}
}

func closeAll(gens []*generation) {
	for _, g := range gens {
		if g != nil {
			g.close()
		}
	}
}

// How long snapshot keeps trying. A rotation is a handful of renames, so a reader
// that races one succeeds on the next attempt; the limits only stop a reader from
// spinning for ever on a directory someone else keeps changing.
const (
	snapshotMaxDelay = 10 * time.Millisecond
	// snapshotPatience is the number of attempts after which a generation whose output
	// exists without its index is taken as damaged rather than half renamed.
	snapshotPatience = 50
	snapshotAttempts = 3000
)

// snapshot opens every generation in dir, oldest first, as they all were at one
// instant, so that no generation is missed or seen twice and each output is paired with
// its own index. It returns no generations (and no error) for a directory without logs.
func snapshot(ctx context.Context, dir string) ([]*generation, error) {
	var delay time.Duration
	for attempt := 0; ; attempt++ {
		gens, stable, complete, err := trySnapshot(dir)
		if err != nil {
			closeAll(gens)
			return nil, err
		}
		if stable && (complete || attempt >= snapshotPatience) {
			return gens, nil
		}
		closeAll(gens)
		if attempt >= snapshotAttempts {
			return nil, errors.New("log files keep changing")
		}
		if attempt > 2 {
			delay = min(max(2*delay, 100*time.Microsecond), snapshotMaxDelay)
			if err := sleep(ctx, delay); err != nil {
				return nil, err
			}
		}
	}
}

// trySnapshot is one attempt of snapshot. stable reports that no rotation ran while
// it looked; complete that every generation has its index.
//
// It lists the generations, opens each one's output and then its index, lists them
// again, and stats every name again, newest first (the Writer shifts oldest first). A
// rename or removal that happened between opening a name and checking it changes what
// the name leads to, or whether it exists, and the attempt is discarded. In particular
// an index opened after its output's generation moved on belongs to a later generation,
// which the output check catches, because the Writer moves output before index.
func trySnapshot(dir string) (gens []*generation, stable, complete bool, err error) {
	ks, err := listGenerations(dir, outputName)
	if err != nil {
		return nil, false, false, err
	}
	complete = true
	for i := len(ks) - 1; i >= 0; i-- {
		k := ks[i]
		out, err := os.Open(genPath(dir, outputName, k))
		if errors.Is(err, fs.ErrNotExist) {
			return gens, false, false, nil
		}
		if err != nil {
			return gens, false, false, err
		}
		g := &generation{output: out}
		gens = append(gens, g)
		if g.id, err = out.Stat(); err != nil {
			return gens, false, false, err
		}
		idx, err := os.Open(genPath(dir, indexName, k))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			complete = false
		case err != nil:
			return gens, false, false, err
		default:
			g.index = idx
			if g.idxID, err = idx.Stat(); err != nil {
				return gens, false, false, err
			}
		}
	}
	again, err := listGenerations(dir, outputName)
	if err != nil {
		return gens, false, false, err
	}
	if !slices.Equal(ks, again) {
		return gens, false, false, nil
	}
	for i, k := range ks {
		g := gens[len(gens)-1-i]
		if !samePath(genPath(dir, outputName, k), g.id) || !samePath(genPath(dir, indexName, k), g.idxID) {
			return gens, false, false, nil
		}
	}
	return gens, true, complete, nil
}

// samePath reports whether path leads to the file want, or, for a nil want, to nothing.
func samePath(path string, want fs.FileInfo) bool {
	fi, err := os.Stat(path)
	if want == nil {
		return errors.Is(err, fs.ErrNotExist)
	}
	return err == nil && os.SameFile(fi, want)
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// removeGeneration removes the files of generation k, in rotation order.
func removeGeneration(dir string, k int) error {
	for _, base := range rotationOrder() {
		if err := os.Remove(genPath(dir, base, k)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("drop generation %d: %w", k, err)
		}
	}
	return nil
}

// shiftGeneration renames the files of generation k to k+1, in rotation order.
func shiftGeneration(dir string, k int) error {
	for _, base := range rotationOrder() {
		err := os.Rename(genPath(dir, base, k), genPath(dir, base, k+1))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("shift generation %d: %w", k, err)
		}
	}
	return nil
}
