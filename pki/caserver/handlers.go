package caserver

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/kvsctl/kvsctl/kvs/policy"
	"github.com/kvsctl/kvsctl/pki"
)

// The API paths.
const (
	PathEnroll = "/v1/pki/enroll"
	PathRenew  = "/v1/pki/renew"
	PathRevoke = "/v1/pki/revoke"
	PathCRL    = "/v1/pki/crl"  // the issuing CA's CRL; /v1/pki/crl/SERIAL another CA's
	PathCRLs   = "/v1/pki/crls" // every CRL, PEM
	PathCA     = "/v1/pki/ca"   // the trust bundle, PEM
)

// maxBody caps a request body: a CSR in JSON is a few KiB.
const maxBody = 64 << 10

// EnrollRequest is the body of POST /v1/pki/enroll.
type EnrollRequest struct {
	Token   string `json:"token"`
	CSR     string `json:"csr"`               // PEM
	Profile string `json:"profile,omitempty"` // when set, must be the token's
}

// RenewRequest is the body of POST /v1/pki/renew.
type RenewRequest struct {
	CSR string `json:"csr"` // PEM, for a new key
}

// RevokeRequest is the body of POST /v1/pki/revoke.
type RevokeRequest struct {
	Serial string `json:"serial"`
	Reason string `json:"reason,omitempty"`
}

