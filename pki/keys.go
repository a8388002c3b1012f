package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/youmark/pkcs8"
)

// KeyType names a key algorithm and size.
type KeyType string

// The supported key types. RSA2048 is the default, as in the original
// `openssl req -newkey rsa:2048` set-up.
const (
	RSA2048   KeyType = "rsa2048"
	RSA3072   KeyType = "rsa3072"
	RSA4096   KeyType = "rsa4096"
	ECDSAP256 KeyType = "ecdsa-p256"
	Ed25519   KeyType = "ed25519"
)

// KeyTypes lists every supported key type, default first.
var KeyTypes = []KeyType{RSA2048, RSA3072, RSA4096, ECDSAP256, Ed25519}

// ErrWrongPassphrase is returned when an encrypted key cannot be decrypted.
var ErrWrongPassphrase = errors.New("pki: wrong passphrase for encrypted key")

// ParseKeyType parses a --key-type value; the empty string means RSA2048.
func ParseKeyType(s string) (KeyType, error) {
	if s == "" {
		return RSA2048, nil
	}
	for _, t := range KeyTypes {
		if string(t) == strings.ToLower(s) {
			return t, nil
		}
	}
	names := make([]string, len(KeyTypes))
	for i, t := range KeyTypes {
		names[i] = string(t)
	}
	return "", fmt.Errorf("unknown key type %q: use one of %s", s, strings.Join(names, ", "))
}

// GenerateKey creates a new private key of type t.
func GenerateKey(t KeyType) (crypto.Signer, error) {
	switch t {
	case RSA2048, "":
		return rsa.GenerateKey(rand.Reader, 2048)
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	case RSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	_, err := ParseKeyType(string(t))
	return nil, err
}

// MarshalKey encodes a private key as PEM PKCS#8. With a non-empty passphrase
// the key is encrypted (PBES2: PBKDF2-HMAC-SHA256 with 600,000 iterations and AES-256-CBC), which
// OpenSSL 1.1+ and 3.x read.
func MarshalKey(key crypto.Signer, passphrase []byte) ([]byte, error) {
	if len(passphrase) == 0 {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("encode private key: %w", err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	}
	der, err := pkcs8.MarshalPrivateKey(key, passphrase, &pkcs8.Opts{
		Cipher:  pkcs8.AES256CBC,
		KDFOpts: pkcs8.PBKDF2Opts{SaltSize: 16, IterationCount: 600_000, HMACHash: crypto.SHA256},
	})
	if err != nil {
		return nil, fmt.Errorf("encrypt private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der}), nil
}

// ParseKey decodes a PEM private key: PKCS#8 (plain or encrypted), PKCS#1 RSA
// or SEC 1 EC. An encrypted key needs its passphrase.
func ParseKey(data, passphrase []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM private key found")
	}
	var (
		k   any
		err error
	)
	switch block.Type {
	case "ENCRYPTED PRIVATE KEY":
		if len(passphrase) == 0 {
			return nil, errors.New("key is encrypted: give its passphrase with --passphrase-file or KVS_CA_PASSPHRASE")
		}
		k, err = pkcs8.ParsePKCS8PrivateKey(block.Bytes, passphrase)
		if err != nil {
			return nil, ErrWrongPassphrase
		}
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		if x509.IsEncryptedPEMBlock(block) { //nolint:staticcheck // detect legacy encryption to refuse it clearly
			return nil, errors.New("legacy PEM encryption is not supported: convert with 'openssl pkcs8 -topk8'")
		}
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", k)
	}
	return s, nil
}

// LoadKey reads a private key file, refusing one that group or others can
// read. The error never contains key material.
func LoadKey(path string, passphrase []byte) (crypto.Signer, error) {
	if err := CheckKeyPerm(path); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", path, err)
	}
	k, err := ParseKey(data, passphrase)
	if err != nil {
		return nil, fmt.Errorf("load key %s: %w", path, err)
	}
	return k, nil
}

// CheckKeyPerm returns an error, with the chmod that fixes it, when a key
// file is readable or writable by group or others.
func CheckKeyPerm(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("read key %s: %w", path, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("key %s is accessible by group or others (mode %04o): run 'chmod 600 %s'", path, fi.Mode().Perm(), path)
	}
	return nil
}

// KeyMatches reports whether the certificate's public key belongs to key.
func KeyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pub, ok := key.Public().(equaler)
	return ok && pub.Equal(cert.PublicKey)
}

// DescribeKey returns the algorithm and size of a public key, e.g. "RSA 2048".
func DescribeKey(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return fmt.Sprintf("ECDSA %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", pub)
}
