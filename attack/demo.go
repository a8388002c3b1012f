package attack

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/bolt"
	"github.com/kvsctl/kvsctl/kvs/postgres"
	"github.com/kvsctl/kvsctl/kvs/server"
	"github.com/kvsctl/kvsctl/kvs/stores"
	"github.com/kvsctl/kvsctl/pki"
	"github.com/kvsctl/kvsctl/pki/caserver"
)

// DemoOptions configures [Demo].
type DemoOptions struct {
	// Store is "" for a bbolt file in the temporary directory, or a
	// postgres:// URL: the demo then works in a schema of its own, created
	// for the run and dropped after it.
	Store     string
	Scenarios []string       // names; empty means all
	Progress  func(Progress) // nil: no progress
}

// weakening replaces parts of the demo's set-up to build a deliberately
// weakened deployment, so that tests can show that each check can fail:
// with a weakening applied, the scenarios the weakened check used to stop
// must be reported as succeeded. Only the tests of this package make one.
type weakening struct {
	// server alters the server's configuration before it starts (for
	// example, dropping the policy or the CRL).
	server func(*server.Config)
	// serve, when set, serves srv on ln instead of srv.Run, reporting
	// each handshake to onHandshake (for example, with a TLS
	// configuration that makes the client certificate optional).
	serve func(ctx context.Context, srv *server.Server, ln net.Listener, onHandshake func(server.HandshakeEvent)) error
	// clientTLS alters the real client's tls.Config (for example,
	// checking the chain but not the host name).
	clientTLS func(*tls.Config)
	// keepRetired makes the server's copies of the second CA's bundles
	// only ever grow: a root the second CA retires stays in the server's
	// bundle, with its intermediates and their last CRLs, as on a server
	// whose operator adds the new roots but never removes the old ones.
	keepRetired bool
	// ca alters the online CA's configuration before it starts.
	ca func(*caserver.Config)
	// caForgets are files of the online CA's directory (tokens.json,
	// crl.pem, inventory.json) that its scenarios put back, after the
	// legitimate change they start with (a token redeemed, a certificate
	// revoked), as they were before it: a CA restored from a backup, or
	// one that loses what it wrote.
	caForgets []func(pki.Dir) string
}

// demoHosts are the names in the demo server's certificate; the real
// client checks the first.
var demoHosts = []string{"localhost", "127.0.0.1"}

// demoConstraints are the name constraints of the demo's intermediate:
// the names the demo's certificates use, and nothing else: localhost and
// the loopback addresses for the server, and the real client's name
// "client" as a DNS name, which san-impersonation spells in a SAN. (An
// e-mail SAN "client" is no address, and Go's verifier refuses one under a
// name-constrained CA, so that scenario spells only the DNS SAN here.)
func demoConstraints() (pki.NameConstraints, error) {
	return pki.ParseNameConstraints([]string{"localhost", "client"}, []string{"127.0.0.0/8", "::1/128"}, nil, nil)
}

// Demo makes a throwaway PKI in a temporary directory, serves a real kvs
// server on 127.0.0.1 with it (and a policy that names the real client but
// not the outsider), and, when an online CA's scenario is selected, an
// online CA on a PKI of its own, runs the scenarios, checks that the store
// holds no key of an attacker, and removes everything it made. The report
// carries, for each scenario, the server's logged reason next to the
// client's error. The error is for a set-up that failed; attacks that
// succeed are in the report.
func Demo(ctx context.Context, o DemoOptions) (*Report, error) {
	return demo(ctx, o, weakening{})
}

