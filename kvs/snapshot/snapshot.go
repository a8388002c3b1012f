package snapshot

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
)

// Version is the format version this package writes and reads.
const Version = 1

// Magic opens every snapshot.
const Magic = "KVSSNAP\n"

// MaxValueLen is the largest value a snapshot may hold (a Reader refuses a
// longer record rather than allocate it).
const MaxValueLen = 64 << 20

// Record types.
const (
	recHeader  = 'H'
	recEntry   = 'E'
	recTrailer = 'T'

	maxHeaderLen  = 4096
	maxEntryLen   = MaxValueLen + kvs.MaxKeyLen + 3*binary.MaxVarintLen64
	maxTrailerLen = binary.MaxVarintLen64 + sha256.Size
)

// Errors of a Reader.
var (
	// ErrCorrupt means the stream is not an intact snapshot: truncated,
	// altered, or not a snapshot at all.
	ErrCorrupt = errors.New("snapshot: corrupt")
	// ErrVersion means the snapshot has a format version this package
	// does not read.
	ErrVersion = errors.New("snapshot: unsupported format version")
)

// headerJSON is the payload of the header record.
type headerJSON struct {
	Store    string    `json:"store"`
	Revision int64     `json:"revision"`
	Time     time.Time `json:"time"`
}

// Writer writes a snapshot. Call Add for each entry in key order, then
// Close.
type Writer struct {
	w     *bufio.Writer
	sum   hash.Hash
	count int64
	n     int64
	last  string
	buf   []byte
	err   error
}

// NewWriter writes the magic, the version and the header to w.
func NewWriter(w io.Writer, h kvs.SnapshotHeader) (*Writer, error) {
	sw := &Writer{w: bufio.NewWriterSize(w, 256<<10), sum: sha256.New()}
	sw.raw([]byte(Magic))
	sw.raw(binary.BigEndian.AppendUint16(nil, Version))
	hj, err := json.Marshal(headerJSON{Store: h.Store, Revision: h.Revision, Time: h.Time.UTC()})
	if err != nil {
		return nil, fmt.Errorf("snapshot header: %w", err)
	}
	sw.record(recHeader, hj)
	return sw, sw.err
}

// raw writes p to the stream and the checksum.
func (w *Writer) raw(p []byte) {
	if w.err != nil {
		return
	}
	w.sum.Write(p)
	n, err := w.w.Write(p)
	w.n += int64(n)
	if err != nil {
		w.err = fmt.Errorf("write snapshot: %w", err)
	}
}

func (w *Writer) record(typ byte, payload []byte) {
	w.buf = append(w.buf[:0], typ)
	w.buf = binary.AppendUvarint(w.buf, uint64(len(payload)))
	w.raw(w.buf)
	w.raw(payload)
}

// Add writes one entry. Keys must come in strictly increasing byte order.
func (w *Writer) Add(e kvs.SnapshotEntry) error {
	if w.err != nil {
		return w.err
	}
	if w.count > 0 && e.Key <= w.last {
		return fmt.Errorf("write snapshot: key %q after %q: keys must come in increasing order", e.Key, w.last)
	}
	if len(e.Value) > MaxValueLen {
		return fmt.Errorf("write snapshot: key %q: value of %d bytes is over the format's limit of %d", e.Key, len(e.Value), MaxValueLen)
	}
	if e.Version < 0 || e.Lease < 0 {
		return fmt.Errorf("write snapshot: key %q: negative version or lease", e.Key)
	}
	p := make([]byte, 0, len(e.Key)+len(e.Value)+4*binary.MaxVarintLen64)
	p = binary.AppendUvarint(p, uint64(len(e.Key)))
	p = append(p, e.Key...)
	p = binary.AppendUvarint(p, uint64(e.Version))
	p = binary.AppendUvarint(p, uint64(e.Lease))
	p = binary.AppendVarint(p, e.Updated.UnixNano())
	p = append(p, e.Value...)
	w.record(recEntry, p)
	w.count++
	w.last = e.Key
	return w.err
}

// Close writes the trailer and flushes; it does not close the underlying
// writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	p := binary.AppendUvarint(nil, uint64(w.count))
	p = w.sum.Sum(p)
	hdr := binary.AppendUvarint([]byte{recTrailer}, uint64(len(p)))
	for _, b := range [][]byte{hdr, p} {
		n, err := w.w.Write(b)
		w.n += int64(n)
		if err != nil {
			return fmt.Errorf("write snapshot: %w", err)
		}
	}
	if err := w.w.Flush(); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	return nil
}

// Count returns the entries written so far.
func (w *Writer) Count() int64 { return w.count }

// Size returns the bytes written so far (all of them after Close).
func (w *Writer) Size() int64 { return w.n }