// Certificate is the answer to an enrollment or a renewal.
type Certificate struct {
	Serial      string    `json:"serial"`
	Subject     string    `json:"subject"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Certificate string    `json:"certificate"` // PEM: the leaf, then its intermediate
	CA          string    `json:"ca"`          // PEM: the trust bundle
}

// Revocation is the answer to a revocation.
type Revocation struct {
	Serial     string    `json:"serial"`
	Name       string    `json:"name"`
	Reason     string    `json:"reason"`
	RevokedAt  time.Time `json:"revoked_at"`
	CRLNumber  string    `json:"crl_number"`
	NextUpdate time.Time `json:"next_update"`
}

// Error is the body of every error answer.
type Error struct {
	Error string `json:"error"`
}

// Handler is the API, for TLS: enroll, renew, revoke and the public
// endpoints.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathEnroll, s.enroll)
	mux.HandleFunc("POST "+PathRenew, s.renew)
	mux.HandleFunc("POST "+PathRevoke, s.revoke)
	s.public(mux)
	return mux
}

// PublicHandler serves only what anyone may read: the CRLs and the trust
// bundle, signed data, for plain HTTP (CRL distribution points).
func (s *Server) PublicHandler() http.Handler {
	mux := http.NewServeMux()
	s.public(mux)
	return mux
}

func (s *Server) public(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PathCRL, s.crl)
	mux.HandleFunc("GET "+PathCRL+"/{serial}", s.crl)
	mux.HandleFunc("GET "+PathCRLs, s.crls)
	mux.HandleFunc("GET "+PathCA, s.ca)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
}

// peerCert is the client certificate of the request, verified against the
// current trust bundle (for any usage), or nil.
func (s *Server) peerCert(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	roots, err := s.clientRoots()
	if err != nil {
		return nil
	}
	c, err := verifyPeer(r.TLS.PeerCertificates, roots, s.cfg.Now())
	if err != nil {
		return nil
	}
	return c
}

// peerAddr is the client's IP address.
func peerAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// audit writes one line per operation: what, the outcome, who, on what
// serial, from where, and why when refused.
func (s *Server) audit(r *http.Request, op, outcome, identity, serial string, err error) {
	attrs := []any{"op", op, "outcome", outcome, "identity", identity, "serial", serial, "peer", r.RemoteAddr}
	level := slog.LevelInfo
	if err != nil {
		attrs = append(attrs, "reason", err.Error())
		level = slog.LevelWarn
	}
	s.log.Log(r.Context(), level, "pki audit", attrs...)
	if s.cfg.Observer != nil {
		s.cfg.Observer(AuditEvent{Op: op, Outcome: outcome, Identity: identity, Serial: serial, Peer: r.RemoteAddr, Err: err})
	}
}

func (s *Server) enroll(w http.ResponseWriter, r *http.Request) {
	var req EnrollRequest
	if err := readJSON(w, r, &req); err != nil {
		s.refuse(w, r, "enroll", "refused", "", "", http.StatusBadRequest, err)
		return
	}
	key := "token:" + tokenKey(req.Token)
	if !s.limit.allow("enroll-addr:"+peerAddr(r), s.cfg.EnrollPerMinute, defaultEnrollRate) || !s.limit.allow(key, s.cfg.EnrollPerMinute, defaultEnrollRate) {
		err := errors.New("too many enrollments: slow down")
		s.refuse(w, r, "enroll", "rate-limited", "", "", http.StatusTooManyRequests, err)
		return
	}
	iss, err := pki.Enroll(r.Context(), pki.EnrollOptions{
		Dir: s.cfg.Dir, Token: req.Token, CSR: []byte(req.CSR), Profile: pki.Profile(req.Profile), TTL: s.cfg.CertTTL, Now: s.cfg.Now(),
	})
	if err != nil {
		s.refuse(w, r, "enroll", "refused", "", "", statusOf(err), err)
		return
	}
	s.audit(r, "enroll", "ok", iss.Record.Name, iss.Record.Serial, nil)
	s.writeCertificate(w, http.StatusCreated, iss)
}

// refuse records a refused request in the audit log and answers it with
// status and err.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, op, outcome, id, serial string, status int, err error) {
	s.audit(r, op, outcome, id, serial, err)
	writeError(w, status, err)
}

func (s *Server) renew(w http.ResponseWriter, r *http.Request) {
	cur := s.peerCert(r)
	if cur == nil {
		err := errors.New("renewal needs mutual TLS with the current certificate")
		s.refuse(w, r, "renew", "refused", "", "", http.StatusUnauthorized, err)
		return
	}
	id, serial := cur.Subject.CommonName, pki.SerialHex(cur)
	var req RenewRequest
	if err := readJSON(w, r, &req); err != nil {
		s.refuse(w, r, "renew", "refused", id, serial, http.StatusBadRequest, err)
		return
	}
	if !s.limit.allow("renew:"+serial, s.cfg.RenewPerMinute, defaultRenewRate) {
		err := errors.New("too many renewals for this certificate: slow down")
		s.refuse(w, r, "renew", "rate-limited", id, serial, http.StatusTooManyRequests, err)
		return
	}
	iss, err := pki.RenewCSR(r.Context(), pki.RenewCSROptions{Dir: s.cfg.Dir, Current: cur, CSR: []byte(req.CSR), Now: s.cfg.Now()})
	if err != nil {
		s.refuse(w, r, "renew", "refused", id, serial, statusOf(err), err)
		return
	}
	s.audit(r, "renew", "ok", id, serial+"->"+iss.Record.Serial, nil)
	s.writeCertificate(w, http.StatusOK, iss)
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	cur := s.peerCert(r)
	if cur == nil {
		err := errors.New("revocation needs mutual TLS with an admin's certificate")
		s.refuse(w, r, "revoke", "refused", "", "", http.StatusUnauthorized, err)
		return
	}
	id := s.admin(cur)
	var req RevokeRequest
	if err := readJSON(w, r, &req); err != nil {
		s.refuse(w, r, "revoke", "refused", cur.Subject.CommonName, "", http.StatusBadRequest, err)
		return
	}
	if id == "" {
		err := fmt.Errorf("%s is not an admin of this CA", cur.Subject.CommonName)
		s.refuse(w, r, "revoke", "refused", cur.Subject.CommonName, req.Serial, http.StatusForbidden, err)
		return
	}
	if e, which, err := pki.RevocationOf(s.cfg.Dir, cur); err != nil || e != nil {
		if err == nil {
			err = fmt.Errorf("the admin's certificate chain is revoked (serial %s)", pki.SerialHex(which))
		}
		s.refuse(w, r, "revoke", "refused", id, req.Serial, http.StatusForbidden, err)
		return
	}
	if !s.limit.allow("revoke:"+id, s.cfg.RenewPerMinute, defaultRenewRate) {
		err := errors.New("too many revocations: slow down")
		s.refuse(w, r, "revoke", "rate-limited", id, req.Serial, http.StatusTooManyRequests, err)
		return
	}
	rv, err := pki.Revoke(r.Context(), pki.RevokeOptions{Dir: s.cfg.Dir, Target: pki.NormalizeSerial(req.Serial), Reason: req.Reason, CRLDays: s.cfg.CRLDays, Now: s.cfg.Now()})
	if err != nil {
		s.refuse(w, r, "revoke", "refused", id, req.Serial, statusOf(err), err)
		return
	}
	s.audit(r, "revoke", "ok", id, rv.Record.Serial, nil)
	writeJSON(w, http.StatusOK, Revocation{
		Serial: rv.Record.Serial, Name: rv.Record.Name, Reason: rv.Record.Reason, RevokedAt: *rv.Record.RevokedAt,
		CRLNumber: rv.CRL.Number.String(), NextUpdate: rv.CRL.NextUpdate.UTC(),
	})
}

// admin returns the identity of the admin list that c carries, or "".
func (s *Server) admin(c *x509.Certificate) string {
	have := policy.Of(c)
	for _, a := range s.cfg.Admins {
		for _, h := range have {
			if a == h {
				return a.String()
			}
		}
	}
	return ""
}

func (s *Server) writeCertificate(w http.ResponseWriter, status int, iss *pki.Issued) {
	bundle, err := os.ReadFile(s.cfg.Dir.CACert())
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("read the trust bundle: %w", err))
		return
	}
	writeJSON(w, status, Certificate{
		Serial: iss.Record.Serial, Subject: iss.Cert.Subject.String(), NotBefore: iss.Cert.NotBefore.UTC(), NotAfter: iss.Cert.NotAfter.UTC(),
		Certificate: string(iss.Chain), CA: string(bundle),
	})
}

// crl serves one CA's CRL: the issuing CA's, or that of the CA whose
// serial the path names. DER, or PEM with ?format=pem.
func (s *Server) crl(w http.ResponseWriter, r *http.Request) {
	lists, err := pki.CurrentCRLs(s.cfg.Dir)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	serial := r.PathValue("serial")
	var found *pki.IssuerCRL
	for i := range lists {
		if (serial == "" && lists[i].Issuing) || (serial != "" && pki.SerialHex(lists[i].Issuer) == pki.NormalizeSerial(serial)) {
			found = &lists[i]
			break
		}
	}
	if found == nil {
		writeError(w, http.StatusNotFound, fmt.Errorf("no CRL of a CA with serial %q", serial))
		return
	}
	w.Header().Set("Cache-Control", "max-age=60")
	if r.URL.Query().Get("format") == "pem" {
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: found.CRL.Raw}))
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	_, _ = w.Write(found.CRL.Raw)
}

// crls serves every CRL of the directory as PEM: what a kvs server needs.
func (s *Server) crls(w http.ResponseWriter, _ *http.Request) {
	data, err := os.ReadFile(s.cfg.Dir.CRL())
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("read the CRLs: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Cache-Control", "max-age=60")
	_, _ = w.Write(data)
}

// ca serves the trust bundle (ca.crt) as PEM.
func (s *Server) ca(w http.ResponseWriter, _ *http.Request) {
	data, err := os.ReadFile(s.cfg.Dir.CACert())
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("read the trust bundle: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(data)
}

// statusOf maps a pki error to an HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, pki.ErrBadToken), errors.Is(err, pki.ErrRenewRefused), errors.Is(err, pki.ErrNameNotPermitted):
		return http.StatusForbidden
	case errors.Is(err, pki.ErrBadCSR), errors.Is(err, pki.ErrWeakKey):
		return http.StatusBadRequest
	case errors.Is(err, pki.ErrUnknownCert):
		return http.StatusNotFound
	case errors.Is(err, pki.ErrLocked):
		return http.StatusServiceUnavailable
	case errors.Is(err, pki.ErrAlreadyRevoked):
		return http.StatusConflict
	}
	return http.StatusUnprocessableEntity
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid request body: %w", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, Error{Error: err.Error()})
}
