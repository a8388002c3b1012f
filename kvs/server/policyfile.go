package server

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/kvsctl/kvsctl/kvs/policy"
)

// policyFile serves the policy of a file and reloads it. A nil
// *policyFile means no policy: every client of the CA has full access.
type policyFile struct {
	path   string
	log    *slog.Logger
	cur    atomic.Pointer[policy.Policy]
	stamp  atomic.Pointer[fileStamp]
	failed atomic.Pointer[fileStamp]
}

// loadPolicy reads a policy file; the error says what is wrong with it.
func loadPolicy(path string, log *slog.Logger) (*policyFile, error) {
	h := &policyFile{path: path, log: log}
	if err := h.Reload(); err != nil {
		return nil, err
	}
	return h, nil
}

// current returns the policy in force (nil: everything allowed).
func (h *policyFile) current() *policy.Policy {
	if h == nil {
		return nil
	}
	return h.cur.Load()
}

// Reload re-reads the file; on error the previous policy stays in force.
func (h *policyFile) Reload() error {
	st := stampFiles([]string{h.path})
	data, err := os.ReadFile(h.path)
	if err == nil {
		var p *policy.Policy
		if p, err = policy.Parse(data); err == nil {
			h.cur.Store(p)
			h.stamp.Store(&st)
			h.log.Info("policy loaded", "file", filepath.Clean(h.path), "identities", p.Len())
			return nil
		}
	}
	err = fmt.Errorf("policy %s: %w", h.path, err)
	h.failed.Store(&st)
	if h.cur.Load() != nil {
		h.log.Error("policy reload failed, keeping the previous policy", "err", err)
	}
	return err
}

// watched is the policy file.
func (h *policyFile) watched() []string { return []string{h.path} }

func (h *policyFile) changed() bool {
	st := stampFiles([]string{h.path})
	if f := h.failed.Load(); f != nil && *f == st {
		return false
	}
	cur := h.stamp.Load()
	return cur == nil || *cur != st
}
