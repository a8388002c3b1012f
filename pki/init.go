package pki

import (
	"cmp"
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultHosts returns the server SANs used when none are given: localhost,
// 127.0.0.1, ::1 and the machine's host name.
func DefaultHosts() []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" && IsHostName(h) {
		hosts = append(hosts, h)
	}
	return hosts
}

// InitOptions configures [Init].
type InitOptions struct {
	Dir        Dir
	SelfSigned bool     // the original project's mode: no CA, each side pins the other
	Flat       bool     // one CA that signs the leaves itself, as before the hierarchy
	Hosts      []string // server SANs; nil means DefaultHosts() (those the constraints permit)
	Client     string   // client common name; "" means "client"
	KeyType    KeyType  // "" means RSA2048
	Passphrase []byte   // when set, the CA keys are encrypted with it
	Force      bool     // replace an existing PKI
	CRLDays    int      // lifetime of the CRL of the CA that signs leaves; 0 means DefaultCRLDays
	// RootCRLDays is the lifetime of the root's CRL in a hierarchy; 0
	// means DefaultRootCRLDays.
	RootCRLDays int
	// Constraints go on the intermediate (critical name constraints);
	// with ConstrainRoot on the root too (and on a flat CA).
	Constraints   NameConstraints
	ConstrainRoot bool
	// CRLURL, when set, is the base URL of the CRL distribution point put
	// in every certificate the CAs sign (see [Settings]); kept in
	// settings.json.
	CRLURL string
	Now    time.Time
}

// InitResult says what [Init] created.
type InitResult struct {
	Mode         Mode
	Files        []string          // every file written, in order
	CA           *x509.Certificate // the root (the flat CA)
	Intermediate *x509.Certificate // the issuing intermediate; nil when flat
	Server       *x509.Certificate
	Client       *x509.Certificate
	CRL          *x509.RevocationList // the CRL of the CA that signs leaves
	RootCRL      *x509.RevocationList // the root's CRL; nil when flat
}

// Init creates a PKI in opts.Dir. By default: a root CA, an issuing
// intermediate it signs, a server and a client certificate the
// intermediate signs, an empty signed CRL for each CA and the inventory.
// Flat: one CA signs the leaves. Self-signed: a self-signed server and
// client certificate. It refuses to replace an existing PKI unless
// opts.Force is set. All keys and certificates are made in memory first,
// so a failure leaves the directory as it was.
func Init(ctx context.Context, opts InitOptions) (*InitResult, error) {
	if err := checkInit(&opts); err != nil {
		return nil, err
	}
	d := opts.Dir
	if err := ensureDir(string(d)); err != nil {
		return nil, err
	}
	unlock, err := d.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()

	nkeys := 4
	switch {
	case opts.SelfSigned:
		nkeys = 2
	case opts.Flat:
		nkeys = 3
	}
	keys, err := generateKeys(ctx, opts.KeyType, nkeys)
	if err != nil {
		return nil, err
	}
	res := &InitResult{Mode: ModeCA}
	var files []pendingFile
	var chain []byte // what follows each leaf in its file
	switch {
	case opts.SelfSigned:
		res.Mode = ModeSelfSigned
		err = initSelfSigned(opts, keys, res)
	case opts.Flat:
		files, err = initFlat(opts, keys, res)
	default:
		files, err = initHierarchy(opts, keys, res)
		chain = PEMCert(res.Intermediate.Raw)
	}
	if err != nil {
		return nil, err
	}
	leaves, err := leafFiles(d, res, keys[0], keys[1], chain)
	if err != nil {
		return nil, err
	}
	files = append(files, leaves...)
	if opts.CRLURL != "" {
		data, err := json.MarshalIndent(Settings{CRLURL: opts.CRLURL}, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("encode settings: %w", err)
		}
		files = append(files, pendingFile{d.SettingsFile(), append(data, '\n'), CertMode})
	}
	if err := writeAll(files, opts.Force); err != nil {
		return nil, err
	}
	if err := removeStale(d, opts); err != nil {
		return nil, err
	}
	for _, f := range files {
		res.Files = append(res.Files, f.path)
	}
	return res, nil
}

// removeStale removes the files of a replaced PKI that the new layout does
// not have: a CA left behind by a self-signed PKI would make Mode report CA
// mode and the server trust the old CA; an intermediate left behind by a
// flat PKI would make the directory a hierarchy again.
func removeStale(d Dir, opts InitOptions) error {
	var stale []string
	if opts.SelfSigned {
		stale = append(stale, d.CACert(), d.CAKey(), d.CRL(), d.Inventory(), d.Tokens())
	}
	if opts.CRLURL == "" {
		stale = append(stale, d.SettingsFile())
	}
	if opts.SelfSigned || opts.Flat {
		stale = append(stale, d.IntermediateCert(), d.IntermediateKey(), d.Intermediates())
	}
	for _, p := range stale {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove old %s: %w", p, err)
		}
	}
	if opts.Force {
		// The CAs a rotation of the replaced PKI retired are no CAs of this one.
		if err := os.RemoveAll(filepath.Dir(d.RetiredCert("x"))); err != nil {
			return fmt.Errorf("remove the retired CAs of the old PKI: %w", err)
		}
	}
	return nil
}

