package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// tlsConfigs builds a server and a client crypto/tls configuration from the
// files a PKI directory hands each side (Dir.ServerFiles, Dir.ClientFiles),
// the way kvs does: the server requires and verifies a client certificate.
func tlsConfigs(t *testing.T, d Dir, version uint16) (*tls.Config, *tls.Config) {
	t.Helper()
	sf, err := d.ServerFiles()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := d.ClientFiles()
	if err != nil {
		t.Fatal(err)
	}
	pool := func(path string) *x509.CertPool {
		p := x509.NewCertPool()
		for _, c := range must(LoadCerts(path)) {
			p.AddCert(c)
		}
		return p
	}
	srvCert := must(tls.LoadX509KeyPair(sf.Cert, sf.Key))
	cliCert := must(tls.LoadX509KeyPair(cf.Cert, cf.Key))
	srv := &tls.Config{
		Certificates: []tls.Certificate{srvCert}, ClientCAs: pool(sf.CA), ClientAuth: tls.RequireAndVerifyClientCert,
		MinVersion: version, MaxVersion: version,
	}
	cli := &tls.Config{
		Certificates: []tls.Certificate{cliCert}, RootCAs: pool(cf.CA), ServerName: "127.0.0.1",
		MinVersion: version, MaxVersion: version,
	}
	return srv, cli
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// handshake runs one TLS handshake over a real TCP connection on 127.0.0.1
// and returns the server's and the client's errors, and the version used.
func handshake(t *testing.T, srvConf, cliConf *tls.Config) (version uint16, srvErr, cliErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, srvConf)
		err = tc.Handshake()
		if err == nil {
			// Prove the session carries data both ways.
			_, err = io.WriteString(tc, "pong")
		}
		done <- err
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(conn, cliConf)
	cliErr = tc.Handshake()
	if cliErr == nil {
		buf := make([]byte, 4)
		// With TLS 1.3 the client learns of a rejected certificate on
		// its first read.
		if _, err := io.ReadFull(tc, buf); err != nil {
			cliErr = err
		} else if string(buf) != "pong" {
			cliErr = fmt.Errorf("read %q", buf)
		}
		version = tc.ConnectionState().Version
	}
	return version, <-done, cliErr
}

func TestTLSHandshake(t *testing.T) {
	t.Parallel()
	for _, mode := range []bool{false, true} {
		d := newPKI(t, mode)
		for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			name := fmt.Sprintf("selfsigned=%v/%s", mode, tls.VersionName(version))
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				srv, cli := tlsConfigs(t, d, version)
				got, srvErr, cliErr := handshake(t, srv, cli)
				if srvErr != nil || cliErr != nil {
					t.Fatalf("handshake: server %v, client %v", srvErr, cliErr)
				}
				if got != version {
					t.Errorf("negotiated %s", tls.VersionName(got))
				}
			})
		}
	}
}

// TestTLSHandshakeIssued: leaves made by 'pki issue' (not init) work as the
// server and client certificates.
func TestTLSHandshakeIssued(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newPKI(t, false)
	srvIss, err := Issue(ctx, IssueOptions{Dir: d, Profile: ProfileServer, Name: "kvs2", Hosts: []string{"127.0.0.1"}, KeyType: Ed25519})
	if err != nil {
		t.Fatal(err)
	}
	cliIss, err := Issue(ctx, IssueOptions{Dir: d, Profile: ProfileClient, Name: "bob", KeyType: ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		srv, cli := tlsConfigs(t, d, version)
		srv.Certificates = []tls.Certificate{must(tls.LoadX509KeyPair(srvIss.CertFile, srvIss.KeyFile))}
		cli.Certificates = []tls.Certificate{must(tls.LoadX509KeyPair(cliIss.CertFile, cliIss.KeyFile))}
		if got, srvErr, cliErr := handshake(t, srv, cli); srvErr != nil || cliErr != nil || got != version {
			t.Errorf("%s: server %v, client %v, version %s", tls.VersionName(version), srvErr, cliErr, tls.VersionName(got))
		}
	}
}

// TestTLSRefusesForeignClient: a client certificate from another CA is
// refused by the server, which says the authority is unknown; the same client
// with a certificate from the right CA is accepted (negative control).
func TestTLSRefusesForeignClient(t *testing.T) {
	t.Parallel()
	d := newPKI(t, false)
	rogueDir := newPKI(t, false) // a complete, valid PKI: just not ours
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			t.Parallel()
			srv, cli := tlsConfigs(t, d, version)
			if _, srvErr, cliErr := handshake(t, srv, cli); srvErr != nil || cliErr != nil {
				t.Fatalf("control: server %v, client %v", srvErr, cliErr)
			}
			rogue := must(tls.LoadX509KeyPair(rogueDir.ClientCert(), rogueDir.ClientKey()))
			// Sent whatever CAs the server asks for (Go's client would
			// send nothing for an issuer the server does not name).
			cli.Certificates = nil
			cli.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &rogue, nil }
			_, srvErr, cliErr := handshake(t, srv, cli)
			if srvErr == nil || cliErr == nil {
				t.Fatalf("foreign client accepted: server %v, client %v", srvErr, cliErr)
			}
			var ua x509.UnknownAuthorityError
			if !errors.As(srvErr, &ua) || !strings.Contains(srvErr.Error(), "unknown authority") {
				t.Errorf("server error %q does not mention the unknown authority", srvErr)
			}
		})
	}
}

