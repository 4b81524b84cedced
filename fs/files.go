package fs

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// valueFile is a small read-only file rendered from the engine's memory when it is
// opened: one value (a word, a number, a JSON object). Reads use direct I/O, so the
// kernel never serves an old rendering; the size a stat shows is the current one.
type valueFile struct {
	virtualNode
	render func(ctx context.Context) ([]byte, error)
	kind   valueKind
	// size is the length of the last rendering, for valueCached; -1 before the first.
	size atomic.Int64
	// fixed is the content of a valueFixed file, once rendered.
	mu    sync.Mutex
	fixed []byte
}

// valueKind says how a valueFile's stat learns its size.
type valueKind int

const (
	// valueLive renders on every stat: the size is always the truth (state, status.json).
	valueLive valueKind = iota
	// valueCached shows the size of the last rendering (0 before the first open), and
	// renders afresh on open: for what costs more to render and seldom changes
	// (config.json, which may mount the container's rootfs to resolve its user).
	valueCached
	// valueSampled shows size 0, as the files of /proc do, and renders only on open: for
	// what asks the runtime (stats, top).
	valueSampled
	// valueFixed renders once: what cannot change while the file lives (spec.yaml, the
	// spec of a container, which a new spec replaces with a new container).
	valueFixed
)

var (
	_ gofs.NodeGetattrer = (*valueFile)(nil)
	_ gofs.NodeOpener    = (*valueFile)(nil)
	_ gofs.NodeReader    = (*valueFile)(nil)
)

func (f *valueFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	size, timeout := 0, noTimeout
	switch h, ok := fh.(*bytesHandle); {
	case ok:
		size = len(h.data)
	case f.kind == valueSampled:
		timeout = fixedTimeout
	case f.kind == valueFixed:
		b, err := f.fixedContent(ctx)
		if err != nil {
			return toErrno(err)
		}
		size, timeout = len(b), fixedTimeout
	case f.kind == valueCached:
		size, timeout = max(int(f.size.Load()), 0), stableTimeout
	default:
		b, err := f.render(ctx)
		if err != nil {
			return toErrno(err)
		}
		size = len(b)
		f.size.Store(int64(size))
	}
	f.t.attr(&out.Attr, syscall.S_IFREG|0o444, uint64(size), time.Now())
	out.SetTimeout(timeout)
	return 0
}

func (f *valueFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return nil, 0, syscall.EACCES
	}
	if f.kind == valueFixed {
		b, err := f.fixedContent(ctx)
		if err != nil {
			return nil, 0, toErrno(err)
		}
		return &bytesHandle{data: b}, fuse.FOPEN_KEEP_CACHE, 0
	}
	b, err := f.render(ctx)
	if err != nil {
		return nil, 0, toErrno(err)
	}
	f.size.Store(int64(len(b)))
	return &bytesHandle{data: b}, fuse.FOPEN_DIRECT_IO, 0
}

// fixedContent renders a valueFixed file the first time, and returns that rendering.
func (f *valueFile) fixedContent(ctx context.Context) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fixed == nil {
		b, err := f.render(ctx)
		if err != nil {
			return nil, err
		}
		f.fixed = b
	}
	return f.fixed, nil
}

func (f *valueFile) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return readBytes(fh, dest, off)
}

// readBytes reads an open bytesHandle, the handle of every file rendered at open.
func readBytes(fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h, ok := fh.(*bytesHandle)
	if !ok {
		return nil, syscall.EBADF
	}
	return h.read(dest, off), 0
}

// bytesHandle is an open valueFile: the content as it was at open.
type bytesHandle struct {
	data []byte
}

func (h *bytesHandle) read(dest []byte, off int64) fuse.ReadResult {
	if off >= int64(len(h.data)) {
		return fuse.ReadResultData(nil)
	}
	n := copy(dest, h.data[off:])
	return fuse.ReadResultData(dest[:n])
}

// streamFile is a growing file backed by a real one (a container's logs, the events):
// reads go to the backing file (through the kernel's FUSE passthrough where it has it),
// and every stat reports its true size, so that cat, grep, less and tail -f work. A
// backing file that does not exist yet reads as empty.
type streamFile struct {
	virtualNode
	path func() (string, error)
}

var (
	_ gofs.NodeGetattrer = (*streamFile)(nil)
	_ gofs.NodeOpener    = (*streamFile)(nil)
)

