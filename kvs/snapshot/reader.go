package snapshot

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/kvsctl/kvsctl/kvs"
)

// Reader reads a snapshot; it implements kvs.SnapshotSource.
type Reader struct {
	r      *bufio.Reader
	sum    hash.Hash
	header kvs.SnapshotHeader
	count  int64
	n      int64
	last   string
	digest []byte
	done   bool
	err    error
}

var _ kvs.SnapshotSource = (*Reader)(nil)

// NewReader reads the magic, the version and the header from r.
func NewReader(r io.Reader) (*Reader, error) {
	sr := &Reader{r: bufio.NewReaderSize(r, 256<<10), sum: sha256.New()}
	head := make([]byte, len(Magic)+2)
	if err := sr.full(head, true); err != nil {
		if errors.Is(err, io.EOF) && sr.n == 0 {
			return nil, fmt.Errorf("%w: empty file", ErrCorrupt)
		}
		return nil, fmt.Errorf("%w: not a kvsctl snapshot (too short)", ErrCorrupt)
	}
	if string(head[:len(Magic)]) != Magic {
		return nil, fmt.Errorf("%w: not a kvsctl snapshot (no %q at the start)", ErrCorrupt, Magic[:7])
	}
	if v := binary.BigEndian.Uint16(head[len(Magic):]); v != Version {
		return nil, fmt.Errorf("%w %d: this kvsctl reads version %d", ErrVersion, v, Version)
	}
	typ, payload, err := sr.record()
	if err != nil {
		return nil, err
	}
	if typ != recHeader {
		return nil, fmt.Errorf("%w: the first record is not the header", ErrCorrupt)
	}
	var hj headerJSON
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&hj); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrCorrupt, err)
	}
	if hj.Revision < 0 {
		return nil, fmt.Errorf("%w: header: negative revision", ErrCorrupt)
	}
	sr.header = kvs.SnapshotHeader{Store: hj.Store, Revision: hj.Revision, Time: hj.Time.UTC()}
	return sr, nil
}

// Header returns the snapshot's header.
func (r *Reader) Header() kvs.SnapshotHeader { return r.header }

// full reads len(p) bytes, adding them to the checksum when hashed.
func (r *Reader) full(p []byte, hashed bool) error {
	n, err := io.ReadFull(r.r, p)
	r.n += int64(n)
	if hashed {
		r.sum.Write(p[:n])
	}
	return err
}

// uvarint reads a uvarint, hashed.
func (r *Reader) uvarint() (uint64, error) {
	var buf [binary.MaxVarintLen64]byte
	for i := range buf {
		b, err := r.r.ReadByte()
		if err != nil {
			return 0, err
		}
		r.n++
		buf[i] = b
		if b < 0x80 {
			r.sum.Write(buf[:i+1])
			v, n := binary.Uvarint(buf[:i+1])
			if n <= 0 {
				return 0, errors.New("bad length")
			}
			return v, nil
		}
	}
	return 0, errors.New("bad length")
}

// record reads the next record. The trailer's bytes are not hashed: its
// checksum covers what comes before it, and r.digest holds that sum.
func (r *Reader) record() (byte, []byte, error) {
	typ, err := r.r.ReadByte()
	if err != nil {
		return 0, nil, r.truncated(err)
	}
	r.n++
	limit := uint64(maxEntryLen)
	switch typ {
	case recHeader:
		limit = maxHeaderLen
	case recTrailer:
		limit = maxTrailerLen
		r.digest = r.sum.Sum(nil)
		r.sum = sha256.New() // the trailer is not part of the checksum
	case recEntry:
	default:
		return 0, nil, fmt.Errorf("%w: unknown record type 0x%02x at byte %d", ErrCorrupt, typ, r.n-1)
	}
	if typ != recTrailer {
		r.sum.Write([]byte{typ})
	}
	n, err := r.uvarint()
	if err != nil {
		return 0, nil, r.truncated(err)
	}
	if n > limit {
		return 0, nil, fmt.Errorf("%w: record of %d bytes at byte %d is over the limit of %d", ErrCorrupt, n, r.n, limit)
	}
	// Grow with what arrives, so a corrupt length cannot make us allocate
	// what the stream does not hold.
	payload := make([]byte, 0, min(n, 64<<10))
	for uint64(len(payload)) < n {
		payload = slices.Grow(payload, int(min(n-uint64(len(payload)), uint64(max(cap(payload), 64<<10)))))
		chunk := payload[len(payload):min(uint64(cap(payload)), n)]
		if err := r.full(chunk, true); err != nil {
			return 0, nil, r.truncated(err)
		}
		payload = payload[:len(payload)+len(chunk)]
	}
	return typ, payload, nil
}

func (r *Reader) truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated after %d bytes (no trailer)", ErrCorrupt, r.n)
	}
	if err.Error() == "bad length" {
		return fmt.Errorf("%w: bad record length at byte %d", ErrCorrupt, r.n)
	}
	return fmt.Errorf("read snapshot: %w", err)
}