// TestTLSSelfSignedPinsExactly: in self-signed mode the server trusts exactly
// the client's certificate, so a second self-signed client with the same
// name is refused.
func TestTLSSelfSignedPinsExactly(t *testing.T) {
	t.Parallel()
	d := newPKI(t, true)
	other := newPKI(t, true)
	srv, cli := tlsConfigs(t, d, tls.VersionTLS13)
	cli.Certificates = []tls.Certificate{must(tls.LoadX509KeyPair(other.ClientCert(), other.ClientKey()))}
	_, srvErr, _ := handshake(t, srv, cli)
	if srvErr == nil {
		t.Fatal("a different self-signed client was accepted")
	}
	// And the client refuses a server that is not the pinned one.
	srv2, _ := tlsConfigs(t, other, tls.VersionTLS13)
	_, cli2 := tlsConfigs(t, d, tls.VersionTLS13)
	srv2.ClientAuth = tls.NoClientCert
	if _, _, cliErr := handshake(t, srv2, cli2); cliErr == nil {
		t.Fatal("client accepted a server it does not pin")
	}
}

// TestClientTLSReloads: a ClientTLS hands out the certificate and CA
// bundle on disk: a renewed certificate and a new bundle are used for the
// next configuration once the files change, a broken file keeps the last
// good configuration, and unchanged files are not re-read.
func TestClientTLSReloads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := newPKI(t, false)
	files, err := d.ClientFiles()
	if err != nil {
		t.Fatal(err)
	}
	ct, err := files.NewClientTLS(TLSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ct.CheckEvery = time.Nanosecond
	leaf := func() *x509.Certificate { return ct.Config().Certificates[0].Leaf }
	first := leaf()
	if again := leaf(); again != first {
		t.Error("unchanged files were loaded again")
	}
	if _, err := Renew(ctx, RenewOptions{Dir: d, CertFile: d.ClientCert()}); err != nil {
		t.Fatal(err)
	}
	renewed := leaf()
	if renewed.Equal(first) || !renewed.Equal(mustLoadCert(t, d.ClientCert())) {
		t.Fatalf("after renewal the config holds serial %s, want the renewed %s", SerialHex(renewed), SerialHex(mustLoadCert(t, d.ClientCert())))
	}
	// A root rotation: the bundle grows, and the new root is trusted.
	rot, err := Rotate(ctx, RotateOptions{Dir: d, Root: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rot.Intermediate.Verify(x509.VerifyOptions{Roots: ct.Config().RootCAs}); err != nil {
		t.Errorf("after a root rotation the new intermediate does not verify against the reloaded pool: %v", err)
	}
	// A broken key keeps the last good configuration, and says why.
	writeFile(t, d.ClientKey(), []byte("not a key"), KeyMode)
	if got := leaf(); !got.Equal(renewed) || ct.Err() == nil {
		t.Errorf("a broken key file: config holds %s, err %v; want the last good one and an error", SerialHex(got), ct.Err())
	}
}