func demo(ctx context.Context, o DemoOptions, weak weakening) (rep *Report, err error) {
	list, err := Select(o.Scenarios)
	if err != nil {
		return nil, err
	}
	progress := o.Progress
	if progress == nil {
		progress = func(Progress) {}
	}
	rep = &Report{Mode: "demo", Started: time.Now()}

	tmp, err := os.MkdirTemp("", "kvsctl-attack-")
	if err != nil {
		return nil, fmt.Errorf("create temporary directory: %w", err)
	}
	defer func() {
		if rerr := os.RemoveAll(tmp); rerr != nil && err == nil {
			err = fmt.Errorf("remove %s: %w", tmp, rerr)
		}
	}()
	dir := pki.Dir(filepath.Join(tmp, "certs"))
	nc, err := demoConstraints()
	if err != nil {
		return nil, err
	}
	progress(Progress{Step: fmt.Sprintf("creating a throwaway PKI (root, intermediate constrained to %s, server, client; ECDSA P-256) and a second CA in %s",
		strings.Join(nc.Strings(), ", "), tmp)})
	if _, err := pki.Init(ctx, pki.InitOptions{Dir: dir, Hosts: demoHosts, KeyType: pki.ECDSAP256, Constraints: nc}); err != nil {
		return nil, fmt.Errorf("create the demo PKI: %w", err)
	}
	second := pki.Dir(filepath.Join(tmp, "certs2"))
	if _, err := pki.Init(ctx, pki.InitOptions{Dir: second, Hosts: demoHosts, KeyType: pki.ECDSAP256}); err != nil {
		return nil, fmt.Errorf("create the demo's second CA: %w", err)
	}
	store, storeName, dropSchema, err := openDemoStore(ctx, o.Store, tmp)
	if err != nil {
		return nil, err
	}
	rep.Store = storeName
	defer func() {
		store.Close()
		if dropSchema != nil {
			if derr := dropSchema(); derr != nil && err == nil {
				err = derr
			}
		}
	}()
	// Placeholder address until the server listens.
	e, err := newEnv(dir, "127.0.0.1:0", demoHosts[0], nil)
	if err != nil {
		return nil, err
	}
	e.clientHook, e.second = weak.clientTLS, second
	stop, err := startDemoServer(ctx, e, store, tmp, weak)
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	rep.Server = e.addr
	progress(Progress{Step: fmt.Sprintf("kvs server listening on %s (store: %s; the policy names %q, not %q)", e.addr, storeName, e.client.Leaf.Subject.CommonName, outsiderName)})
	if slices.ContainsFunc(list, func(s Scenario) bool { return s.online }) {
		caDir := pki.Dir(filepath.Join(tmp, "online-ca"))
		var stopCA func() error
		if e.online, stopCA, err = startOnlineCA(ctx, caDir, weak); err != nil {
			return nil, err
		}
		defer func() {
			if serr := stopCA(); serr != nil && err == nil {
				err = serr
			}
		}()
		progress(Progress{Step: fmt.Sprintf("online CA listening on %s (a PKI of its own in %s, which the kvs server does not trust)", e.online.url, caDir)})
	}

	defer e.runCleanup()
	rep.Results = runAll(ctx, e, list, progress)

	progress(Progress{Step: "checking the store for keys written by attackers"})
	rep.StoreCheck = demoStoreCheck(ctx, store, rep.Results)
	applyStoreCheck(rep.Results, rep.StoreCheck.Found)
	rep.Duration = time.Since(rep.Started)
	rep.finish()
	progress(Progress{Step: "stopping the server and removing " + tmp})
	return rep, ctx.Err()
}

// startDemoServer serves store on 127.0.0.1 with the PKI of e and a demo
// policy written into tmp, through server.Run as kvsctl serve does (or as
// the weakening says), observed by e's server log. stop ends it and
// returns its error.
func startDemoServer(ctx context.Context, e *env, store kvs.Store, tmp string, weak weakening) (stop func() error, err error) {
	policyFile := filepath.Join(tmp, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(demoPolicy(e)), 0o600); err != nil {
		return nil, fmt.Errorf("write the demo policy: %w", err)
	}
	files, err := e.dir.ServerFiles()
	if err != nil {
		return nil, err
	}
	// The server trusts two PKIs, each with its intermediates and CRLs.
	trust := &demoTrust{
		main: e.dir, second: e.second, keepRetired: weak.keepRetired,
		ca: filepath.Join(tmp, "ca-bundle.pem"), intermediates: filepath.Join(tmp, "intermediates-bundle.pem"), secondCRL: filepath.Join(tmp, "crl2.pem"),
	}
	if err := trust.write(); err != nil {
		return nil, err
	}
	files.CA, files.Intermediates, files.CRLs = trust.ca, trust.intermediates, []string{e.dir.CRL(), trust.secondCRL}
	e.log = newServerLog()
	cfg := server.Config{Files: files, Store: store, PolicyFile: policyFile, Observer: e.log.observer()}
	if weak.server != nil {
		weak.server(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on 127.0.0.1: %w", err)
	}
	e.addr = ln.Addr().String()
	e.reload = func(context.Context, *tls.Config) error {
		if err := trust.write(); err != nil {
			return err
		}
		return srv.Reload()
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan error, 1)
	go func() {
		if weak.serve != nil {
			served <- weak.serve(sctx, srv, ln, e.log.onHandshake)
			return
		}
		served <- srv.Run(sctx, ln)
	}()
	return func() error {
		cancel()
		if err := <-served; err != nil {
			return fmt.Errorf("demo server: %w", err)
		}
		return nil
	}, nil
}

// demoTrust is the demo server's copy of the trust material of both PKIs:
// a bundle of their roots, a bundle of their intermediates and the second
// PKI's CRLs (the main PKI's crl.pem is served as it is). write makes the
// copies again from the PKIs' files, as an operator hands a server the new
// bundles of a PKI that changed; the demo does it before every reload.
type demoTrust struct {
	main, second                 pki.Dir
	ca, intermediates, secondCRL string
	keepRetired                  bool // see weakening.keepRetired
}

func (t *demoTrust) write() error {
	for _, f := range []struct {
		out      string
		from     []string
		optional bool // a flat PKI has no intermediates.pem
		key      func([]byte) string
	}{
		{t.ca, []string{t.main.CACert(), t.second.CACert()}, false, rawKey},
		{t.intermediates, []string{t.main.Intermediates(), t.second.Intermediates()}, true, rawKey},
		{t.secondCRL, []string{t.second.CRL()}, false, crlIssuerKey},
	} {
		var data []byte
		for _, p := range f.from {
			b, err := os.ReadFile(p)
			if err != nil && !(f.optional && errors.Is(err, fs.ErrNotExist)) {
				return fmt.Errorf("read %s: %w", p, err)
			}
			data = append(data, b...)
		}
		if t.keepRetired {
			if old, err := os.ReadFile(f.out); err == nil {
				data = keepBlocks(old, data, f.key)
			}
		}
		if err := pki.WriteFileAtomic(f.out, data, pki.CertMode, true); err != nil {
			return err
		}
	}
	return nil
}

// keepBlocks appends to cur the PEM blocks of old whose key no block of
// cur has.
func keepBlocks(old, cur []byte, key func([]byte) string) []byte {
	have := map[string]bool{}
	for rest := cur; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		have[key(b.Bytes)] = true
	}
	out := slices.Clone(cur)
	for rest := old; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if !have[key(b.Bytes)] {
			out = append(out, pem.EncodeToMemory(b)...)
		}
	}
	return out
}