// Next returns the next entry, or io.EOF once the trailer has been read
// and the count and checksum match. Any other error is final.
func (r *Reader) Next() (kvs.SnapshotEntry, error) {
	if r.err != nil {
		return kvs.SnapshotEntry{}, r.err
	}
	e, err := r.next()
	if err != nil {
		r.err = err
	}
	return e, err
}

func (r *Reader) next() (kvs.SnapshotEntry, error) {
	typ, p, err := r.record()
	if err != nil {
		return kvs.SnapshotEntry{}, err
	}
	switch typ {
	case recHeader:
		return kvs.SnapshotEntry{}, fmt.Errorf("%w: a second header", ErrCorrupt)
	case recTrailer:
		return kvs.SnapshotEntry{}, r.trailer(p)
	}
	bad := func(what string) error {
		return fmt.Errorf("%w: entry %d: %s", ErrCorrupt, r.count+1, what)
	}
	kl, m := binary.Uvarint(p)
	if m <= 0 || kl > uint64(len(p)-m) {
		return kvs.SnapshotEntry{}, bad("bad key length")
	}
	p = p[m:]
	e := kvs.SnapshotEntry{Key: string(p[:kl])}
	p = p[kl:]
	version, m := binary.Uvarint(p)
	if m <= 0 || version > 1<<63-1 {
		return kvs.SnapshotEntry{}, bad("bad version")
	}
	p = p[m:]
	lease, m := binary.Uvarint(p)
	if m <= 0 || lease > 1<<63-1 {
		return kvs.SnapshotEntry{}, bad("bad lease")
	}
	p = p[m:]
	updated, m := binary.Varint(p)
	if m <= 0 {
		return kvs.SnapshotEntry{}, bad("bad time")
	}
	p = p[m:]
	if len(p) > MaxValueLen {
		return kvs.SnapshotEntry{}, bad("value over the limit")
	}
	e.Version, e.Lease, e.Updated = int64(version), int64(lease), time.Unix(0, updated).UTC()
	e.Value = p
	if !utf8.ValidString(e.Key) || kvs.ValidateKey(e.Key) != nil {
		return kvs.SnapshotEntry{}, bad(fmt.Sprintf("invalid key %q", e.Key))
	}
	if r.count > 0 && e.Key <= r.last {
		return kvs.SnapshotEntry{}, bad(fmt.Sprintf("key %q out of order after %q", e.Key, r.last))
	}
	if e.Version > r.header.Revision {
		return kvs.SnapshotEntry{}, bad(fmt.Sprintf("key %q has version %d, above the snapshot's revision %d", e.Key, e.Version, r.header.Revision))
	}
	r.count++
	r.last = e.Key
	return e, nil
}

func (r *Reader) trailer(p []byte) error {
	count, m := binary.Uvarint(p)
	if m <= 0 || len(p)-m != sha256.Size {
		return fmt.Errorf("%w: bad trailer", ErrCorrupt)
	}
	if !bytes.Equal(p[m:], r.digest) {
		return fmt.Errorf("%w: checksum mismatch (the file was altered): SHA-256 %s, the trailer says %s",
			ErrCorrupt, hex.EncodeToString(r.digest), hex.EncodeToString(p[m:]))
	}
	if count != uint64(r.count) {
		return fmt.Errorf("%w: %d entries, the trailer says %d", ErrCorrupt, r.count, count)
	}
	var extra [1]byte
	if n, _ := r.r.Read(extra[:]); n > 0 {
		return fmt.Errorf("%w: data after the trailer", ErrCorrupt)
	}
	r.done = true
	return io.EOF
}

// Count returns the entries read so far.
func (r *Reader) Count() int64 { return r.count }

// Size returns the bytes read so far.
func (r *Reader) Size() int64 { return r.n }

// Digest returns the verified checksum once Next has returned io.EOF, and
// nil before.
func (r *Reader) Digest() []byte {
	if !r.done {
		return nil
	}
	return r.digest
}

// Info is what Inspect learns about a snapshot.
type Info struct {
	Header kvs.SnapshotHeader
	Count  int64  // keys
	Size   int64  // bytes
	SHA256 string // hex, of everything before the trailer
}

// Inspect reads a whole snapshot and verifies it; on error, the Info so
// far (the header when it was readable) comes with it.
func Inspect(r io.Reader) (Info, error) {
	sr, err := NewReader(r)
	if err != nil {
		return Info{}, err
	}
	for {
		if _, err := sr.Next(); err != nil {
			info := Info{Header: sr.Header(), Count: sr.Count(), Size: sr.Size()}
			if errors.Is(err, io.EOF) {
				info.SHA256 = hex.EncodeToString(sr.Digest())
				return info, nil
			}
			return info, err
		}
	}
}
