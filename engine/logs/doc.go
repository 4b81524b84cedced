// Package logs keeps a container's output on disk and reads it back.
//
// The shim (the small monitor process that owns a container's stdio) copies the
// container's stdout and stderr pipes into a Writer; the daemon, the CLI
// (`dutchman logs [-f] [--tail N] [-t] [--since]`) and the FUSE tree read them with
// Read. The package owns the files of one log directory and nothing else: it knows
// nothing of containers, pipes or how to show a time to a person.
//
// # Files
//
// One directory per container holds the current generation:
//
//	output   the raw bytes of stdout and stderr, interleaved in arrival order
//	stdout   the raw bytes of stdout alone
//	stderr   the raw bytes of stderr alone
//	index    one 24-byte record per chunk written to output
//
// and the older generations output.1, index.1, stdout.1, stderr.1, output.2, ...
//
// The data files hold the bytes exactly as the container wrote them, with no framing.
// Docker's json-file and podman's k8s-file prefix every line with a timestamp and a
// stream name, which costs a parse and an escape per line on both sides and makes the
// file unreadable as plain output. Keeping framing out of the data means the write
// path is two plain writes of the chunk the shim read, the read path is a plain read,
// and `output`, `stdout` and `stderr` can be served by the tree (or read with cat and
// tail -f) as they are. Read itself uses only `output` and `index`; the per-stream
// files exist for those plain consumers, who would otherwise have to demultiplex.
//
// # Index records
//
// Each record describes one chunk, little endian:
//
//	offset  size  field
//	0       8     time, Unix nanoseconds (int64): when the shim read the chunk
//	8       8     offset of the chunk in this generation's output (uint64)
//	16      4     length of the chunk (uint32)
//	20      1     stream: 1 stdout, 2 stderr
//	21      3     zero padding
//
// Records are fixed size so that record i is at byte 24*i: a reader resumes or walks
// backwards (for --tail) without parsing from the start, and a record torn by a crash
// shows as a file size that is not a multiple of 24. 24 rather than 21 bytes keeps every
// field naturally aligned and leaves room for flags. The time is per chunk, not per line,
// because a chunk is what the shim observes at one instant; lines inside a chunk share
// it, and a line split over two chunks takes the time of its first byte (the CLI's -t
// does that split). One record per chunk (64 KiB at a time when the container is busy)
// makes the index about 0.04% of the data.
//
// # Order of writes
//
// A chunk goes to output and to its stream file first and its index record last, so a
// reader that sees a record always finds the bytes it points to. A reader ignores a
// trailing partial record; a Writer that reopens the directory truncates it, drops
// records that point past the data, and truncates bytes that no record covers (from
// output and from the stream files), so a crash of the shim loses at most the chunk it
// was writing and leaves the files consistent. Nothing is fsynced: like Docker's and
// podman's log drivers, a crash of the machine may lose the tail of the log; the
// rules above still leave it readable.
//
// # Rotation
//
// When a chunk would make output larger than Options.MaxSize, the four files rotate
// together, like logrotate: generation k becomes k+1 (output.1 -> output.2, ...),
// the current files become .1, and what would exceed Options.MaxFiles generations is
// removed. Rotating the files of one generation together keeps each generation
// self-contained: the offsets of index.k point into output.k, and stdout.k plus
// stderr.k is exactly output.k. A chunk that would not fit is not split unless it is
// larger than MaxSize itself, so output stays within MaxSize and the directory within
// about 2*MaxSize*MaxFiles bytes.
//
// A crash in the middle of a rotation leaves a generation half moved; the next Writer
// finishes the rotation before anything else (finishRotation in writer.go). Until then
// readers take a generation whose index is missing for a while as empty.
//
// Renaming rather than copying means a reader holding a generation open keeps reading
// it undisturbed, even after it is removed. To keep a reader that opens files while a
// rotation runs from pairing the output of one generation with the index of another,
// the Writer moves and removes a generation's output before its index, and creates
// a new generation's index before its output; a reader opens output then index and
// checks afterwards that the name still leads to the output it opened (see snapshot in
// generation.go). A follower tells that the current generation has rotated by the
// inode of `output` changing, finishes the old one (the Writer never touches it again)
// and continues with the generation that followed it, found by inode among the
// renamed ones.
//
// # Concurrency
//
// There is one Writer per directory (the shim); any number of readers, in any process,
// need no coordination with it: the files are only ever appended to, renamed or
// removed while they are read, except for the repair a new Writer does to bytes no
// reader can have seen.
package logs
