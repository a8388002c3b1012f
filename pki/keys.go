package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
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
	return parseKey(data, passphrase, defaultKDFLimits)
}

// kdfLimits caps the work an encrypted key may ask for.
type kdfLimits struct {
	iterations   int   // PBKDF2
	scryptMemory int64 // bytes: 128 * N * r * p
}

var defaultKDFLimits = kdfLimits{iterations: maxPBKDF2Iterations, scryptMemory: maxScryptMemory}

// parseKey is ParseKey with explicit KDF limits (fuzzing uses low ones to
// stay fast).
func parseKey(data, passphrase []byte, lim kdfLimits) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM private key found")
	}
	if strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
		// RFC 1423 encryption: unauthenticated and weak; refuse it clearly.
		return nil, errors.New("legacy PEM encryption is not supported: convert with 'openssl pkcs8 -topk8 -v2 aes-256-cbc'")
	}
	var (
		k   any
		err error
	)
	switch block.Type {
	case "ENCRYPTED PRIVATE KEY":
		if len(passphrase) == 0 {
			return nil, errorOf(ErrNeedPassphrase, "key is encrypted and no passphrase was given")
		}
		if err := checkKDFCost(block.Bytes, lim); err != nil {
			return nil, err
		}
		k, err = pkcs8.ParsePKCS8PrivateKey(block.Bytes, passphrase)
		if err != nil {
			return nil, ErrWrongPassphrase
		}
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
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

// KeyTypeOf returns the KeyType of a public key, or an error for a key kvsctl
// does not generate (for example RSA 1024 or ECDSA P-384).
func KeyTypeOf(pub crypto.PublicKey) (KeyType, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 2048:
			return RSA2048, nil
		case 3072:
			return RSA3072, nil
		case 4096:
			return RSA4096, nil
		}
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return ECDSAP256, nil
		}
	case ed25519.PublicKey:
		return Ed25519, nil
	}
	return "", fmt.Errorf("no key type for a %s key", DescribeKey(pub))
}

// Limits on the key derivation cost an encrypted key may ask for. A key file
// is not trusted input to the point of letting it stall kvsctl for hours or
// allocate gigabytes: kvsctl writes 600,000 PBKDF2 iterations, OpenSSL 3
// writes 2,048, and scrypt keys from other tools use N of 2^14 to 2^20.
const (
	maxPBKDF2Iterations = 10_000_000
	maxScryptMemory     = 1 << 30 // bytes: 128 * N * r * p
)

var (
	oidPBES2  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidScrypt = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11591, 4, 11}
)

// checkKDFCost parses the PBES2 parameters of an encrypted PKCS#8 key and
// refuses a derivation too expensive to attempt, before any work is done.
func checkKDFCost(der []byte, lim kdfLimits) error {
	var info struct {
		Algo pkix.AlgorithmIdentifier
		Data []byte
	}
	if _, err := asn1.Unmarshal(der, &info); err != nil {
		return fmt.Errorf("parse encrypted private key: %w", err)
	}
	if !info.Algo.Algorithm.Equal(oidPBES2) {
		return fmt.Errorf("encrypted private key uses %s: only PBES2 (PKCS#5 v2) is supported", info.Algo.Algorithm)
	}
	var params struct {
		KDF    pkix.AlgorithmIdentifier
		Scheme pkix.AlgorithmIdentifier
	}
	if _, err := asn1.Unmarshal(info.Algo.Parameters.FullBytes, &params); err != nil {
		return fmt.Errorf("parse encrypted private key parameters: %w", err)
	}
	switch {
	case params.KDF.Algorithm.Equal(oidPBKDF2):
		var p struct {
			Salt       []byte
			Iterations int
			KeyLength  int           `asn1:"optional"`
			PRF        asn1.RawValue `asn1:"optional"`
		}
		if _, err := asn1.Unmarshal(params.KDF.Parameters.FullBytes, &p); err != nil {
			return fmt.Errorf("parse PBKDF2 parameters: %w", err)
		}
		if p.Iterations < 1 || p.Iterations > lim.iterations {
			return fmt.Errorf("encrypted private key asks for %d PBKDF2 iterations: refusing more than %d", p.Iterations, lim.iterations)
		}
	case params.KDF.Algorithm.Equal(oidScrypt):
		var p struct {
			Salt      []byte
			N, R, P   int
			KeyLength int `asn1:"optional"`
		}
		if _, err := asn1.Unmarshal(params.KDF.Parameters.FullBytes, &p); err != nil {
			return fmt.Errorf("parse scrypt parameters: %w", err)
		}
		if p.N < 2 || p.R < 1 || p.P < 1 || int64(p.N) > lim.scryptMemory/128 || p.R > 1<<10 || p.P > 1<<10 ||
			int64(p.N)*int64(p.R)*int64(p.P) > lim.scryptMemory/128 {
			return fmt.Errorf("encrypted private key asks for scrypt N=%d r=%d p=%d: refusing more than %d MiB", p.N, p.R, p.P, lim.scryptMemory>>20)
		}
	default:
		return fmt.Errorf("encrypted private key uses key derivation %s: only PBKDF2 and scrypt are supported", params.KDF.Algorithm)
	}
	return nil
}
