package attack

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/kvs/client"
	"github.com/kvsctl/kvsctl/pki"
)

// remoteSaw is the server's side of a scenario run against a remote server,
// whose log this process cannot read.
const remoteSaw = "n/a (remote)"

// scenarioTimeout bounds one scenario, revocation waits aside.
const scenarioTimeout = 30 * time.Second

// observation is what a scenario reports back to the runner.
type observation struct {
	outcome   Outcome
	observed  string
	serverSaw string
	clientSaw string
	wrote     bool
}

func broken(format string, a ...any) observation {
	msg := fmt.Sprintf(format, a...)
	return observation{outcome: Broken, observed: msg, serverSaw: "-", clientSaw: "-"}
}

// env is everything the scenarios need about the deployment under attack.
type env struct {
	addr          string // the server attacked, host:port
	serverName    string // the name the real client checks in the server's certificate
	dir           pki.Dir
	clientTLS     *tls.Config       // the real client's configuration, as kvsctl get and put build it
	client        tls.Certificate   // the real client's certificate and key
	serverRoots   *x509.CertPool    // the roots clients trust for the server
	anchor        *x509.Certificate // the root the server trusts for clients
	serverSubject pkix.Name         // the real server's subject, for impostors
	ca            *pki.CA           // nil when the CA key is not available
	noCA          string            // why ca is nil
	passphrase    []byte
	keyType       pki.KeyType // for attacker keys (the original demo's RSA-2048 aside)
	runID         string
	now           func() time.Time

	// second is the PKI directory of a second CA that the server trusts
	// too (the demo makes one); "" when there is none.
	second pki.Dir
	// log is the demo server's log; nil against a remote server.
	log *serverLog
	// online is the demo's online CA, on a PKI of its own; nil against a
	// remote server, or when no scenario of the run needs it.
	online *onlineCA
	// reload makes the server take up the new CRL after a revocation;
	// probe is a fresh connection with the revoked certificate, which a
	// remote wait uses to see when the server has it.
	reload func(ctx context.Context, probe *tls.Config) error
	// revWait bounds a remote server's take-up of a new CRL.
	revWait time.Duration
	// clientHook alters the real client's tls.Config (tests only).
	clientHook func(*tls.Config)
	// cleanup runs after the scenarios, in reverse order.
	cleanup []func()
}

// newEnv loads the PKI directory's client side, and its CA when the key is
// there and readable.
func newEnv(dir pki.Dir, addr, serverName string, passphrase []byte) (*env, error) {
	if serverName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("server address %q: want host:port", addr)
		}
		serverName = host
	}
	e := &env{addr: addr, serverName: serverName, dir: dir, passphrase: passphrase, keyType: pki.ECDSAP256, now: time.Now}
	files, err := dir.ClientFiles()
	if err != nil {
		return nil, err
	}
	if e.clientTLS, err = files.ClientConfig(pki.TLSOptions{ServerName: serverName}); err != nil {
		return nil, err
	}
	e.client, e.serverRoots = e.clientTLS.Certificates[0], e.clientTLS.RootCAs
	sf, err := dir.ServerFiles()
	if err != nil {
		return nil, err
	}
	anchors, err := pki.LoadCerts(sf.CA)
	if err != nil {
		return nil, fmt.Errorf("load the server's client CA: %w", err)
	}
	e.anchor = anchors[0]
	e.serverSubject = pkix.Name{CommonName: "kvsctl server"}
	if c, err := pki.LoadCert(dir.ServerCert()); err == nil {
		e.serverSubject = c.Subject
	}
	e.ca, err = pki.LoadCA(dir, passphrase, time.Now())
	if err != nil {
		e.noCA = err.Error()
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	e.runID = hex.EncodeToString(b[:])
	return e, nil
}

// serverLeafSubject is the subject an impostor copies.
func (e *env) serverLeafSubject() pkix.Name { return e.serverSubject }

// key is the key a scenario tries to write.
func (e *env) key(scenario string) string { return Prefix + e.runID + "/" + scenario }

// identity is the name (file name and common name) of a certificate the
// run issues into the inventory.
func (e *env) identity(what string) string { return "kvsctl-attack-" + e.runID + "-" + what }

// attackerTLS is the base configuration of an attacker: it presents certs
// and checks the server like the real client does (no attacker here needs
// to skip verification).
func (e *env) attackerTLS(certs ...tls.Certificate) *tls.Config {
	cfg := &tls.Config{
		RootCAs:      e.serverRoots,
		ServerName:   e.serverName,
		Certificates: certs,
		MinVersion:   tls.VersionTLS12,
	}
	if len(certs) > 0 {
		// Present the certificate whatever the server says it accepts: Go's
		// client would otherwise send none when the issuer is not among the
		// server's acceptable CAs, and the server would only see a client
		// without a certificate.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &certs[0], nil
		}
	}
	return cfg
}

