package caserver

import (
	"context"
	"time"

	"github.com/kvsctl/kvsctl/pki"
)

// keepCRLs re-signs the CRLs whose keys are here when half of their
// lifetime has passed, so that they never expire while the service runs.
// Revocations re-sign at once (pki.Revoke does).
func (s *Server) keepCRLs(ctx context.Context) {
	every := s.cfg.CRLCheck
	if every <= 0 {
		every = min(time.Minute, time.Duration(s.cfg.CRLDays)*24*time.Hour/20)
	}
	s.resignDue()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.resignDue()
		}
	}
}

// resignDue re-signs every CRL when one with a key here is past half of
// its lifetime (or missing).
func (s *Server) resignDue() {
	now := s.cfg.Now()
	lists, err := pki.CurrentCRLs(s.cfg.Dir)
	if err != nil {
		s.log.Error("reading the CRLs failed", "err", err)
		return
	}
	due := false
	for _, l := range lists {
		if !l.HasKey {
			continue
		}
		if l.CRL == nil || !now.Before(l.CRL.ThisUpdate.Add(l.CRL.NextUpdate.Sub(l.CRL.ThisUpdate)/2)) {
			due = true
		}
	}
	if !due {
		return
	}
	ups, err := pki.UpdateCRL(context.Background(), pki.CRLOptions{Dir: s.cfg.Dir, Days: s.cfg.CRLDays, Now: now})
	if err != nil {
		s.log.Error("re-signing the CRLs failed; retrying at the next check", "err", err)
		return
	}
	for _, u := range ups {
		if u.Resigned {
			s.log.Info("crl re-signed", "issuer", u.Issuer.Subject.String(), "number", u.CRL.Number, "next_update", u.CRL.NextUpdate.UTC())
		}
	}
}
