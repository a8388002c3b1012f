package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// ErrIncompleteFiles means a set of TLS files lacks the certificate, the
// key or the CA bundle.
var ErrIncompleteFiles = errors.New("pki: incomplete TLS files")

// AEADSuites returns the only TLS 1.2 cipher suites kvsctl accepts, on
// either side: ECDHE key exchange with an AEAD cipher. TLS 1.3 suites are
// all AEAD and not configurable.
func AEADSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}

// ParseTLSVersion parses a minimum TLS version: "1.2" (also "") or "1.3".
func ParseTLSVersion(s string) (uint16, error) {
	switch s {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("unsupported minimum TLS version %q: use 1.2 or 1.3", s)
}

// TLSOptions tunes the TLS configurations built from Files.
type TLSOptions struct {
	ServerName string // client: the host name to check in the server's certificate (default: the dialled host)
	MinVersion uint16 // default TLS 1.2
	NoResume   bool   // client: no session resumption
}

// Check reports whether f names a certificate, a key and a CA bundle, and
// whether the key file's permissions are private.
func (f Files) Check() error {
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return errorOf(ErrIncompleteFiles, "a certificate, a key and a CA bundle are needed (have certificate %q, key %q, CA %q)", f.Cert, f.Key, f.CA)
	}
	return CheckKeyPerm(f.Key)
}

// ClientConfig builds a client's tls.Config from f: the certificate to
// present, and the CA bundle to verify the server with. The server's chain
// and host name are always verified; there is no way to turn that off.
func (f Files) ClientConfig(o TLSOptions) (*tls.Config, error) {
	if err := f.Check(); err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("load client certificate %s and key %s: %w", f.Cert, f.Key, err)
	}
	if err := CheckPublicKey(cert.Leaf.PublicKey); err != nil {
		return nil, fmt.Errorf("client certificate %s: %w", f.Cert, err)
	}
	roots, err := LoadPool(f.CA)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      roots,
		ServerName:   o.ServerName,
		MinVersion:   max(o.MinVersion, tls.VersionTLS12),
		CipherSuites: AEADSuites(),
	}
	if !o.NoResume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(256)
	}
	return cfg, nil
}

// LoadPool reads a PEM bundle of CA certificates into a pool, refusing a
// certificate with a weak key (CheckPublicKey).
func LoadPool(path string) (*x509.CertPool, error) {
	cas, err := LoadCerts(path)
	if err != nil {
		return nil, fmt.Errorf("load CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		if err := CheckPublicKey(c.PublicKey); err != nil {
			return nil, fmt.Errorf("CA bundle %s: %s: %w", path, c.Subject, err)
		}
		pool.AddCert(c)
	}
	return pool, nil
}
