package logs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"sync"
	"time"
)

// Options bound the space a container's logs take.
type Options struct {
	// MaxSize is the most bytes of output one generation holds; 0 means 128 MiB.
	MaxSize int64
	// MaxFiles is the number of generations kept, the current one included; 0 means 2.
	MaxFiles int
}

// Defaults for Options. Docker's json-file keeps everything unless told otherwise,
// which is how disks fill; ours are bounded.
const (
	defaultMaxSize  = 128 << 20
	defaultMaxFiles = 2
)

// Writer appends a container's output to a log directory. There must be one Writer
// per directory at a time.
//
// Write and Close may be called from several goroutines (one per pipe, say); calls are
// serialised, and the order in which they are made is the order of the output.
type Writer struct {
	dir      string
	maxSize  int64
	maxFiles int

	mu      sync.Mutex
	closed  bool
	output  *os.File // nil after a failed rotation, until the next Write reopens
	index   *os.File
	streams [numStreams]*os.File
	size    int64 // of output
	isize   int64 // of index
	ssize   [numStreams]int64
	rec     [recordSize]byte
}

// OpenWriter opens the log directory dir for writing, creating it (mode 0700) if
// needed. Logs already in dir are kept and appended to, as a container restarted by its
// restart policy keeps its earlier output; what a crashed Writer left half written is
// repaired first.
func OpenWriter(dir string, opt Options) (*Writer, error) {
	switch {
	case opt.MaxSize < 0:
		return nil, fmt.Errorf("open logs %s: negative MaxSize %d", dir, opt.MaxSize)
	case opt.MaxFiles < 0:
		return nil, fmt.Errorf("open logs %s: negative MaxFiles %d", dir, opt.MaxFiles)
	case opt.MaxSize == 0:
		opt.MaxSize = defaultMaxSize
	}
	if opt.MaxFiles == 0 {
		opt.MaxFiles = defaultMaxFiles
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open logs %s: %w", dir, err)
	}
	w := &Writer{dir: dir, maxSize: opt.MaxSize, maxFiles: opt.MaxFiles}
	if err := finishRotation(dir); err != nil {
		return nil, fmt.Errorf("open logs %s: %w", dir, err)
	}
	if err := w.openCurrent(); err != nil {
		return nil, fmt.Errorf("open logs %s: %w", dir, err)
	}
	return w, nil
}

// Write appends p, one chunk of stream s as read from the container's pipe at time t
// (the zero time means now). p need not be whole lines; Write does not keep it.
//
// Each call costs three writes (output, the stream's file, index) and one index
// record, so hand Write what one read of the pipe returned, read with a buffer of
// 64 KiB or more, not one line at a time. Nothing is buffered: once Write returns,
// readers see the chunk.
//
// On error, the part of p that was not written is not in any file; a later Write may
// succeed (after the disk has room again, say).
func (w *Writer) Write(s Stream, p []byte, t time.Time) error {
	if !s.valid() {
		return fmt.Errorf("write logs %s: invalid stream %d", w.dir, s)
	}
	if t.IsZero() {
		t = time.Now()
	}
	ns := t.UnixNano()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return fmt.Errorf("write logs %s: %w", w.dir, os.ErrClosed)
	}
	if w.output == nil {
		if err := w.openCurrent(); err != nil {
			return fmt.Errorf("write logs %s: %w", w.dir, err)
		}
	}
	for len(p) > 0 {
		// Rotate rather than split a chunk that does not fit, unless it would not fit in
		// an empty generation either.
		if w.size >= w.maxSize || (w.size > 0 && w.size+int64(len(p)) > w.maxSize) {
			if err := w.rotate(); err != nil {
				return fmt.Errorf("write logs %s: rotate: %w", w.dir, err)
			}
		}
		n := min(int64(len(p)), w.maxSize-w.size, maxRecordLen)
		if err := w.append(s, p[:n], ns); err != nil {
			return fmt.Errorf("write logs %s: %w", w.dir, err)
		}
		p = p[n:]
	}
	return nil
}

// append writes one record's worth: data first, index record last (doc.go says why).
// On failure it truncates what it wrote, so the files stay as they were.
func (w *Writer) append(s Stream, p []byte, ns int64) error {
	n := int64(len(p))
	sf := w.streams[s]
	if _, err := w.output.WriteAt(p, w.size); err != nil {
		w.output.Truncate(w.size)
		return err
	}
	if _, err := sf.WriteAt(p, w.ssize[s]); err != nil {
		sf.Truncate(w.ssize[s])
		w.output.Truncate(w.size)
		return err
	}
	putRecord(w.rec[:], record{time: ns, off: w.size, length: n, stream: s})
	if _, err := w.index.WriteAt(w.rec[:], w.isize); err != nil {
		w.index.Truncate(w.isize)
		sf.Truncate(w.ssize[s])
		w.output.Truncate(w.size)
		return err
	}
	w.size += n
	w.ssize[s] += n
	w.isize += recordSize
	return nil
}

// rotate makes the current generation generation 1, and starts a new one.
func (w *Writer) rotate() error {
	w.closeFiles()
	ks, err := listGenerations(w.dir, rotationOrder()...)
	if err != nil {
		return err
	}
	// Oldest first throughout, so no rename lands on a name still in use (readers
	// rely on that, see trySnapshot).
	for i := len(ks) - 1; i >= 0; i-- {
		if k := ks[i]; k >= w.maxFiles-1 {
			if err := removeGeneration(w.dir, k); err != nil {
				return err
			}
			continue
		}
		if err := shiftGeneration(w.dir, ks[i]); err != nil {
			return err
		}
	}
	return w.openCurrent()
}