// checkInit fills in the defaults of opts and checks them and the
// directory, before anything is generated or written.
func checkInit(opts *InitOptions) error {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.SelfSigned && (opts.Flat || !opts.Constraints.Empty() || opts.CRLURL != "") {
		return errors.New("self-signed mode has no CA: --flat, name constraints and a CRL URL need a CA")
	}
	if err := CheckCRLURL(opts.CRLURL); err != nil {
		return err
	}
	if opts.Hosts == nil {
		for _, h := range DefaultHosts() {
			if opts.Constraints.Permits(h) {
				opts.Hosts = append(opts.Hosts, h)
			}
		}
		if len(opts.Hosts) == 0 {
			return errorOf(ErrNameNotPermitted, "none of the default server names (%s) is within the name constraints: give the server's names", strings.Join(DefaultHosts(), ", "))
		}
	}
	for _, h := range opts.Hosts {
		if !IsHostName(h) {
			return fmt.Errorf("invalid host %q: use a DNS name or an IP address", h)
		}
		if !opts.Constraints.Permits(h) {
			return errorOf(ErrNameNotPermitted, "server name %s is outside the name constraints (%s)", h, strings.Join(opts.Constraints.Strings(), ", "))
		}
	}
	if opts.Client == "" {
		opts.Client = "client"
	}
	if _, err := ParseKeyType(string(opts.KeyType)); err != nil {
		return err
	}
	if opts.SelfSigned && len(opts.Passphrase) > 0 {
		return errors.New("a passphrase protects the CA key, and self-signed mode has no CA")
	}
	d := opts.Dir
	if fi, err := os.Stat(string(d)); err == nil && !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", string(d))
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cannot use directory %s: %w", string(d), err)
	}
	if !opts.Force {
		if m, err := d.Mode(); err == nil {
			return errorOf(fs.ErrExist, "%s already holds a %s PKI", string(d), m)
		}
	}
	return nil
}

// leafRequests are the server's and the default client's certificates.
func leafRequests(opts InitOptions) (server, client LeafRequest) {
	server = LeafRequest{Profile: ProfileServer, Subject: pkix.Name{CommonName: "kvsctl server"}, Hosts: opts.Hosts}
	client = LeafRequest{Profile: ProfileClient, Subject: pkix.Name{CommonName: opts.Client}}
	return server, client
}

// initSelfSigned makes the self-signed server and client certificates.
func initSelfSigned(opts InitOptions, keys []crypto.Signer, res *InitResult) error {
	serverReq, clientReq := leafRequests(opts)
	var err error
	if res.Server, err = SelfSign(serverReq, keys[0], opts.Now); err != nil {
		return err
	}
	res.Client, err = SelfSign(clientReq, keys[1], opts.Now)
	return err
}

// initFlat makes a flat CA (with keys[2]), has it sign the server and
// client certificates, and returns the CA's files: its key and
// certificate, the empty CRL and the inventory.
func initFlat(opts InitOptions, keys []crypto.Signer, res *InitResult) ([]pendingFile, error) {
	d := opts.Dir
	ca, err := NewCA("kvsctl CA", keys[2], opts.Now)
	if err != nil {
		return nil, err
	}
	if opts.ConstrainRoot && !opts.Constraints.Empty() {
		if ca, err = newCA(caSpec{name: "kvsctl CA", org: "kvsctl local CA", life: CAValidity, nc: opts.Constraints}, keys[2], nil, opts.Now); err != nil {
			return nil, err
		}
	}
	res.CA = ca.Cert
	ca.CRLURL = opts.CRLURL
	if err := signInitLeaves(opts, ca, keys, res); err != nil {
		return nil, err
	}
	inv := &Inventory{CRLNumber: 1, Certificates: []Record{
		NewRecord("ca", KindFlatCA, "ca.crt", ca.Cert, nil),
		NewRecord("server", "server", "server.crt", res.Server, ca.Cert),
		NewRecord("client", "client", "client.crt", res.Client, ca.Cert),
	}}
	crlPEM, err := ca.SignCRL(inv.CRLNumber, nil, opts.Now, opts.CRLDays)
	if err != nil {
		return nil, err
	}
	if res.CRL, err = ParseCRL(crlPEM); err != nil {
		return nil, err
	}
	caKey, err := MarshalKey(keys[2], opts.Passphrase)
	if err != nil {
		return nil, err
	}
	invData, err := inv.encode()
	if err != nil {
		return nil, err
	}
	return []pendingFile{
		{d.CAKey(), caKey, KeyMode},
		{d.CACert(), PEMCert(ca.Cert.Raw), CertMode},
		{d.CRL(), crlPEM, CertMode},
		{d.Inventory(), invData, CertMode},
	}, nil
}

