package server

// End-to-end tests of who the server lets in, over real TLS on 127.0.0.1:
// missing, foreign and expired client certificates, revocation picked up
// without a restart (resumed sessions included), a renewed server
// certificate and the fail-closed expired CRL. Each refusal has a control
// in the same setup that is let in, so the test can fail.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/pki"
)

var tlsVersions = []struct {
	name string
	max  uint16
}{{"tls1.2", tls.VersionTLS12}, {"tls1.3", tls.VersionTLS13}}

func TestE2ERefusedClients(t *testing.T) {
	for _, mode := range pkiModes {
		t.Run(mode.name, func(t *testing.T) {
			d := testPKI(t, mode.selfSigned)
			ts := startServer(t, d, nil, nil)
			own := clientFiles(t, d)
			rogue := clientFiles(t, otherPKI(t, mode.selfSigned))
			rogue.CA = own.CA // the rogue trusts our server; our server must not trust it

			past := time.Now().Add(-48 * time.Hour)
			expired := own
			if !mode.selfSigned {
				expired = signClient(t, d, "expired", past, past.Add(24*time.Hour))
			}

			for _, v := range tlsVersions {
				t.Run(v.name, func(t *testing.T) {
					pin := func(c *tls.Config) { c.MaxVersion = v.max }
					ctx := context.Background()
					// Control: the PKI's own client is let in.
					if err := freshClient(t, ts.addr, clientTLS(t, own, pin), false).Ping(ctx); err != nil {
						t.Fatalf("control: own client refused: %v", err)
					}
					noCert := clientTLS(t, own, func(c *tls.Config) { pin(c); c.Certificates = nil })
					expectRejected(t, "no client certificate", freshClient(t, ts.addr, noCert, false).Ping(ctx))
					refusedWith(t, ts, "didn't provide a certificate")

					rogueTLS := clientTLS(t, rogue, func(c *tls.Config) { pin(c); presentAnyway(c) })
					expectRejected(t, "client of another CA", freshClient(t, ts.addr, rogueTLS, false).Ping(ctx))
					refusedWith(t, ts, "unknown authority")

					if !mode.selfSigned {
						expectRejected(t, "expired client", freshClient(t, ts.addr, clientTLS(t, expired, pin), false).Ping(ctx))
						refusedWith(t, ts, "expired")
					}
				})
			}
			if mode.selfSigned {
				// Self-signed mode trusts exactly client.crt: make it an
				// expired one, so that expiry is the only thing wrong.
				writeSelfSignedClient(t, d, past, past.Add(24*time.Hour))
				if err := ts.srv.TLS().Reload(); err != nil {
					t.Fatal(err)
				}
				expectRejected(t, "expired self-signed client", freshClient(t, ts.addr, clientTLS(t, clientFiles(t, d), nil), false).Ping(context.Background()))
				refusedWith(t, ts, "expired")
				// Control: a current one in its place is let in.
				writeSelfSignedClient(t, d, time.Time{}, time.Time{})
				if err := ts.srv.TLS().Reload(); err != nil {
					t.Fatal(err)
				}
				if err := freshClient(t, ts.addr, clientTLS(t, clientFiles(t, d), nil), false).Ping(context.Background()); err != nil {
					t.Fatalf("control: current self-signed client refused: %v", err)
				}
			}
		})
	}
}