// openCurrent opens (creating them if needed) the files of the current generation and
// repairs what a crash left: a partial index record, records pointing past the data,
// data no record covers.
func (w *Writer) openCurrent() (err error) {
	type file struct {
		f    **os.File
		base string
	}
	// Index before output, so that a reader that finds output finds its index.
	files := []file{
		{&w.index, indexName},
		{&w.streams[Stdout], stdoutName},
		{&w.streams[Stderr], stderrName},
		{&w.output, outputName},
	}
	defer func() {
		if err != nil {
			w.closeFiles()
		}
	}()
	sizes := make([]int64, len(files))
	for i, f := range files {
		*f.f, err = os.OpenFile(genPath(w.dir, f.base, 0), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		fi, err := (*f.f).Stat()
		if err != nil {
			return err
		}
		sizes[i] = fi.Size()
	}
	w.isize, w.ssize[Stdout], w.ssize[Stderr], w.size = sizes[0], sizes[1], sizes[2], sizes[3]
	return w.repair()
}

// finishRotation completes a rotation a crash interrupted, as the Writer would have,
// so that generations are numbered without gaps and each has its four files. The
// Writer shifts generations oldest first and moves a generation's output before its
// other files, so an interrupted rotation shows as the lowest j whose output is
// missing while output.j+1 exists: generation j is half moved, the ones below not at
// all, and the ones above are done.
func finishRotation(dir string) error {
	ks, err := listGenerations(dir, outputName)
	if err != nil {
		return err
	}
	j := -1
	for k := 0; k < len(ks) && j < 0; k++ {
		if !slices.Contains(ks, k) && slices.Contains(ks, k+1) {
			j = k
		}
	}
	if j < 0 {
		return nil
	}
	for _, base := range rotationOrder()[1:] {
		from, to := genPath(dir, base, j), genPath(dir, base, j+1)
		if exists(from) && !exists(to) {
			if err := os.Rename(from, to); err != nil {
				return fmt.Errorf("finish rotation: %w", err)
			}
		}
	}
	for k := j - 1; k >= 0; k-- {
		if err := shiftGeneration(dir, k); err != nil {
			return fmt.Errorf("finish rotation: %w", err)
		}
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// repair makes the current generation consistent after a crash. Readers may be
// reading it meanwhile; they never look past the last whole index record, and repair
// removes nothing before it.
func (w *Writer) repair() error {
	// Keep the records whose data is there: a prefix, as records follow each other in
	// output. Usually that is all of them, and the search reads one record.
	n := w.isize / recordSize
	var readErr error
	fits := func(i int64) bool { // record i's data is in output
		var b [recordSize]byte
		if _, err := w.index.ReadAt(b[:], i*recordSize); err != nil {
			readErr = err
			return false
		}
		r := getRecord(b[:])
		return r.off >= 0 && r.end() <= w.size
	}
	keep := n
	if n > 0 && !fits(n-1) {
		keep = int64(sort.Search(int(n), func(i int) bool { return !fits(int64(i)) }))
	}
	if readErr != nil {
		return fmt.Errorf("repair index: %w", readErr)
	}
	isize := keep * recordSize
	end := int64(0)
	if keep > 0 {
		var b [recordSize]byte
		if _, err := w.index.ReadAt(b[:], isize-recordSize); err != nil {
			return fmt.Errorf("repair index: %w", err)
		}
		end = getRecord(b[:]).end()
	}
	if isize == w.isize && end == w.size {
		return nil
	}
	ssize, err := w.streamSizes(isize)
	if err != nil {
		return err
	}
	if err := w.index.Truncate(isize); err != nil {
		return fmt.Errorf("repair index: %w", err)
	}
	if err := w.output.Truncate(end); err != nil {
		return fmt.Errorf("repair output: %w", err)
	}
	w.isize, w.size = isize, end
	for _, s := range []Stream{Stdout, Stderr} {
		// A stream file shorter than its records (data lost with the machine) stays
		// as it is; its bytes are not addressed by the index anyway.
		if ssize[s] < w.ssize[s] {
			if err := w.streams[s].Truncate(ssize[s]); err != nil {
				return fmt.Errorf("repair stream %d: %w", s, err)
			}
			w.ssize[s] = ssize[s]
		}
	}
	return nil
}

// streamSizes adds up the lengths of each stream's records in the first isize bytes
// of the index: what the stream files should hold.
func (w *Writer) streamSizes(isize int64) ([numStreams]int64, error) {
	var sizes [numStreams]int64
	buf := make([]byte, indexBatch*recordSize)
	for off := int64(0); off < isize; {
		n, err := w.index.ReadAt(buf[:min(int64(len(buf)), isize-off)], off)
		if n == 0 && err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return sizes, fmt.Errorf("repair index: %w", err)
		}
		n -= n % recordSize
		for b := buf[:n]; len(b) > 0; b = b[recordSize:] {
			if r := getRecord(b); r.stream.valid() {
				sizes[r.stream] += r.length
			}
		}
		off += int64(n)
	}
	return sizes, nil
}

func (w *Writer) closeFiles() error {
	var errs []error
	for _, f := range []**os.File{&w.output, &w.index, &w.streams[Stdout], &w.streams[Stderr]} {
		if *f != nil {
			errs = append(errs, (*f).Close())
			*f = nil
		}
	}
	return errors.Join(errs...)
}

// Close closes the files. Writes after Close fail; a second Close does nothing.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	if err := w.closeFiles(); err != nil {
		return fmt.Errorf("close logs %s: %w", w.dir, err)
	}
	return nil
}