// rawKey identifies a certificate by its DER.
func rawKey(der []byte) string { return string(der) }

// crlIssuerKey identifies a CRL by its issuer, so that a CRL is kept
// only for a CA that no longer has one.
func crlIssuerKey(der []byte) string {
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return string(der)
	}
	return string(rl.RawIssuer) + "\x00" + string(rl.AuthorityKeyId)
}

// demoPolicy lets in the real client, and the identities the revocation
// scenarios issue (revocation must stop them on its own); it does not name
// the outsider.
func demoPolicy(e *env) string {
	var b strings.Builder
	b.WriteString("identities:\n")
	fmt.Fprintf(&b, "  %q:\n    prefixes: [\"\"]\n    operations: [read, write, delete, list]\n", e.client.Leaf.Subject.CommonName)
	for _, what := range []string{"revoked", "resumed"} {
		fmt.Fprintf(&b, "  %q:\n    prefixes: [%q]\n    operations: [read, write]\n", e.identity(what), Prefix)
	}
	return b.String()
}

// demoStoreCheck lists every key under Prefix: after a good run there is
// none, because the control deletes its own.
func demoStoreCheck(ctx context.Context, store kvs.Store, results []Result) StoreCheck {
	keys, _, err := store.List(ctx, Prefix, "", 1000)
	if err != nil {
		return StoreCheck{Note: "could not list the store: " + err.Error()}
	}
	sc := StoreCheck{Done: true}
	for _, k := range keys {
		sc.Found = append(sc.Found, k.Key)
	}
	attackers := 0
	for _, r := range results {
		if r.Key != "" {
			attackers++
		}
	}
	if len(sc.Found) == 0 {
		sc.Note = fmt.Sprintf("no key under %s: none of the %d attackers wrote anything", Prefix, attackers)
	} else {
		sc.Note = fmt.Sprintf("%d key(s) under %s written by attackers", len(sc.Found), Prefix)
	}
	return sc
}

// openDemoStore opens the demo's store: a bbolt file in tmp, or a schema of
// its own in PostgreSQL, with the function that drops it.
func openDemoStore(ctx context.Context, rawURL, tmp string) (kvs.Store, string, func() error, error) {
	if rawURL == "" || strings.HasPrefix(rawURL, "bolt:") {
		if rawURL != "" {
			return nil, "", nil, errors.New("the demo makes its own bbolt file: give no --store, or a postgres:// URL")
		}
		s, err := bolt.Open(ctx, filepath.Join(tmp, "kvs.db"), bolt.Options{})
		if err != nil {
			return nil, "", nil, err
		}
		return s, "bolt (temporary file)", nil, nil
	}
	if stores.Kind(rawURL) != "postgres" {
		// Open words the error without echoing the URL.
		_, err := stores.Open(ctx, rawURL, stores.Options{})
		return nil, "", nil, err
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, "", nil, err
	}
	schema := "kvsctl_attack_" + hex.EncodeToString(b[:])
	drop := func() error {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(dctx, rawURL)
		if err != nil {
			return fmt.Errorf("drop the demo schema %s: connect to PostgreSQL failed (run DROP SCHEMA %s CASCADE by hand)", schema, schema)
		}
		defer conn.Close(dctx)
		if _, err := conn.Exec(dctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			return fmt.Errorf("drop the demo schema %s: %w", schema, err)
		}
		return nil
	}
	s, err := postgres.Open(ctx, rawURL, postgres.Options{Schema: schema})
	if err != nil {
		drop()
		return nil, "", nil, err
	}
	name := "postgres " + kvs.RedactURL(rawURL) + ", schema " + schema + " (dropped after)"
	return s, name, drop, nil
}