// TestE2ERevocation revokes a client certificate with pki.Revoke (what
// 'kvsctl pki revoke' calls) under a running server: the next connection is
// refused once the server has reloaded, by an explicit Reload (SIGHUP) or by
// noticing the new CRL file itself.
func TestE2ERevocation(t *testing.T) {
	for _, how := range []string{"reload", "file-polling"} {
		t.Run(how, func(t *testing.T) {
			d := testPKI(t, false)
			ts := startServer(t, d, nil, func(c *Config) {
				if how == "file-polling" {
					c.ReloadInterval = 20 * time.Millisecond
				}
			})
			ctx := context.Background()
			aliceFiles, alice := issueClient(t, d, "alice")
			c := freshClient(t, ts.addr, clientTLS(t, aliceFiles, nil), false)
			if err := c.Ping(ctx); err != nil {
				t.Fatalf("alice before revocation: %v", err)
			}
			if _, err := pki.Revoke(context.Background(), pki.RevokeOptions{Dir: d, Target: pki.SerialHex(alice.Cert), Reason: "keyCompromise"}); err != nil {
				t.Fatal(err)
			}
			if how == "reload" {
				if err := ts.srv.TLS().Reload(); err != nil {
					t.Fatal(err)
				}
				expectRejected(t, "alice after revocation and reload", c.Ping(ctx))
			} else {
				waitFor(t, 5*time.Second, "the server to refuse alice", func() bool { return c.Ping(ctx) != nil })
				expectRejected(t, "alice after revocation", c.Ping(ctx))
			}
			refusedWith(t, ts, "revoked")
			// Control: the check is about alice only.
			if err := freshClient(t, ts.addr, clientTLS(t, clientFiles(t, d), nil), false).Ping(ctx); err != nil {
				t.Errorf("the default client was refused too: %v", err)
			}
		})
	}
}

// TestE2EResumedSessionRefused checks that a client holding a TLS session
// from before its certificate was revoked (CA mode) or stopped being trusted
// (self-signed mode) cannot resume it. The control run, with nothing
// revoked, asserts that the second connection does resume, so the refusal
// is the server's doing and not a full handshake in disguise.
func TestE2EResumedSessionRefused(t *testing.T) {
	for _, mode := range pkiModes {
		for _, v := range tlsVersions {
			for _, revoke := range []bool{false, true} {
				name := fmt.Sprintf("%s/%s/%s", mode.name, v.name, map[bool]string{false: "control", true: "revoked"}[revoke])
				t.Run(name, func(t *testing.T) {
					d := testPKI(t, mode.selfSigned)
					ts := startServer(t, d, nil, nil)
					files := clientFiles(t, d)
					var resumed atomic.Bool
					cfg := clientTLS(t, files, func(c *tls.Config) {
						c.MaxVersion = v.max
						c.ClientSessionCache = tls.NewLRUClientSessionCache(8)
						c.VerifyConnection = func(cs tls.ConnectionState) error {
							resumed.Store(cs.DidResume)
							return nil
						}
					})
					// HTTP/1.1 without keep-alive: one connection per request.
					c := freshClient(t, ts.addr, cfg, true)
					ctx := context.Background()
					if err := c.Ping(ctx); err != nil {
						t.Fatal(err)
					}
					if resumed.Load() {
						t.Fatal("first connection resumed a session")
					}
					if revoke {
						if mode.selfSigned {
							writeSelfSignedClient(t, d, time.Time{}, time.Time{})
						} else {
							cert, err := pki.LoadCert(files.Cert)
							if err != nil {
								t.Fatal(err)
							}
							if _, err := pki.Revoke(context.Background(), pki.RevokeOptions{Dir: d, Target: pki.SerialHex(cert)}); err != nil {
								t.Fatal(err)
							}
						}
						if err := ts.srv.TLS().Reload(); err != nil {
							t.Fatal(err)
						}
					}
					err := c.Ping(ctx)
					if !revoke {
						if err != nil {
							t.Fatalf("control: second connection: %v", err)
						}
						if !resumed.Load() {
							t.Fatal("control: the second connection did not resume the session, so the revoked run proves nothing")
						}
						return
					}
					expectRejected(t, "resumed session after revocation", err)
					if mode.selfSigned {
						// crypto/tls itself declines to resume a session whose
						// chain no longer verifies against the new roots; the
						// full handshake then refuses the old certificate.
						// kvs re-verifies resumed chains too, in case it did
						// resume.
						waitFor(t, 5*time.Second, "the refusal of the old client", func() bool {
							for _, r := range logRecords(t, ts, "tls handshake refused") {
								reason, _ := r["reason"].(string)
								if strings.Contains(reason, "unknown authority") || strings.Contains(reason, "resumed session no longer valid") {
									return true
								}
							}
							return false
						})
						return
					}
					if v.max == tls.VersionTLS13 && !resumed.Load() {
						// In TLS 1.3 the client sees the resumption before the
						// server's verdict; in TLS 1.2 the alert comes first.
						t.Error("the refused connection was not a resumption attempt")
					}
					refusedWith(t, ts, "revoked")
				})
			}
		}
	}
}

