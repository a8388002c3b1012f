package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
)

// sample writes a snapshot of n keys.
func sample(t testing.TB, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, kvs.SnapshotHeader{Store: "bolt", Revision: int64(n) + 5, Time: time.Unix(1700000000, 0)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		e := kvs.SnapshotEntry{Key: fmt.Sprintf("k%04d", i), Value: []byte(strings.Repeat("v", i%7)), Version: int64(i + 1), Lease: int64(i % 2), Updated: time.Unix(1700000000, int64(i)*1000)}
		if err := w.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.Size() != int64(buf.Len()) {
		t.Fatalf("Size = %d, wrote %d", w.Size(), buf.Len())
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	data := sample(t, 100)
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if h := r.Header(); h.Store != "bolt" || h.Revision != 105 || !h.Time.Equal(time.Unix(1700000000, 0)) {
		t.Fatalf("header = %+v", h)
	}
	for i := 0; ; i++ {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			if i != 100 {
				t.Fatalf("%d entries, want 100", i)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if e.Key != fmt.Sprintf("k%04d", i) || string(e.Value) != strings.Repeat("v", i%7) || e.Version != int64(i+1) || e.Lease != int64(i%2) || e.Updated.UnixNano() != time.Unix(1700000000, int64(i)*1000).UnixNano() {
			t.Fatalf("entry %d = %+v", i, e)
		}
	}
	info, err := Inspect(bytes.NewReader(data))
	if err != nil || info.Count != 100 || info.Size != int64(len(data)) || len(info.SHA256) != 64 {
		t.Fatalf("Inspect = %+v, %v", info, err)
	}
}

func TestWriterOrder(t *testing.T) {
	w, err := NewWriter(io.Discard, kvs.SnapshotHeader{Store: "bolt", Revision: 9})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(kvs.SnapshotEntry{Key: "b", Version: 1}); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(kvs.SnapshotEntry{Key: "a", Version: 1}); err == nil {
		t.Fatal("a key out of order was written")
	}
}

// TestRefused: truncated at every length, every byte flipped, another
// version: all refused, with ErrCorrupt or ErrVersion; none reaches EOF.
func TestRefused(t *testing.T) {
	data := sample(t, 20)
	for n := range len(data) {
		if _, err := Inspect(bytes.NewReader(data[:n])); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d of %d bytes: err = %v, want ErrCorrupt", n, len(data), err)
		}
	}
	for i := range data {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(data)
			bad[i] ^= bit
			_, err := Inspect(bytes.NewReader(bad))
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("byte %d flipped (0x%02x): err = %v, want ErrCorrupt", i, bit, err)
			}
		}
	}
	v2 := bytes.Clone(data)
	v2[len(Magic)+1] = 2
	if _, err := Inspect(bytes.NewReader(v2)); !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "version 2") {
		t.Fatalf("version 2: err = %v", err)
	}
	if _, err := Inspect(bytes.NewReader(append(bytes.Clone(data), 0))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("data after the trailer: err = %v", err)
	}
}

func FuzzReader(f *testing.F) {
	f.Add(sample(f, 3))
	f.Add(sample(f, 0))
	f.Add([]byte(Magic + "\x00\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := Inspect(bytes.NewReader(data))
		if err == nil {
			// Whatever passes must write back to the same bytes.
			r, _ := NewReader(bytes.NewReader(data))
			var buf bytes.Buffer
			w, werr := NewWriter(&buf, r.Header())
			if werr != nil {
				t.Fatal(werr)
			}
			for {
				e, err := r.Next()
				if err != nil {
					break
				}
				if err := w.Add(e); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if info.Size != int64(len(data)) {
				t.Fatalf("size %d of %d", info.Size, len(data))
			}
		} else if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
			t.Fatalf("error not ErrCorrupt or ErrVersion: %v", err)
		}
	})
}