func (f *streamFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	var st unix.Stat_t
	var err error
	if h, ok := fh.(*streamHandle); ok && h.f != nil {
		// An open file reports the file it has open, as a real one would after a
		// rotation (tail -f follows the descriptor).
		err = unix.Fstat(int(h.f.Fd()), &st)
	} else {
		var p string
		if p, err = f.path(); err != nil {
			return toErrno(err)
		}
		err = unix.Stat(p, &st)
	}
	mtime := f.t.started
	if err == nil {
		mtime = time.Unix(st.Mtim.Unix())
	} else if !errors.Is(err, unix.ENOENT) {
		return gofs.ToErrno(err)
	}
	f.t.attr(&out.Attr, syscall.S_IFREG|0o444, uint64(st.Size), mtime)
	out.SetTimeout(noTimeout)
	return 0
}

func (f *streamFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return nil, 0, syscall.EACCES
	}
	p, err := f.path()
	if err != nil {
		return nil, 0, toErrno(err)
	}
	file, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return &streamHandle{}, fuse.FOPEN_DIRECT_IO, 0
	}
	if err != nil {
		return nil, 0, gofs.ToErrno(err)
	}
	return &streamHandle{f: file}, 0, 0
}

// streamHandle is an open streamFile.
type streamHandle struct {
	f *os.File
}

var (
	_ gofs.FileReader          = (*streamHandle)(nil)
	_ gofs.FileReleaser        = (*streamHandle)(nil)
	_ gofs.FilePassthroughFder = (*streamHandle)(nil)
)

func (h *streamHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if h.f == nil {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultFd(h.f.Fd(), off, len(dest)), 0
}

func (h *streamHandle) PassthroughFd() (int, bool) {
	if h.f == nil {
		return 0, false
	}
	return int(h.f.Fd()), true
}

func (h *streamHandle) Release(ctx context.Context) syscall.Errno {
	if h.f != nil {
		h.f.Close()
	}
	return 0
}

// ctlFile takes verbs, one per line, and runs them before the write returns. Reading it
// says which verbs it takes now.
type ctlFile struct {
	virtualNode
	// verbs lists the verbs valid now, one per line.
	verbs func(ctx context.Context) string
	// run runs one verb.
	run func(ctx context.Context, verb string, args []string) error
	// failed records the failure of a verb where people look for it (error file,
	// events).
	failed func(verb string, err error)
}

var (
	_ gofs.NodeGetattrer = (*ctlFile)(nil)
	_ gofs.NodeOpener    = (*ctlFile)(nil)
	_ gofs.NodeReader    = (*ctlFile)(nil)
	_ gofs.NodeWriter    = (*ctlFile)(nil)
	_ gofs.NodeSetattrer = (*ctlFile)(nil)
	_ gofs.NodeFlusher   = (*ctlFile)(nil)
)

func (f *ctlFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.t.attr(&out.Attr, syscall.S_IFREG|0o644, uint64(len(f.verbs(ctx))), time.Now())
	out.SetTimeout(noTimeout)
	return 0
}

// Setattr accepts the truncation a shell's `>` asks for; there is nothing to truncate.
func (f *ctlFile) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return f.Getattr(ctx, fh, out)
}

func (f *ctlFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return &ctlHandle{}, fuse.FOPEN_DIRECT_IO, 0
	}
	return &bytesHandle{data: []byte(f.verbs(ctx))}, fuse.FOPEN_DIRECT_IO, 0
}

func (f *ctlFile) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return readBytes(fh, dest, off)
}

// ctlHandle is a ctl file open for writing: what was written of a line not yet ended.
type ctlHandle struct {
	partial []byte
}

func (f *ctlFile) Write(ctx context.Context, fh gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	h, ok := fh.(*ctlHandle)
	if !ok {
		return 0, syscall.EBADF
	}
	h.partial = append(h.partial, data...)
	for {
		i := bytes.IndexByte(h.partial, '\n')
		if i < 0 {
			break
		}
		line := string(h.partial[:i])
		h.partial = h.partial[i+1:]
		if errno := f.do(ctx, line); errno != 0 {
			h.partial = nil
			return 0, errno
		}
	}
	return uint32(len(data)), 0
}

// Flush runs a last line written without a newline (printf start > ctl).
func (f *ctlFile) Flush(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	h, ok := fh.(*ctlHandle)
	if !ok || len(bytes.TrimSpace(h.partial)) == 0 {
		return 0
	}
	line := string(h.partial)
	h.partial = nil
	return f.do(ctx, line)
}

// do runs one line. An interrupt (Ctrl-C) stops the waiting, not the work.
func (f *ctlFile) do(ctx context.Context, line string) syscall.Errno {
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return 0
	}
	done := make(chan error, 1)
	go func() { done <- f.run(context.WithoutCancel(ctx), fields[0], fields[1:]) }()
	select {
	case err := <-done:
		if err != nil {
			f.failed(fields[0], err)
			return toErrno(err)
		}
		return 0
	case <-ctx.Done():
		return syscall.EINTR
	}
}
