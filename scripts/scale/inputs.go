package main

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/kvsctl/kvsctl/kvs/server"
	"github.com/kvsctl/kvsctl/pki"
)

// genCRL rewrites DIR/crl.pem: the root's CRL as it is, and a CRL of the
// intermediate (which signs the client certificates) listing n random
// serials, with a number above the one it replaces.
func genCRL(args []string) error {
	fs := flag.NewFlagSet("gencrl", flag.ContinueOnError)
	dir := fs.String("dir", "certs", "PKI directory (kvsctl pki init, with the hierarchy)")
	n := fs.Int("n", 10000, "revoked serials")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d := pki.Dir(*dir)
	ic, err := readCert(d.IntermediateCert())
	if err != nil {
		return err
	}
	key, err := pki.LoadKey(d.IntermediateKey(), nil)
	if err != nil {
		return err
	}
	old, err := os.ReadFile(d.CRL())
	if err != nil {
		return err
	}
	var out bytes.Buffer
	number := big.NewInt(1)
	for rest := old; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		rl, err := x509.ParseRevocationList(b.Bytes)
		if err != nil {
			return fmt.Errorf("parse %s: %w", d.CRL(), err)
		}
		if bytes.Equal(rl.RawIssuer, ic.RawSubject) {
			number.Add(rl.Number, big.NewInt(1))
			continue
		}
		if err := pem.Encode(&out, b); err != nil {
			return err
		}
	}
	now := time.Now()
	entries := make([]x509.RevocationListEntry, *n)
	for i := range entries {
		s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
		if err != nil {
			return err
		}
		entries[i] = x509.RevocationListEntry{SerialNumber: s, RevocationTime: now.Add(-time.Hour)}
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: number, ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(7 * 24 * time.Hour),
		RevokedCertificateEntries: entries,
	}, ic, key)
	if err != nil {
		return fmt.Errorf("sign CRL: %w", err)
	}
	if err := pem.Encode(&out, &pem.Block{Type: "X509 CRL", Bytes: der}); err != nil {
		return err
	}
	tmp := d.CRL() + ".tmp"
	if err := os.WriteFile(tmp, out.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, d.CRL())
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return x509.ParseCertificate(b.Bytes)
}

// snapshot loads the server's TLS material from DIR as kvsctl serve does
// and prints the time of the first load, of a reload (the same work: parse
// and verify every CRL, build the snapshot) and the heap the snapshot
// holds.
func snapshot(args []string) error {
	fs := flag.NewFlagSet("snapshot", flag.ContinueOnError)
	dir := fs.String("dir", "certs", "PKI directory")
	reloads := fs.Int("reloads", 5, "reloads to time")
	if err := fs.Parse(args); err != nil {
		return err
	}
	files, err := pki.Dir(*dir).ServerFiles()
	if err != nil {
		return err
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	t0 := time.Now()
	st, err := server.LoadTLS(files, server.TLSOptions{})
	if err != nil {
		return err
	}
	load := time.Since(t0)
	held := heap()
	t0 = time.Now()
	for range *reloads {
		if err := st.Reload(); err != nil {
			return err
		}
	}
	reload := time.Since(t0) / time.Duration(max(*reloads, 1))
	size := int64(0)
	if fi, err := os.Stat(filepath.Clean(files.CRLs[0])); err == nil {
		size = fi.Size()
	}
	runtime.KeepAlive(st)
	b, err := json.MarshalIndent(map[string]any{
		"load_ms": ms(load), "reload_ms": ms(reload),
		"heap_kib": float64(int64(held)-int64(before)) / 1024, "file_kib": float64(size) / 1024,
	}, "", "  ")
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(b, '\n'))
	return err
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// genPolicy prints a policy of n identities: the bench client's common
// name with full access, and n-1 others of every kind.
func genPolicy(args []string) error {
	fs := flag.NewFlagSet("policy", flag.ContinueOnError)
	n := fs.Int("n", 10000, "identities")
	cn := fs.String("cn", "client", "common name of the client that runs the bench")
	if err := fs.Parse(args); err != nil {
		return err
	}
	type rule struct {
		Prefixes   []string `json:"prefixes"`
		Operations []string `json:"operations"`
	}
	ids := map[string]rule{*cn: {Prefixes: []string{""}, Operations: []string{"read", "write", "delete", "list", "health"}}}
	kinds := []string{"", "dns:", "email:", "uri:spiffe://example.org/sa/"}
	for i := 1; i < *n; i++ {
		name := fmt.Sprintf("%sservice-%d", kinds[i%len(kinds)], i)
		if kinds[i%len(kinds)] == "email:" {
			name += "@example.org"
		}
		ids[name] = rule{Prefixes: []string{fmt.Sprintf("svc/%d/", i)}, Operations: []string{"read", "write"}}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	return enc.Encode(map[string]any{"identities": ids})
}
