package pki

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// ErrNoPassword is returned when a PKCS#12 bundle would be written without a
// password.
var ErrNoPassword = errors.New("pki: a PKCS#12 bundle needs a password")

// ExportOptions configures [Export].
type ExportOptions struct {
	Dir Dir
	// Name selects what to export: "server" or "client" (the certificates in
	// the directory's root), "ca" (the CA certificate alone, as a trust
	// store for Java), the name of an issued certificate (issued/NAME.crt),
	// or the path of a .crt file with its .key next to it.
	Name     string
	Out      string // the .p12 file to write (mode 0600)
	Password string // required: the bundle holds a private key
	// Legacy uses 3DES and SHA-1 (pkcs12.LegacyDES) for software that
	// cannot read the modern AES-256/PBKDF2 encryption, such as Java before
	// 8u301 or macOS before 14. Off by default.
	Legacy bool
	Force  bool // replace Out
	Now    time.Time
}

// Exported says what [Export] wrote.
type Exported struct {
	File     string
	Cert     *x509.Certificate   // the certificate (with its key), or the CA for "ca"
	Chain    []*x509.Certificate // CA certificates included with it
	HasKey   bool
	Encoding string // "modern (AES-256-CBC, PBKDF2-HMAC-SHA-256)" or "legacy (3DES, SHA-1)"
}

// Export writes a PKCS#12 bundle of a certificate, its key and its chain
// (its intermediate, if its file has one, and its root), for
// browsers, curl and Java. The bundle is encrypted with go-pkcs12's Modern
// encoder (AES-256-CBC with PBKDF2-HMAC-SHA-256, SHA-256 MAC) unless Legacy
// is set. It refuses an empty password, a key that does not match the
// certificate, and an existing Out without Force.
func Export(ctx context.Context, o ExportOptions) (*Exported, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Password == "" {
		return nil, errorOf(ErrNoPassword, "a PKCS#12 bundle holds a private key and needs a password")
	}
	if o.Out == "" {
		return nil, errors.New("no output file given")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	enc, encName := pkcs12.Modern, "modern (AES-256-CBC, PBKDF2-HMAC-SHA-256)"
	if o.Legacy {
		enc, encName = pkcs12.LegacyDES, "legacy (3DES, SHA-1)"
	}
	out := &Exported{File: o.Out, Encoding: encName}
	var data []byte
	if o.Name == "ca" {
		ca, err := LoadCert(o.Dir.CACert())
		if err != nil {
			if !exists(o.Dir.CACert()) {
				return nil, errorOf(ErrNoCA, "no CA in %s", string(o.Dir))
			}
			return nil, err
		}
		out.Cert = ca
		if data, err = enc.EncodeTrustStore([]*x509.Certificate{ca}, o.Password); err != nil {
			return nil, fmt.Errorf("encode PKCS#12 trust store: %w", err)
		}
	} else {
		certFile, keyFile, err := o.Dir.resolveName(o.Name)
		if err != nil {
			return nil, err
		}
		certs, err := LoadCerts(certFile)
		if err != nil {
			return nil, err
		}
		cert := certs[0]
		key, err := LoadKey(keyFile, nil)
		if err != nil {
			return nil, err
		}
		if !KeyMatches(cert, key) {
			return nil, fmt.Errorf("key %s does not match certificate %s", keyFile, certFile)
		}
		out.Cert, out.HasKey = cert, true
		out.Chain = exportChain(certs, o.Dir)
		if data, err = enc.Encode(key, cert, out.Chain, o.Password); err != nil {
			return nil, fmt.Errorf("encode PKCS#12: %w", err)
		}
	}
	if err := WriteFileAtomic(o.Out, data, KeyMode, o.Force); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("%s already exists: %w", o.Out, fs.ErrExist)
		}
		return nil, err
	}
	return out, nil
}

// exportChain is the chain to bundle with certs[0]: the CA certificates
// that follow it in its file (its intermediate), then the root of the
// directory's ca.crt that signed the last of them.
func exportChain(certs []*x509.Certificate, d Dir) []*x509.Certificate {
	var chain []*x509.Certificate
	top := certs[0]
	for _, c := range certs[1:] {
		if c.IsCA && top.CheckSignatureFrom(c) == nil {
			chain = append(chain, c)
			top = c
		}
	}
	roots, _ := LoadCerts(d.CACert())
	for _, r := range roots {
		if !top.Equal(r) && top.CheckSignatureFrom(r) == nil {
			chain = append(chain, r)
			break
		}
	}
	return chain
}

// resolveName finds the certificate and key files of a name: "server" and
// "client" in the root, an issued name under issued/, or a .crt path.
func (d Dir) resolveName(name string) (string, string, error) {
	switch {
	case name == "server":
		return d.ServerCert(), d.ServerKey(), nil
	case name == "client":
		return d.ClientCert(), d.ClientKey(), nil
	case strings.HasSuffix(name, ".crt") || strings.ContainsRune(name, filepath.Separator):
		return name, strings.TrimSuffix(name, filepath.Ext(name)) + ".key", nil
	}
	if err := CheckName(name); err != nil {
		return "", "", err
	}
	if !exists(d.IssuedCert(name)) {
		return "", "", errorOf(ErrUnknownCert, "no certificate named %q in %s", name, string(d))
	}
	return d.IssuedCert(name), d.IssuedKey(name), nil
}
