package pki

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

// Benchmarks of the work 'kvsctl pki' does. scripts/bench-pki.sh compares
// the whole 'kvsctl pki init' with the openssl flow it replaces.
//
//	go test ./pki -run '^$' -bench . -benchtime 20x

func BenchmarkGenerateKey(b *testing.B) {
	for _, kt := range []KeyType{RSA2048, ECDSAP256, Ed25519} {
		b.Run(string(kt), func(b *testing.B) {
			for b.Loop() {
				if _, err := GenerateKey(kt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkIssue measures 'pki issue': load the CA, generate the leaf key,
// sign, and write the key, certificate and inventory atomically.
func BenchmarkIssue(b *testing.B) {
	for _, kt := range []KeyType{ECDSAP256, RSA2048} {
		b.Run(string(kt), func(b *testing.B) {
			d := Dir(filepath.Join(b.TempDir(), "certs"))
			if _, err := Init(context.Background(), InitOptions{Dir: d, KeyType: ECDSAP256, Hosts: []string{"localhost"}}); err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				i++
				if _, err := Issue(context.Background(), IssueOptions{Dir: d, Profile: ProfileClient, Name: fmt.Sprintf("c%d", i), KeyType: kt}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkInit measures a whole 'pki init': three keys generated in
// parallel, the CA, two leaves, the CRL and eight files written.
func BenchmarkInit(b *testing.B) {
	for _, tc := range []struct {
		name       string
		kt         KeyType
		selfSigned bool
	}{
		{"rsa2048", RSA2048, false},
		{"rsa2048-self-signed", RSA2048, true},
		{"ecdsa-p256", ECDSAP256, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			root := b.TempDir()
			i := 0
			for b.Loop() {
				i++
				d := Dir(filepath.Join(root, fmt.Sprint(i)))
				if _, err := Init(context.Background(), InitOptions{Dir: d, KeyType: tc.kt, SelfSigned: tc.selfSigned, Hosts: []string{"localhost"}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
