package pki

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// RenewOptions configures [Renew].
type RenewOptions struct {
	Dir      Dir
	CertFile string // the certificate to renew; it is replaced in place
	// Days is the validity of the new certificate; 0 (and no TTL) means
	// the old certificate's lifetime, at most MaxLeafDays, shortened to
	// end with the issuing CA.
	Days int
	TTL  time.Duration // the validity as a duration instead of Days (at least MinLeafTTL)
	// ReuseKey keeps the old key pair; otherwise a new key of the same type
	// is generated and written next to the certificate (NAME.key).
	ReuseKey bool
	// RevokeOld revokes the old certificate (reason superseded) and writes a
	// new CRL. CA mode only.
	RevokeOld  bool
	Passphrase []byte // decrypts the CA key
	CRLDays    int    // lifetime of the CRL written by RevokeOld
	Now        time.Time
}

// Renewed says what [Renew] did.
type Renewed struct {
	Old, New *x509.Certificate
	Profile  Profile
	CertFile string
	KeyFile  string // the key written; empty when the key was reused
	KeyType  KeyType
	Record   Record               // the new inventory record (CA mode)
	CRL      *x509.RevocationList // the new CRL when the old certificate was revoked
}

// Renew issues a new certificate with the same subject, SANs and usage as
// CertFile and a new validity window, and writes it over CertFile (and a new
// key over the key next to it) atomically. In CA mode the CA signs it and the
// inventory records it, marking the old record replaced; in self-signed mode
// the certificate is self-signed again with its (old or new) key. Nothing is
// written when any check fails, and a failed write puts back the old files.
func Renew(ctx context.Context, o RenewOptions) (*Renewed, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	r, err := checkRenewal(o)
	if err != nil {
		return nil, err
	}
	if err := r.loadOldKey(); err != nil {
		return nil, err
	}
	var ca *CA
	if !r.selfSigned {
		// Check the CAs (passphrase, validity, issuer) before generating keys.
		if ca, err = r.loadCAs(); err != nil {
			return nil, err
		}
	}
	files, err := r.newKey(ctx)
	if err != nil {
		return nil, err
	}
	req := r.request()
	if r.selfSigned {
		if r.out.New, err = SelfSign(req, r.key, o.Now); err != nil {
			return nil, err
		}
		files = append(files, pendingFile{o.CertFile, PEMCert(r.out.New.Raw), CertMode})
		if err := replaceFiles(files); err != nil {
			return nil, err
		}
		return r.out, nil
	}
	if r.out.New, err = ca.Sign(req, o.Now); err != nil {
		return nil, err
	}
	files = append(files, pendingFile{o.CertFile, ca.leafPEM(r.out.New), CertMode})
	return r.out, r.record(ca, files)
}

// loadCAs loads the issuing CA, which signs the new certificate, and
// finds the CA that signed the old one: the same, or one a rotation
// replaced. With RevokeOld the old issuer's key is loaded too, to sign its
// CRL.
func (r *renewal) loadCAs() (*CA, error) {
	o := r.o
	a, err := loadAuthority(o.Dir)
	if err != nil {
		return nil, err
	}
	ca, err := a.issuingCA(o.Passphrase, o.Now)
	if err != nil {
		return nil, err
	}
	r.auth, r.oldIssuer = a, ca
	if iss := a.issuerOf(r.out.Old); iss == nil || !a.signsLeaves(iss) {
		return nil, fmt.Errorf("%s was not issued by a CA in %s", o.CertFile, string(o.Dir))
	} else if !iss.Equal(ca.Cert) {
		r.oldIssuer = &CA{Cert: iss}
		if o.RevokeOld {
			if r.oldIssuer, err = a.loadCA(iss, o.Passphrase, o.Now, "revoke the old certificate, which it issued"); err != nil {
				return nil, err
			}
		}
	}
	return ca, nil
}

// renewal is one Renew in progress.
type renewal struct {
	o          RenewOptions
	out        *Renewed
	selfSigned bool
	auth       *authority    // CA mode
	oldIssuer  *CA           // the CA of the old certificate; its key only with RevokeOld
	keyFile    string        // the key next to the certificate
	key        crypto.Signer // the key the new certificate is for; nil: the old public key, without its private key
}