// initHierarchy makes the root (keys[2]) and the issuing intermediate
// (keys[3]), has the intermediate sign the server and client
// certificates, and returns the CAs' files: keys, certificates, the
// intermediates bundle, both empty CRLs in crl.pem and the inventory.
func initHierarchy(opts InitOptions, keys []crypto.Signer, res *InitResult) ([]pendingFile, error) {
	d := opts.Dir
	var rootNC NameConstraints
	if opts.ConstrainRoot {
		rootNC = opts.Constraints
	}
	root, err := NewRoot(keys[2], rootNC, opts.Now)
	if err != nil {
		return nil, err
	}
	root.CRLURL = opts.CRLURL
	inter, err := root.NewIntermediate(keys[3], opts.Constraints, opts.Now)
	if err != nil {
		return nil, err
	}
	inter.CRLURL = opts.CRLURL
	res.CA, res.Intermediate = root.Cert, inter.Cert
	if err := signInitLeaves(opts, inter, keys, res); err != nil {
		return nil, err
	}
	inv := &Inventory{Certificates: []Record{
		NewRecord(caName(KindRoot, root.Cert), KindRoot, "ca.crt", root.Cert, nil),
		NewRecord(caName(KindIntermediate, inter.Cert), KindIntermediate, "intermediate.crt", inter.Cert, root.Cert),
		NewRecord("server", "server", "server.crt", res.Server, inter.Cert),
		NewRecord("client", "client", "client.crt", res.Client, inter.Cert),
	}}
	b := &crlBundle{path: d.CRL()}
	rootDays := cmp.Or(opts.RootCRLDays, DefaultRootCRLDays)
	if res.CRL, err = inter.nextCRL(inv, nil, opts.CRLDays, opts.Now); err != nil {
		return nil, err
	}
	if res.RootCRL, err = root.nextCRL(inv, nil, rootDays, opts.Now); err != nil {
		return nil, err
	}
	b.set(inter.Cert, res.CRL)
	b.set(root.Cert, res.RootCRL)
	var keyFiles [2][]byte
	for i, k := range []crypto.Signer{keys[2], keys[3]} {
		if keyFiles[i], err = MarshalKey(k, opts.Passphrase); err != nil {
			return nil, err
		}
	}
	invData, err := inv.encode()
	if err != nil {
		return nil, err
	}
	return []pendingFile{
		{d.CAKey(), keyFiles[0], KeyMode},
		{d.CACert(), PEMCert(root.Cert.Raw), CertMode},
		{d.IntermediateKey(), keyFiles[1], KeyMode},
		{d.IntermediateCert(), PEMCert(inter.Cert.Raw), CertMode},
		{d.Intermediates(), PEMCert(inter.Cert.Raw), CertMode},
		{d.CRL(), b.encode([]*x509.Certificate{inter.Cert, root.Cert}), CertMode},
		{d.Inventory(), invData, CertMode},
	}, nil
}

// signInitLeaves has ca sign the server (keys[0]) and client (keys[1])
// certificates.
func signInitLeaves(opts InitOptions, ca *CA, keys []crypto.Signer, res *InitResult) error {
	serverReq, clientReq := leafRequests(opts)
	serverReq.PublicKey, clientReq.PublicKey = keys[0].Public(), keys[1].Public()
	var err error
	if res.Server, err = ca.Sign(serverReq, opts.Now); err != nil {
		return err
	}
	res.Client, err = ca.Sign(clientReq, opts.Now)
	return err
}

// leafFiles are the key and certificate files of the server and the
// client; chain follows each certificate in its file.
func leafFiles(d Dir, res *InitResult, serverKey, clientKey crypto.Signer, chain []byte) ([]pendingFile, error) {
	var files []pendingFile
	for _, leaf := range []struct {
		cert      *x509.Certificate
		key       crypto.Signer
		crt, keyf string
	}{
		{res.Server, serverKey, d.ServerCert(), d.ServerKey()},
		{res.Client, clientKey, d.ClientCert(), d.ClientKey()},
	} {
		pemKey, err := MarshalKey(leaf.key, nil)
		if err != nil {
			return nil, fmt.Errorf("encode the key of %s: %w", leaf.crt, err)
		}
		crt := append(PEMCert(leaf.cert.Raw), chain...)
		files = append(files, pendingFile{leaf.keyf, pemKey, KeyMode}, pendingFile{leaf.crt, crt, CertMode})
	}
	return files, nil
}

// generateKeys makes n keys of type t in parallel: RSA generation dominates
// the time of init, and the machine has more than one core.
func generateKeys(ctx context.Context, t KeyType, n int) ([]crypto.Signer, error) {
	type result struct {
		i   int
		key crypto.Signer
		err error
	}
	ch := make(chan result, n)
	for i := range n {
		go func() {
			k, err := GenerateKey(t)
			ch <- result{i, k, err}
		}()
	}
	keys := make([]crypto.Signer, n)
	for range n {
		select {
		case r := <-ch:
			if r.err != nil {
				return nil, fmt.Errorf("generate %s key: %w", t, r.err)
			}
			keys[r.i] = r.key
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return keys, nil
}
