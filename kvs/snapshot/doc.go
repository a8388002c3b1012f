// Package snapshot writes and reads kvsctl's store-independent snapshot
// format: what GET /v1/snapshot streams, kvsctl snapshot save writes and
// kvsctl snapshot restore reads into a bolt or PostgreSQL store.
//
// A snapshot is a byte stream (all integers big-endian or varints as
// encoding/binary writes them):
//
//	magic    8 bytes  "KVSSNAP\n"
//	version  2 bytes  the format version, uint16 (this package: 1)
//	records  each: a type byte, its payload's length (uvarint), the payload
//	  'H'  once, first: the header, JSON {"store", "revision", "time"}
//	  'E'  one per key, in strictly increasing byte order of keys:
//	       key length (uvarint), key, version (uvarint), lease (uvarint),
//	       updated (varint, Unix nanoseconds), then the value to the end
//	  'T'  once, last: the key count (uvarint) and the SHA-256 (32 bytes)
//	       of every byte of the stream before this record
//	end of stream right after the trailer
//
// A Writer produces it in one pass and a Reader consumes it in one pass,
// in memory bounded by the largest record (MaxValueLen plus a key): neither
// holds the store. A Reader refuses, with a wrapped ErrCorrupt or
// ErrVersion, a stream that is truncated, altered (the checksum), out of
// order, or of another format version; its Next returns io.EOF only after
// the trailer has been verified, so a restore that applies entries as they
// come can still refuse the whole snapshot at the end.
package snapshot