// checkRenewal loads the old certificate and checks that it can be renewed
// where it is.
func checkRenewal(o RenewOptions) (*renewal, error) {
	old, err := LoadCert(o.CertFile)
	if err != nil {
		return nil, err
	}
	if old.IsCA {
		return nil, fmt.Errorf("%s is a CA certificate: only leaves are renewed", o.CertFile)
	}
	profile, err := profileOf(old)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.CertFile, err)
	}
	mode, err := o.Dir.Mode()
	if err != nil {
		return nil, err
	}
	r := &renewal{o: o, out: &Renewed{Old: old, Profile: profile, CertFile: o.CertFile}, selfSigned: IsSelfSigned(old)}
	if mode == ModeSelfSigned && !r.selfSigned {
		return nil, fmt.Errorf("%s is not self-signed and %s has no CA to renew it with", o.CertFile, string(o.Dir))
	}
	if r.selfSigned && o.RevokeOld {
		return nil, errorOf(ErrSelfSignedPKI, "revoking the old certificate needs a CA and a CRL: a self-signed certificate cannot be revoked")
	}
	r.keyFile = strings.TrimSuffix(o.CertFile, filepath.Ext(o.CertFile)) + ".key"
	return r, nil
}

// loadOldKey reads the key next to the certificate, when there is one, and
// checks that it matches; a missing key is allowed only when the old key is
// reused for a CA-signed certificate (a signed CSR, whose key is not ours).
func (r *renewal) loadOldKey() error {
	o := r.o
	if _, err := os.Stat(r.keyFile); err == nil {
		if r.key, err = LoadKey(r.keyFile, nil); err != nil {
			return err
		}
		if !KeyMatches(r.out.Old, r.key) {
			return fmt.Errorf("key %s does not match certificate %s", r.keyFile, o.CertFile)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read key %s: %w", r.keyFile, err)
	}
	if r.key == nil && (r.selfSigned || !o.ReuseKey) {
		if r.selfSigned {
			return fmt.Errorf("no key %s next to %s: a self-signed certificate cannot be renewed without its key", r.keyFile, o.CertFile)
		}
		return errorOf(ErrNoKeyFile, "no key %s next to %s (a signed CSR?): keep the old key, or sign a new CSR", r.keyFile, o.CertFile)
	}
	return nil
}

// newKey makes a key of the old key's type, unless the old key is reused,
// and returns the key file to write.
func (r *renewal) newKey(ctx context.Context) ([]pendingFile, error) {
	var err error
	if r.out.KeyType, err = KeyTypeOf(r.out.Old.PublicKey); err != nil && !r.o.ReuseKey {
		return nil, fmt.Errorf("%s: %w: %w", r.o.CertFile, err, ErrNoKeyFile)
	}
	if r.o.ReuseKey {
		return nil, nil
	}
	keys, err := generateKeys(ctx, r.out.KeyType, 1)
	if err != nil {
		return nil, err
	}
	r.key, r.out.KeyFile = keys[0], r.keyFile
	pemKey, err := MarshalKey(r.key, nil)
	if err != nil {
		return nil, err
	}
	return []pendingFile{{r.keyFile, pemKey, KeyMode}}, nil
}

// request is the old certificate's subject, SANs and usage with the new
// validity and key.
func (r *renewal) request() LeafRequest {
	old := r.out.Old
	req := LeafRequest{
		Profile: r.out.Profile, Subject: old.Subject, Emails: old.EmailAddresses,
		Days: r.o.Days, TTL: r.o.TTL, rawSubject: old.RawSubject, PublicKey: old.PublicKey,
	}
	if req.Days == 0 && req.TTL == 0 {
		// The old lifetime, less the backdate, to the day or (under a day)
		// to the minute.
		req.fitIssuer = true
		if life := old.NotAfter.Sub(old.NotBefore); life >= 24*time.Hour {
			req.Days = max(1, min(int((life-backdate+12*time.Hour)/(24*time.Hour)), MaxLeafDays))
		} else {
			req.TTL = max(MinLeafTTL, (life - backdate).Round(time.Minute))
		}
	}
	if r.key != nil {
		req.PublicKey = r.key.Public()
	}
	req.Hosts = append(req.Hosts, old.DNSNames...)
	for _, ip := range old.IPAddresses {
		req.Hosts = append(req.Hosts, ip.String())
	}
	for _, u := range old.URIs {
		req.URIs = append(req.URIs, u.String())
	}
	return req
}

// record writes the new certificate and key with the inventory (the old
// record marked replaced, and revoked with RevokeOld, which also writes a
// new CRL that keeps every entry of the current one), all under the
// directory lock and all or nothing. The current CRL is verified first and
// its revocations restored in the inventory, so a certificate it lists is
// not renewed, whatever the inventory says.
func (r *renewal) record(ca *CA, files []pendingFile) error {
	o, old, out := r.o, r.out.Old, r.out
	unlock, err := o.Dir.lock()
	if err != nil {
		return err
	}
	defer unlock()
	// The signed CRLs, not the editable inventory, say what is revoked.
	inv, b, err := r.auth.readState()
	if err != nil {
		return err
	}
	signed, err := b.of(r.oldIssuer.Cert)
	if err != nil {
		return err
	}
	name := strings.TrimSuffix(filepath.Base(o.CertFile), filepath.Ext(o.CertFile))
	rec := inv.Find(SerialHex(old))
	var revokedAt *time.Time
	if rec != nil {
		name, revokedAt = rec.Name, rec.RevokedAt
	} else if e := signedEntry(signed, old.SerialNumber); e != nil {
		revokedAt = &e.RevocationTime // listed by the CRL, its record gone
	}
	if revokedAt != nil {
		return fmt.Errorf("%s (serial %s) was revoked on %s: issue a new certificate instead", o.CertFile, SerialHex(old), revokedAt.UTC().Format(time.RFC3339))
	}
	rel := relPath(string(o.Dir), o.CertFile)
	out.Record = NewRecord(name, string(out.Profile), rel, out.New, ca.Cert)
	if rec != nil {
		rec.ReplacedBy = out.Record.Serial
		if o.RevokeOld {
			t := o.Now.UTC().Truncate(time.Second)
			rec.RevokedAt, rec.Reason = &t, "superseded"
		}
	} else if o.RevokeOld {
		// Not in the inventory (it was lost or rebuilt): record the old
		// certificate so that the CRL can list it.
		old := NewRecord(name, string(out.Profile), rel, old, r.oldIssuer.Cert)
		t := o.Now.UTC().Truncate(time.Second)
		old.RevokedAt, old.Reason, old.ReplacedBy = &t, "superseded", out.Record.Serial
		inv.Certificates = append(inv.Certificates, old)
	}
	inv.Certificates = append(inv.Certificates, out.Record)
	if o.RevokeOld {
		if out.CRL, err = r.oldIssuer.nextCRL(inv, signed, o.CRLDays, o.Now); err != nil {
			return err
		}
		b.set(r.oldIssuer.Cert, out.CRL)
		files = append(files, pendingFile{o.Dir.CRL(), b.encode(r.auth.cas()), CertMode})
	}
	invData, err := inv.encode()
	if err != nil {
		return err
	}
	// The inventory goes first, so that a CRL write that fails after it is
	// repaired by the next re-signing; replaceFiles puts back every file on
	// failure anyway.
	files = slices.Insert(files, 0, pendingFile{o.Dir.Inventory(), invData, CertMode})
	return replaceFiles(files)
}

// profileOf tells the profile of a leaf from its extended key usage.
func profileOf(c *x509.Certificate) (Profile, error) {
	server := slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	client := slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	switch {
	case server && client:
		return "", errors.New("certificate is for both server and client authentication: kvsctl issues one or the other")
	case server:
		return ProfileServer, nil
	case client:
		return ProfileClient, nil
	}
	return "", errors.New("certificate has neither serverAuth nor clientAuth extended key usage")
}

// relPath is path relative to dir when it lies inside it, else path.
func relPath(dir, path string) string {
	ad, err1 := filepath.Abs(dir)
	ap, err2 := filepath.Abs(path)
	if err1 != nil || err2 != nil {
		return path
	}
	rel, err := filepath.Rel(ad, ap)
	if err != nil || strings.HasPrefix(rel, "..") {
		return ap
	}
	return rel
}