// realClient is the real client (the kvs package's, configured as kvsctl
// get and put configure it: HTTP/2 when offered, session resumption on)
// with the real certificate, or with cert when given, pointed at addr.
func (e *env) realClient(addr string, cert *tls.Certificate) (*client.Client, error) {
	cfg := e.clientTLS.Clone()
	// A session cache of its own: a shared one would let a client with
	// another certificate resume the real client's session, and so be
	// served as the real client.
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(16)
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	if e.clientHook != nil {
		e.clientHook(cfg)
	}
	return client.New(client.Config{Server: addr, TLSConfig: cfg, Timeout: attemptTimeout})
}

// serverSide describes what the server saw of an attempt.
func (e *env) serverSide(ctx context.Context, a attempt) string {
	if e.log == nil {
		return remoteSaw
	}
	if a.local == "" {
		return "no connection"
	}
	return e.log.awaitPeer(ctx, a.local, 2*time.Second)
}

// judgeHandshake judges an attempt that the server should refuse during
// the handshake: the attack succeeded if the server answered at HTTP level
// at all, whatever the status, because the TLS layer let the attacker in.
func (e *env) judgeHandshake(ctx context.Context, a attempt) observation {
	o := observation{clientSaw: a.clientSaw(), serverSaw: e.serverSide(ctx, a)}
	switch {
	case a.dialErr != nil:
		o.outcome, o.observed = Broken, "could not connect to the server"
	case a.accepted():
		o.outcome = Succeeded
		o.observed = fmt.Sprintf("handshake accepted (%s); PUT answered %d", tls.VersionName(a.state.Version), a.status)
		o.wrote = a.status/100 == 2
		if o.wrote {
			o.observed += ": written"
		}
	default:
		o.outcome = Refused
		o.observed = "refused at the handshake"
		if !isRemoteAlert(a.handshake) && !isRemoteAlert(a.readErr) {
			o.observed = "connection closed during the handshake"
		}
	}
	return o
}

// runAll runs the scenarios in order and reports progress.
func runAll(ctx context.Context, e *env, list []Scenario, progress func(Progress)) []Result {
	results := make([]Result, 0, len(list))
	for i, s := range list {
		if err := ctx.Err(); err != nil {
			break
		}
		progress(Progress{Index: i + 1, Total: len(list), Scenario: s.Name})
		start := time.Now()
		key := e.key(s.Name)
		var o observation
		if s.NeedsCAKey && e.ca == nil {
			o = observation{outcome: Skipped, observed: "needs the CA key: " + e.noCA, serverSaw: "-", clientSaw: "-"}
		} else {
			sctx, cancel := context.WithTimeout(ctx, scenarioTimeout+e.revocationWait())
			o = s.run(sctx, e, key)
			cancel()
		}
		r := Result{
			Scenario: s.Name, Attacker: s.Attacker, Expected: s.Expected,
			Outcome: o.outcome, Observed: o.observed, ServerSaw: o.serverSaw, ClientSaw: o.clientSaw,
			Wrote: o.wrote, Duration: time.Since(start),
		}
		if !s.Control && o.outcome != Skipped {
			r.Key = key
		}
		results = append(results, r)
		progress(Progress{Index: i + 1, Total: len(list), Scenario: s.Name, Result: &results[len(results)-1]})
	}
	return results
}

// revocationWait is the extra time a scenario may take waiting for a
// remote server to take up a new CRL (twice: the resumption scenario
// revokes once, but the wait may start late).
func (e *env) revocationWait() time.Duration { return 2 * e.revWait }

// applyStoreCheck marks the scenarios whose keys were found in the store as
// succeeded, whatever they observed.
func applyStoreCheck(results []Result, found []string) {
	for _, k := range found {
		for i := range results {
			if results[i].Key == k {
				results[i].Wrote = true
				if results[i].Outcome != Succeeded {
					results[i].Outcome = Succeeded
					results[i].Observed += "; but its key was found in the store"
				}
			}
		}
	}
}

// RunOptions configures [Run].
type RunOptions struct {
	Server     string  // host:port of the running server
	ServerName string  // the name to check in its certificate; "" means the host of Server
	Dir        pki.Dir // the PKI directory: the client's files, and the CA's when present
	Passphrase []byte  // decrypts the CA key
	Scenarios  []string
	// RevocationWait is how long the revocation scenarios wait for the
	// server to take up the new CRL (kvsctl serve polls its files); 0
	// means 30s.
	RevocationWait time.Duration
	Progress       func(Progress) // nil: no progress
}

