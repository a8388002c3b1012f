package pki

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// IssueOptions configures [Issue].
type IssueOptions struct {
	Dir        Dir
	Profile    Profile
	Name       string        // file name under issued/ and the certificate's common name
	Hosts      []string      // SANs; for a server certificate nil means [Name]
	Emails     []string      // e-mail SANs (typed identities, see [CheckEmail])
	URIs       []string      // URI SANs such as spiffe://example.org/web (see [CheckURI])
	Days       int           // 0 (and no TTL) means DefaultLeafDays
	TTL        time.Duration // the validity as a duration instead of Days (at least MinLeafTTL)
	KeyType    KeyType       // "" means RSA2048
	Passphrase []byte        // decrypts the CA key
	Force      bool          // replace issued/NAME.crt and .key
	Now        time.Time

	notBefore, notAfter time.Time // tests: the validity window, instead of Now and Days
}

// Issued is a leaf certificate that was issued and recorded.
type Issued struct {
	Cert     *x509.Certificate
	CertFile string
	KeyFile  string // empty when the key is not ours (signed CSR)
	Chain    []byte // the certificate file's content: PEM, the leaf then its intermediate
	Record   Record
}

// Issue creates a key and a leaf certificate signed by the issuing CA,
// writes them to issued/NAME.key and issued/NAME.crt (the leaf, then the
// intermediate of a hierarchy) and records the certificate in the
// inventory. Besides the common name NAME, the certificate carries the
// hosts, e-mail addresses and URIs of o as SANs; a malformed one is refused
// before anything is generated.
func Issue(ctx context.Context, o IssueOptions) (*Issued, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if err := CheckName(o.Name); err != nil {
		return nil, err
	}
	if _, err := ParseProfile(string(o.Profile)); err != nil {
		return nil, err
	}
	if _, err := ParseKeyType(string(o.KeyType)); err != nil {
		return nil, err
	}
	for _, e := range o.Emails {
		if err := CheckEmail(e); err != nil {
			return nil, err
		}
	}
	for _, u := range o.URIs {
		if err := CheckURI(u); err != nil {
			return nil, err
		}
	}
	ca, err := LoadCA(o.Dir, o.Passphrase, o.Now)
	if err != nil {
		return nil, err
	}
	if o.Hosts == nil && o.Profile == ProfileServer {
		o.Hosts = []string{o.Name}
	}
	keys, err := generateKeys(ctx, o.KeyType, 1)
	if err != nil {
		return nil, err
	}
	req := LeafRequest{
		Profile: o.Profile, Subject: pkix.Name{CommonName: o.Name}, Hosts: o.Hosts, Emails: o.Emails, URIs: o.URIs,
		Days: o.Days, TTL: o.TTL, PublicKey: keys[0].Public(), NotBefore: o.notBefore, NotAfter: o.notAfter,
	}
	return ca.issueAndRecord(o.Dir, req, recordOpts{name: o.Name, key: keys[0], force: o.Force}, o.Now)
}

// recordOpts says how [CA.issueAndRecord] writes and records a leaf.
type recordOpts struct {
	name  string        // the file name under issued/
	key   crypto.Signer // written as issued/NAME.key; nil when the key is not ours
	force bool          // replace issued/NAME.crt (and .key)
	// check runs on the inventory under the lock before anything is
	// written; its error stops the issuance.
	check func(*Inventory) error
	// update runs on the inventory under the lock after the new record is
	// added, before the inventory is written.
	update func(*Inventory, Record)
}

// issueAndRecord signs req, writes the certificate (and key, when not nil)
// under issued/ and appends the record to the inventory, all under the
// directory lock. When the inventory cannot be written, the new files are
// removed again.
func (ca *CA) issueAndRecord(d Dir, req LeafRequest, o recordOpts, now time.Time) (*Issued, error) {
	cert, err := ca.Sign(req, now)
	if err != nil {
		return nil, err
	}
	unlock, err := d.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	inv, err := d.LoadInventory()
	if err != nil {
		return nil, err
	}
	if o.check != nil {
		if err := o.check(inv); err != nil {
			return nil, err
		}
	}
	name := o.name
	if err := os.MkdirAll(filepath.Dir(d.IssuedCert(name)), DirMode); err != nil {
		return nil, fmt.Errorf("create %s: %w", filepath.Dir(d.IssuedCert(name)), err)
	}
	out := &Issued{Cert: cert, CertFile: d.IssuedCert(name), Chain: ca.leafPEM(cert)}
	files := []pendingFile{{out.CertFile, out.Chain, CertMode}}
	if o.key != nil {
		pemKey, err := MarshalKey(o.key, nil)
		if err != nil {
			return nil, err
		}
		out.KeyFile = d.IssuedKey(name)
		files = append([]pendingFile{{out.KeyFile, pemKey, KeyMode}}, files...)
	}
	rel, _ := filepath.Rel(string(d), out.CertFile)
	out.Record = NewRecord(name, string(req.Profile), rel, cert, ca.Cert)
	inv.Certificates = append(inv.Certificates, out.Record)
	if o.update != nil {
		o.update(inv, out.Record)
	}
	invData, err := inv.encode()
	if err != nil {
		return nil, err
	}
	if err := writeAll(files, o.force); err != nil {
		return nil, err
	}
	if err := WriteFileAtomic(d.Inventory(), invData, CertMode, true); err != nil {
		if !o.force {
			for _, f := range files {
				os.Remove(f.path)
			}
		}
		return nil, err
	}
	return out, nil
}
