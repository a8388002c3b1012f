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
	// Days is the validity of the new certificate; 0 means the old
	// certificate's lifetime, at most MaxLeafDays.
	Days int
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
	selfSigned := IsSelfSigned(old)
	if mode == ModeSelfSigned && !selfSigned {
		return nil, fmt.Errorf("%s is not self-signed and %s has no CA to renew it with", o.CertFile, string(o.Dir))
	}
	if selfSigned && o.RevokeOld {
		return nil, errorOf(ErrSelfSignedPKI, "revoking the old certificate needs a CA and a CRL: a self-signed certificate cannot be revoked")
	}

	keyFile := strings.TrimSuffix(o.CertFile, filepath.Ext(o.CertFile)) + ".key"
	var oldKey crypto.Signer
	if _, err := os.Stat(keyFile); err == nil {
		if oldKey, err = LoadKey(keyFile, nil); err != nil {
			return nil, err
		}
		if !KeyMatches(old, oldKey) {
			return nil, fmt.Errorf("key %s does not match certificate %s", keyFile, o.CertFile)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read key %s: %w", keyFile, err)
	}
	if oldKey == nil && (selfSigned || !o.ReuseKey) {
		if selfSigned {
			return nil, fmt.Errorf("no key %s next to %s: a self-signed certificate cannot be renewed without its key", keyFile, o.CertFile)
		}
		return nil, errorOf(ErrNoKeyFile, "no key %s next to %s (a signed CSR?): keep the old key, or sign a new CSR", keyFile, o.CertFile)
	}

	days := o.Days
	if days == 0 {
		days = int((old.NotAfter.Sub(old.NotBefore) - backdate + 12*time.Hour) / (24 * time.Hour))
		days = max(1, min(days, MaxLeafDays))
	}
	req := LeafRequest{
		Profile: profile, Subject: old.Subject, Emails: old.EmailAddresses,
		Days: days, rawSubject: old.RawSubject,
	}
	req.Hosts = append(req.Hosts, old.DNSNames...)
	for _, ip := range old.IPAddresses {
		req.Hosts = append(req.Hosts, ip.String())
	}
	for _, u := range old.URIs {
		req.URIs = append(req.URIs, u.String())
	}

	var ca *CA
	if !selfSigned {
		// Check the CA (passphrase, validity, issuer) before generating keys.
		if ca, err = LoadCA(o.Dir, o.Passphrase, o.Now); err != nil {
			return nil, err
		}
		if err := old.CheckSignatureFrom(ca.Cert); err != nil {
			return nil, fmt.Errorf("%s was not issued by the CA in %s", o.CertFile, string(o.Dir))
		}
	}
	out := &Renewed{Old: old, Profile: profile, CertFile: o.CertFile}
	newKey := oldKey
	if out.KeyType, err = KeyTypeOf(old.PublicKey); err != nil && !o.ReuseKey {
		return nil, fmt.Errorf("%s: %w: %w", o.CertFile, err, ErrNoKeyFile)
	}
	if !o.ReuseKey {
		keys, err := generateKeys(ctx, out.KeyType, 1)
		if err != nil {
			return nil, err
		}
		newKey = keys[0]
		out.KeyFile = keyFile
	}
	var files []pendingFile
	if out.KeyFile != "" {
		pemKey, err := MarshalKey(newKey, nil)
		if err != nil {
			return nil, err
		}
		files = append(files, pendingFile{keyFile, pemKey, KeyMode})
	}

	if selfSigned {
		if out.New, err = SelfSign(req, newKey, o.Now); err != nil {
			return nil, err
		}
		files = append(files, pendingFile{o.CertFile, PEMCert(out.New.Raw), CertMode})
		if err := replaceFiles(files); err != nil {
			return nil, err
		}
		return out, nil
	}

	if newKey != nil {
		req.PublicKey = newKey.Public()
	} else {
		req.PublicKey = old.PublicKey
	}
	if out.New, err = ca.Sign(req, o.Now); err != nil {
		return nil, err
	}
	files = append(files, pendingFile{o.CertFile, PEMCert(out.New.Raw), CertMode})

	unlock, err := o.Dir.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	inv, err := o.Dir.LoadInventory()
	if err != nil {
		return nil, err
	}
	name := strings.TrimSuffix(filepath.Base(o.CertFile), filepath.Ext(o.CertFile))
	rec := inv.Find(SerialHex(old))
	if rec != nil {
		name = rec.Name
		if rec.RevokedAt != nil {
			return nil, fmt.Errorf("%s (serial %s) was revoked on %s: issue a new certificate instead", o.CertFile, rec.Serial, rec.RevokedAt.Format(time.RFC3339))
		}
	}
	rel := relPath(string(o.Dir), o.CertFile)
	out.Record = NewRecord(name, string(profile), rel, out.New)
	if rec != nil {
		rec.ReplacedBy = out.Record.Serial
		if o.RevokeOld {
			t := o.Now.UTC().Truncate(time.Second)
			rec.RevokedAt, rec.Reason = &t, "superseded"
		}
	} else if o.RevokeOld {
		// Not in the inventory (it was lost or rebuilt): record the old
		// certificate so that the CRL can list it.
		r := NewRecord(name, string(profile), rel, old)
		t := o.Now.UTC().Truncate(time.Second)
		r.RevokedAt, r.Reason, r.ReplacedBy = &t, "superseded", out.Record.Serial
		inv.Certificates = append(inv.Certificates, r)
	}
	inv.Certificates = append(inv.Certificates, out.Record)
	if o.RevokeOld {
		crlPEM, rl, err := ca.nextCRL(inv, o.CRLDays, o.Now)
		if err != nil {
			return nil, err
		}
		out.CRL = rl
		files = append(files, pendingFile{o.Dir.CRL(), crlPEM, CertMode})
	}
	invData, err := inv.encode()
	if err != nil {
		return nil, err
	}
	// The inventory goes first, so that a CRL write that fails after it is
	// repaired by the next 'kvsctl pki crl'; replaceFiles puts back every
	// file on failure anyway.
	files = slices.Insert(files, 0, pendingFile{o.Dir.Inventory(), invData, CertMode})
	if err := replaceFiles(files); err != nil {
		return nil, err
	}
	return out, nil
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
