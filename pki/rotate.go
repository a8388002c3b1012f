package pki

import (
	"cmp"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// RotateOptions configures [Rotate].
type RotateOptions struct {
	Dir Dir
	// Root makes a new root as well as a new intermediate. The old roots
	// stay in ca.crt beside the new one, so that peers of both
	// generations keep working, until [Retire] removes them.
	Root bool
	// KeyType of the new CA keys; "" means the type of the current issuing
	// CA's key.
	KeyType KeyType
	// Passphrase decrypts the root key (and the keys moved aside) and
	// encrypts the new CA keys; "" leaves them unencrypted.
	Passphrase []byte
	// Constraints, when not nil, replace the name constraints of the new
	// intermediate (and, with ConstrainRoot, of a new root); nil keeps
	// those of the current ones.
	Constraints   *NameConstraints
	ConstrainRoot bool
	CRLDays       int // lifetime of the new intermediate's CRL; 0 means DefaultCRLDays
	RootCRLDays   int // lifetime of a new root's CRL; 0 means DefaultRootCRLDays
	Now           time.Time
}

// Rotated says what [Rotate] did.
type Rotated struct {
	Intermediate *x509.Certificate // the new issuing CA
	Root         *x509.Certificate // its root: new with Root, else the current one
	// Replaced is the intermediate (or, in a flat PKI, the CA) that no
	// longer issues; it stays valid, and its CRL is re-signed, until it
	// expires or its root is retired.
	Replaced *x509.Certificate
	Roots    []*x509.Certificate // ca.crt after the rotation, the current root first
	Files    []string            // every file written, in order
}

// Rotate replaces the issuing CA. Without Root the current root signs a new
// intermediate: new leaves come from it, leaves of the old one stay valid
// until they expire or are renewed, and nothing needs to be given to peers,
// which trust the root. The root key must be present. With Root a new root
// and intermediate are made and ca.crt holds the new root and the old
// ones; peers pick up the bundle, and [Retire] later drops the old root.
// A flat PKI becomes a hierarchy that way; its CA keeps signing the CRL of
// its leaves until it is retired.
//
// Rotate does not wait for the directory lock: when another command holds
// it, it fails with ErrLocked. Nothing is written when any check fails.
func Rotate(ctx context.Context, o RotateOptions) (*Rotated, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.KeyType != "" {
		if _, err := ParseKeyType(string(o.KeyType)); err != nil {
			return nil, err
		}
	}
	d := o.Dir
	unlock, err := d.tryLock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	a, err := loadAuthority(d)
	if err != nil {
		return nil, err
	}
	if !a.hierarchy() && !o.Root {
		return nil, fmt.Errorf("%s is a flat PKI: its CA signs leaves itself and cannot sign an intermediate; a new root and intermediate beside it (--root) make it a hierarchy", string(d))
	}
	r := &rotation{o: o, a: a, out: &Rotated{Replaced: a.issuing}}
	if err := r.plan(ctx); err != nil {
		return nil, err
	}
	if err := r.write(); err != nil {
		return nil, err
	}
	return r.out, nil
}

// rotation is one Rotate in progress.
type rotation struct {
	o     RotateOptions
	a     *authority
	out   *Rotated
	root  *CA // the root of the new intermediate
	inter *CA
	files []pendingFile
}

// plan makes the new CAs and every file to write, in memory.
func (r *rotation) plan(ctx context.Context) error {
	o, a := r.o, r.a
	kt := o.KeyType
	if kt == "" {
		var err error
		if kt, err = KeyTypeOf(a.issuing.PublicKey); err != nil {
			return fmt.Errorf("the current issuing CA's key: %w: give a key type", err)
		}
	}
	nc, rootNC := ConstraintsOf(a.issuing), ConstraintsOf(a.currentRoot())
	if o.Constraints != nil {
		nc, rootNC = *o.Constraints, NameConstraints{}
		if o.ConstrainRoot {
			rootNC = *o.Constraints
		}
	}
	// Load what the rotation needs before generating keys.
	if !o.Root {
		var err error
		if r.root, err = a.loadCA(a.currentRoot(), o.Passphrase, o.Now, "sign a new intermediate"); err != nil {
			return err
		}
	}
	inv, b, err := a.readState()
	if err != nil {
		return err
	}
	nkeys := 1
	if o.Root {
		nkeys = 2
	}
	keys, err := generateKeys(ctx, kt, nkeys)
	if err != nil {
		return err
	}
	if o.Root {
		if r.root, err = NewRoot(keys[1], rootNC, o.Now); err != nil {
			return err
		}
		st, err := o.Dir.LoadSettings()
		if err != nil {
			return err
		}
		r.root.CRLURL = st.CRLURL
	}
	if r.inter, err = r.root.NewIntermediate(keys[0], nc, o.Now); err != nil {
		return err
	}
	r.out.Intermediate, r.out.Root = r.inter.Cert, r.root.Cert
	return r.planFiles(inv, b, keys)
}

// planFiles lists the files of the rotation: the replaced CAs' keys and
// certificates moved under retired/, the new CAs, the bundles, crl.pem
// with an empty CRL of each new CA, and the inventory.
func (r *rotation) planFiles(inv *Inventory, b *crlBundle, keys []crypto.Signer) error {
	o, a, d := r.o, r.a, r.o.Dir
	var moved []*x509.Certificate // CAs whose key file moves under retired/
	if a.hierarchy() {
		moved = append(moved, a.issuing)
	}
	if o.Root {
		moved = append(moved, a.currentRoot())
	}
	for _, c := range moved {
		if err := r.retireFiles(inv, c); err != nil {
			return err
		}
	}
	roots := a.roots
	if o.Root {
		roots = append([]*x509.Certificate{r.root.Cert}, a.roots...)
	}
	r.out.Roots = roots
	inters := append([]*x509.Certificate{r.inter.Cert}, a.intermediates...)
	interKey, err := MarshalKey(keys[0], o.Passphrase)
	if err != nil {
		return err
	}
	r.files = append(r.files, pendingFile{d.IntermediateKey(), interKey, KeyMode}, pendingFile{d.IntermediateCert(), PEMCert(r.inter.Cert.Raw), CertMode})
	inv.Certificates = append(inv.Certificates, NewRecord(caName(KindIntermediate, r.inter.Cert), KindIntermediate, "intermediate.crt", r.inter.Cert, r.root.Cert))
	if o.Root {
		rootKey, err := MarshalKey(keys[1], o.Passphrase)
		if err != nil {
			return err
		}
		r.files = append(r.files, pendingFile{d.CAKey(), rootKey, KeyMode})
		inv.Certificates = append(inv.Certificates, NewRecord(caName(KindRoot, r.root.Cert), KindRoot, "ca.crt", r.root.Cert, nil))
	}
	rl, err := r.inter.nextCRL(inv, nil, o.CRLDays, o.Now)
	if err != nil {
		return err
	}
	b.set(r.inter.Cert, rl)
	if o.Root {
		if rl, err = r.root.nextCRL(inv, nil, cmp.Or(o.RootCRLDays, DefaultRootCRLDays), o.Now); err != nil {
			return err
		}
		b.set(r.root.Cert, rl)
	}
	invData, err := inv.encode()
	if err != nil {
		return err
	}
	cas := append(slices.Clone(inters), roots...)
	// The bundles before crl.pem: a server that reloads in between keeps
	// its previous state, and takes up the next complete one.
	r.files = append(r.files,
		pendingFile{d.Inventory(), invData, CertMode},
		pendingFile{d.CACert(), pemCerts(roots), CertMode},
		pendingFile{d.Intermediates(), pemCerts(inters), CertMode},
		pendingFile{d.CRL(), b.encode(cas), CertMode},
	)
	return nil
}

// retireFiles plans the move of the CA c's certificate and key (when
// present) to retired/SERIAL.crt and .key, and points its record there.
func (r *rotation) retireFiles(inv *Inventory, c *x509.Certificate) error {
	d := r.o.Dir
	serial := SerialHex(c)
	r.files = append(r.files, pendingFile{d.RetiredCert(serial), PEMCert(c.Raw), CertMode})
	if path := r.a.keyPath(c); exists(path) {
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		r.files = append(r.files, pendingFile{d.RetiredKey(serial), data, KeyMode})
	}
	if rec := inv.Find(serial); rec != nil && !isRoot(c) {
		rec.File = relPath(string(d), d.RetiredCert(serial))
	}
	return nil
}

// write writes the files, putting everything back when one fails.
func (r *rotation) write() error {
	dir := filepath.Dir(r.o.Dir.RetiredCert("x"))
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := replaceFiles(r.files); err != nil {
		return err
	}
	for _, f := range r.files {
		r.out.Files = append(r.out.Files, f.path)
	}
	return nil
}

// RetireOptions configures [Retire].
type RetireOptions struct {
	Dir Dir
	// Fingerprint selects the root: its SHA-256 fingerprint in hex, with
	// or without colons, or a unique prefix of at least 8 digits.
	Fingerprint string
	Now         time.Time
}

// Retired says what [Retire] did.
type Retired struct {
	Root    *x509.Certificate
	CAs     []*x509.Certificate // the root and the intermediates it signed
	Records []Record            // every inventory record marked retired
	Roots   []*x509.Certificate // ca.crt after
	Files   []string
	// Stale are the certificate files of the directory (server.crt,
	// client.crt, issued/) still of the retired generation: peers refuse
	// them from now on, so they need renewing.
	Stale []string
}

// ErrUnknownRoot means no root of ca.crt has the fingerprint asked for.
var ErrUnknownRoot = errors.New("pki: no such root")

// Retire removes an old root from the trust bundle after a root rotation:
// the root leaves ca.crt, its intermediates leave intermediates.pem,
// their CRLs leave crl.pem, and their inventory records and every leaf
// they signed are marked retired. Once peers have reloaded the bundle, a
// certificate of that generation is refused everywhere. It refuses the
// only root and the current one (the root of the issuing intermediate),
// and, like Rotate, a lock held by another command.
func Retire(ctx context.Context, o RetireOptions) (*Retired, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	d := o.Dir
	unlock, err := d.tryLock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	a, err := loadAuthority(d)
	if err != nil {
		return nil, err
	}
	root, err := a.rootByFingerprint(o.Fingerprint)
	if err != nil {
		return nil, err
	}
	switch {
	case len(a.roots) == 1:
		return nil, fmt.Errorf("%s is the only root of %s: retiring it would leave nothing to trust", root.Subject, d.CACert())
	case root.Equal(a.currentRoot()):
		return nil, fmt.Errorf("%s is the current root, which signs the issuing CA: rotate to a new root first", root.Subject)
	}
	out := &Retired{Root: root, CAs: []*x509.Certificate{root}}
	for _, c := range a.intermediates {
		if a.issuerOf(c).Equal(root) {
			out.CAs = append(out.CAs, c)
		}
	}
	inv, b, err := a.readState()
	if err != nil {
		return nil, err
	}
	gone := map[string]bool{}
	for _, c := range out.CAs {
		gone[SerialHex(c)] = true
		b.remove(c)
	}
	t := o.Now.UTC().Truncate(time.Second)
	for i := range inv.Certificates {
		rec := &inv.Certificates[i]
		issuer := rec.Issuer
		if issuer == "" && !rec.IsCA() {
			if ca := inv.flatCA(); ca != nil {
				issuer = ca.Serial
			}
		}
		if (gone[rec.Serial] || gone[issuer]) && rec.RetiredAt == nil {
			rec.RetiredAt = &t
			out.Records = append(out.Records, *rec)
		}
	}
	out.Roots = slices.DeleteFunc(slices.Clone(a.roots), root.Equal)
	inters := slices.DeleteFunc(slices.Clone(a.intermediates), func(c *x509.Certificate) bool { return gone[SerialHex(c)] })
	invData, err := inv.encode()
	if err != nil {
		return nil, err
	}
	files := []pendingFile{
		{d.Inventory(), invData, CertMode},
		{d.CACert(), pemCerts(out.Roots), CertMode},
		{d.Intermediates(), pemCerts(inters), CertMode},
		{d.CRL(), b.encode(append(slices.Clone(inters), out.Roots...)), CertMode},
	}
	if err := replaceFiles(files); err != nil {
		return nil, err
	}
	for _, f := range files {
		out.Files = append(out.Files, f.path)
	}
	for _, r := range out.Records {
		if r.IsCA() || r.ReplacedBy != "" || r.RevokedAt != nil || o.Now.After(r.NotAfter) {
			continue
		}
		path := r.File
		if !filepath.IsAbs(path) {
			path = d.Path(path)
		}
		if c, err := LoadCert(path); err == nil && SerialHex(c) == r.Serial {
			out.Stale = append(out.Stale, path)
		}
	}
	return out, nil
}

// rootByFingerprint finds the root of ca.crt with the SHA-256 fingerprint
// fp (or a unique prefix of at least 8 hex digits).
func (a *authority) rootByFingerprint(fp string) (*x509.Certificate, error) {
	want := strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(strings.TrimSpace(fp)))
	if len(want) < 8 || strings.Trim(want, "0123456789abcdef") != "" {
		return nil, fmt.Errorf("invalid fingerprint %q: give the root's SHA-256 fingerprint in hex (at least 8 digits), as 'pki inspect %s' prints it", fp, a.dir.CACert())
	}
	var found []*x509.Certificate
	var have []string
	for _, c := range a.roots {
		f := strings.ToLower(strings.ReplaceAll(Fingerprint(c.Raw), ":", ""))
		have = append(have, fmt.Sprintf("%s (%s)", f[:16], c.Subject.CommonName))
		if strings.HasPrefix(f, want) {
			found = append(found, c)
		}
	}
	switch len(found) {
	case 0:
		return nil, errorOf(ErrUnknownRoot, "no root of %s has the fingerprint %s; its roots are %s", a.dir.CACert(), fp, strings.Join(have, ", "))
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("fingerprint %s matches %d roots: give more digits", fp, len(found))
}
