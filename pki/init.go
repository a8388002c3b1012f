package pki

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"os"
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
	Hosts      []string // server SANs; nil means DefaultHosts()
	Client     string   // client common name; "" means "client"
	KeyType    KeyType  // "" means RSA2048
	Passphrase []byte   // when set, the CA key is encrypted with it
	Force      bool     // replace an existing PKI
	CRLDays    int      // 0 means DefaultCRLDays
	Now        time.Time
}

// InitResult says what [Init] created.
type InitResult struct {
	Mode   Mode
	Files  []string // every file written, in order
	CA     *x509.Certificate
	Server *x509.Certificate
	Client *x509.Certificate
	CRL    *x509.RevocationList
}

// Init creates a PKI in opts.Dir: in CA mode a root CA, a server and a client
// certificate, an empty signed CRL and the inventory; in self-signed mode a
// self-signed server and client certificate. It refuses to replace an
// existing PKI unless opts.Force is set. All keys and certificates are made in
// memory first, so a failure leaves the directory as it was.
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

	nkeys := 3
	if opts.SelfSigned {
		nkeys = 2
	}
	keys, err := generateKeys(ctx, opts.KeyType, nkeys)
	if err != nil {
		return nil, err
	}
	res := &InitResult{Mode: ModeCA}
	var files []pendingFile
	if opts.SelfSigned {
		res.Mode = ModeSelfSigned
		err = initSelfSigned(opts, keys, res)
	} else {
		files, err = initCA(opts, keys, res)
	}
	if err != nil {
		return nil, err
	}
	leaves, err := leafFiles(d, res, keys[0], keys[1])
	if err != nil {
		return nil, err
	}
	files = append(files, leaves...)
	if err := writeAll(files, opts.Force); err != nil {
		return nil, err
	}
	if opts.SelfSigned {
		// A replaced CA-mode PKI must not leave its CA behind: Mode would
		// still report CA mode and the server would trust the old CA.
		for _, p := range []string{d.CACert(), d.CAKey(), d.CRL(), d.Inventory()} {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("remove old %s: %w", p, err)
			}
		}
	}
	for _, f := range files {
		res.Files = append(res.Files, f.path)
	}
	return res, nil
}

// checkInit fills in the defaults of opts and checks them and the
// directory, before anything is generated or written.
func checkInit(opts *InitOptions) error {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.Hosts == nil {
		opts.Hosts = DefaultHosts()
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

// initCA makes the CA (with keys[2]), has it sign the server and client
// certificates, and returns the CA's files: its key and certificate, the
// empty CRL and the inventory.
func initCA(opts InitOptions, keys []crypto.Signer, res *InitResult) ([]pendingFile, error) {
	d := opts.Dir
	ca, err := NewCA("kvsctl CA", keys[2], opts.Now)
	if err != nil {
		return nil, err
	}
	res.CA = ca.Cert
	serverReq, clientReq := leafRequests(opts)
	serverReq.PublicKey, clientReq.PublicKey = keys[0].Public(), keys[1].Public()
	if res.Server, err = ca.Sign(serverReq, opts.Now); err != nil {
		return nil, err
	}
	if res.Client, err = ca.Sign(clientReq, opts.Now); err != nil {
		return nil, err
	}
	inv := &Inventory{CRLNumber: 1, Certificates: []Record{
		NewRecord("ca", "ca", "ca.crt", ca.Cert),
		NewRecord("server", "server", "server.crt", res.Server),
		NewRecord("client", "client", "client.crt", res.Client),
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

// leafFiles are the key and certificate files of the server and the client.
func leafFiles(d Dir, res *InitResult, serverKey, clientKey crypto.Signer) ([]pendingFile, error) {
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
		files = append(files, pendingFile{leaf.keyf, pemKey, KeyMode}, pendingFile{leaf.crt, PEMCert(leaf.cert.Raw), CertMode})
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