// TestE2ERenewedServerCertificate renews the server certificate under a
// running server that polls its files: a new connection gets the new
// certificate, with no restart.
func TestE2ERenewedServerCertificate(t *testing.T) {
	for _, mode := range pkiModes {
		t.Run(mode.name, func(t *testing.T) {
			d := testPKI(t, mode.selfSigned)
			ts := startServer(t, d, nil, func(c *Config) { c.ReloadInterval = 20 * time.Millisecond })

			// served is the certificate a new connection gets. In
			// self-signed mode the client pins server.crt, so it reads the
			// files anew every time (and fails while the server still
			// serves the old certificate).
			served := func() (*x509.Certificate, error) {
				conn, err := tls.Dial("tcp", ts.addr, clientTLS(t, clientFiles(t, d), nil))
				if err != nil {
					return nil, err
				}
				defer conn.Close()
				return conn.ConnectionState().PeerCertificates[0], nil
			}
			old, err := served()
			if err != nil {
				t.Fatal(err)
			}
			renewed := renewServerCert(t, d)
			if renewed.SerialNumber.Cmp(old.SerialNumber) == 0 {
				t.Fatal("renewal kept the serial")
			}
			waitFor(t, 5*time.Second, "the renewed certificate to be served", func() bool {
				cur, err := served()
				return err == nil && cur.SerialNumber.Cmp(renewed.SerialNumber) == 0
			})
			c := newTestClient(t, d, ts.addr, nil)
			if _, err := c.Put(t.Context(), "after-renewal", []byte("ok"), kvs.Cond{}); err != nil {
				t.Fatalf("put after renewal: %v", err)
			}
		})
	}
}

// renewServerCert renews server.crt in place with pki.Renew (what 'kvsctl
// pki renew' calls), with its key, and returns the new certificate.
func renewServerCert(t *testing.T, d pki.Dir) *x509.Certificate {
	t.Helper()
	r, err := pki.Renew(context.Background(), pki.RenewOptions{Dir: d, CertFile: d.ServerCert(), ReuseKey: true})
	if err != nil {
		t.Fatal(err)
	}
	return r.New
}

// TestE2EExpiredCRL moves the server's clock past the CRL's NextUpdate:
// every client is refused (fail closed) with a loud log line, until the CRL
// is re-signed and reloaded.
func TestE2EExpiredCRL(t *testing.T) {
	d := testPKI(t, false)
	var skew atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	ts := startServer(t, d, nil, func(c *Config) { c.TLS.Now = now })
	c := freshClient(t, ts.addr, clientTLS(t, clientFiles(t, d), nil), false)
	ctx := context.Background()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("control: current CRL: %v", err)
	}
	skew.Store(int64((pki.DefaultCRLDays + 1) * 24 * time.Hour))
	expectRejected(t, "with an expired CRL", c.Ping(ctx))
	refusedWith(t, ts, "failing closed")
	if len(logRecords(t, ts, "refusing every client: the CRL is not current; re-sign it")) == 0 {
		t.Error("no loud log line about the expired CRL")
	}

	if _, err := pki.UpdateCRL(context.Background(), pki.CRLOptions{Dir: d, Passphrase: nil, Days: 30, Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := ts.srv.TLS().Reload(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("after re-signing the CRL: %v", err)
	}
}
