package logs

import (
	"encoding/binary"
	"math"
)

// Stream names one of a container's output streams. Its values are stored in the
// index, so they never change.
type Stream uint8

// The streams a container writes.
const (
	Stdout Stream = 1
	Stderr Stream = 2
)

// numStreams sizes arrays indexed by Stream.
const numStreams = 3

func (s Stream) valid() bool { return s == Stdout || s == Stderr }

// recordSize is the size of one index record; doc.go says why it is fixed.
const recordSize = 24

// maxRecordLen is the most one record can describe (its length field is 32 bits); the
// Writer splits anything longer.
const maxRecordLen = math.MaxUint32

// record is one decoded index record.
type record struct {
	time   int64 // Unix nanoseconds
	off    int64 // in this generation's output
	length int64
	stream Stream
}

func (r record) end() int64 { return r.off + r.length }

func putRecord(b []byte, r record) {
	_ = b[recordSize-1]
	binary.LittleEndian.PutUint64(b[0:], uint64(r.time))
	binary.LittleEndian.PutUint64(b[8:], uint64(r.off))
	binary.LittleEndian.PutUint32(b[16:], uint32(r.length))
	b[20] = byte(r.stream)
	b[21], b[22], b[23] = 0, 0, 0
}

func getRecord(b []byte) record {
	_ = b[recordSize-1]
	return record{
		time:   int64(binary.LittleEndian.Uint64(b[0:])),
		off:    int64(binary.LittleEndian.Uint64(b[8:])),
		length: int64(binary.LittleEndian.Uint32(b[16:])),
		stream: Stream(b[20]),
	}
}