// Run attacks a running server with the client files of a PKI directory.
// Scenarios that need the CA key run only when the directory holds it (and
// it can be decrypted), and are reported as skipped otherwise. The run
// writes only under [Prefix], deletes what it wrote, and removes the
// certificates it issued for the revocation scenarios (their inventory
// records and CRL entries stay, as an audit trail). The server's log is
// not visible from here: ServerSaw is "n/a (remote)" except for the
// impostor scenarios, whose server is this process.
func Run(ctx context.Context, o RunOptions) (*Report, error) {
	list, err := Select(o.Scenarios)
	if err != nil {
		return nil, err
	}
	if o.Server == "" {
		return nil, errors.New("no server to attack: give its host:port")
	}
	progress := o.Progress
	if progress == nil {
		progress = func(Progress) {}
	}
	e, err := newEnv(o.Dir, o.Server, o.ServerName, o.Passphrase)
	if err != nil {
		return nil, err
	}
	e.revWait = o.RevocationWait
	if e.revWait <= 0 {
		e.revWait = 30 * time.Second
	}
	e.reload = func(ctx context.Context, probe *tls.Config) error {
		progress(Progress{Step: fmt.Sprintf("revoked a certificate; waiting up to %s for the server to take up the new CRL", e.revWait)})
		return awaitRefusal(ctx, e.addr, probe, e.revWait)
	}
	defer e.runCleanup()
	rep := &Report{Mode: "remote", Server: o.Server, Started: time.Now()}
	rep.Results = runAll(ctx, e, list, progress)
	progress(Progress{Step: "checking that no attacker key is on the server"})
	rep.StoreCheck = e.remoteStoreCheck(ctx, rep.Results)
	applyStoreCheck(rep.Results, rep.StoreCheck.Found)
	rep.Duration = time.Since(rep.Started)
	rep.finish()
	return rep, ctx.Err()
}

// awaitRefusal waits until the server refuses a fresh handshake with probe
// (it has taken up the new CRL), or until wait has passed.
func awaitRefusal(ctx context.Context, addr string, probe *tls.Config, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	probe = probe.Clone()
	probe.ClientSessionCache = nil
	for {
		a := tryTLS(ctx, addr, probe, "")
		if a.dialErr != nil {
			return a.dialErr
		}
		if !a.accepted() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the server still accepts the revoked certificate after %s: does it reload its CRL?", wait)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// remoteStoreCheck asks the server, as the real client, for every key an
// attacker tried to write, and deletes any it finds.
func (e *env) remoteStoreCheck(ctx context.Context, results []Result) StoreCheck {
	var keys []string
	for _, r := range results {
		if r.Key != "" {
			keys = append(keys, r.Key)
		}
	}
	if len(keys) == 0 {
		return StoreCheck{Done: true, Note: "no attacker ran"}
	}
	c, err := e.realClient(e.addr, nil)
	if err != nil {
		return StoreCheck{Note: "could not check: " + err.Error()}
	}
	defer c.Close()
	var sc StoreCheck
	var failed []string
	for _, k := range keys {
		_, err := c.Get(ctx, k)
		switch {
		case errors.Is(err, kvs.ErrNotFound):
		case err == nil:
			sc.Found = append(sc.Found, k)
			if derr := c.Delete(ctx, k, kvs.Cond{}); derr != nil {
				failed = append(failed, k)
			}
		default:
			return StoreCheck{Note: "could not check as the real client: " + err.Error()}
		}
	}
	sc.Done = true
	sc.Note = fmt.Sprintf("the real client found %d of %d attacker keys", len(sc.Found), len(keys))
	if len(failed) > 0 {
		sc.Note += "; could not delete " + strings.Join(failed, ", ")
	} else if len(sc.Found) > 0 {
		sc.Note += " (deleted them)"
	}
	return sc
}

func (e *env) runCleanup() {
	for i := len(e.cleanup) - 1; i >= 0; i-- {
		e.cleanup[i]()
	}
}

// removeIssued deletes the files of a certificate the run issued.
func (e *env) removeIssued(name string) {
	e.cleanup = append(e.cleanup, func() {
		os.Remove(e.dir.IssuedCert(name))
		os.Remove(e.dir.IssuedKey(name))
	})
}

// statusText is a status line for the observed column.
func statusText(code int) string { return fmt.Sprintf("%d %s", code, http.StatusText(code)) }
