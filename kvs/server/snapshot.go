package server

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/policy"
	snapfmt "github.com/kvsctl/kvsctl/kvs/snapshot"
)

// HeaderSnapshotRevision carries, on GET /v1/snapshot, the revision of the
// snapshot that follows (also in its header record).
const HeaderSnapshotRevision = "Kvs-Snapshot-Revision"

// handleSnapshot serves GET /v1/snapshot: the whole store at one revision
// in the kvs/snapshot format, streamed as the store reads it, to
// identities with the admin operation. The write deadline moves with the
// stream, so a large store is not cut off by WriteTimeout while it is
// still being sent. An error once the stream has begun aborts the
// connection: the client sees a truncated snapshot, never a clean end.
func (s *Server) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	identity, err := s.authorize(r, policy.OpAdmin, "")
	if err != nil {
		status, n := s.fail(w, "snapshot", err)
		s.finish(r, "snapshot", "", identity, status, n, start)
		return
	}
	snap, ok := s.cfg.Store.(kvs.Snapshotter)
	if !ok {
		status, n := s.fail(w, "snapshot", fmt.Errorf("%w: snapshots", errNotSupported))
		s.finish(r, "snapshot", "", identity, status, n, start)
		return
	}
	cw := &countingWriter{ResponseWriter: w}
	rc := http.NewResponseController(w)
	var sw *snapfmt.Writer
	began := false
	deadline := func() { _ = rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout)) }
	err = snap.Snapshot(r.Context(), func(h kvs.SnapshotHeader) error {
		hdr := w.Header()
		hdr.Set("Content-Type", "application/octet-stream")
		hdr.Set("X-Content-Type-Options", "nosniff")
		hdr.Set(HeaderSnapshotRevision, strconv.FormatInt(h.Revision, 10))
		began = true
		deadline()
		var err error
		sw, err = snapfmt.NewWriter(cw, h)
		return err
	}, func(e kvs.SnapshotEntry) error {
		if sw.Count()%4096 == 0 {
			deadline()
		}
		return sw.Add(e)
	})
	if err == nil {
		deadline()
		err = sw.Close()
	}
	if err == nil {
		s.finish(r, "snapshot", "", identity, cw.status(), cw.n, start)
		return
	}
	if !began {
		status, n := s.fail(w, "snapshot", err)
		s.finish(r, "snapshot", "", identity, status, n, start)
		return
	}
	s.log.Warn("snapshot stream aborted", "err", err, "bytes", cw.n)
	s.finish(r, "snapshot", "", identity, http.StatusInternalServerError, cw.n, start)
	panic(http.ErrAbortHandler)
}
