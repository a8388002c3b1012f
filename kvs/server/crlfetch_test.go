package server

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kvsctl/kvsctl/pki"
)

// crlSource serves whatever CRL bytes the test puts in it, or fails.
type crlSource struct {
	mu   sync.Mutex
	data []byte
	down bool
}

func (c *crlSource) set(data []byte, down bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.data, c.down = data, down
}

func (c *crlSource) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write(c.data)
}

func fetcherFor(t *testing.T, d pki.Dir, url string) *CRLFetcher {
	t.Helper()
	files, err := d.ServerFiles()
	if err != nil {
		t.Fatal(err)
	}
	return &CRLFetcher{URLs: []string{url}, CacheDir: filepath.Join(t.TempDir(), "cache"), Files: files, Client: http.DefaultClient}
}

// TestCRLFetcherCachesAndNeverGoesBack: fetched CRLs land in the cache
// file; an older CRL, a CRL of a CA the server does not trust and a failed
// fetch leave the cache as it was, and are counted.
func TestCRLFetcherCachesAndNeverGoesBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := pki.Dir(filepath.Join(t.TempDir(), "certs"))
	if _, err := pki.Init(ctx, pki.InitOptions{Dir: d, KeyType: pki.ECDSAP256, Hosts: []string{"localhost"}}); err != nil {
		t.Fatal(err)
	}
	src := &crlSource{}
	hs := httptest.NewServer(src)
	defer hs.Close()
	f := fetcherFor(t, d, hs.URL+"/v1/pki/crls")
	read := func() []byte {
		data, _ := os.ReadFile(f.CacheFiles()[0])
		return data
	}
	// The first CRLs (number 1 of each CA).
	first := mustReadFile(t, d.CRL())
	src.set(first, false)
	if err := f.FetchAll(ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read(), first) {
		t.Fatal("the cache does not hold the fetched CRLs")
	}
	if fi, _ := os.Stat(f.CacheDir); fi.Mode().Perm() != 0o700 {
		t.Errorf("cache directory mode %v", fi.Mode().Perm())
	}
	// A revocation: number 2 replaces number 1.
	if _, err := pki.Revoke(ctx, pki.RevokeOptions{Dir: d, Target: d.ClientCert()}); err != nil {
		t.Fatal(err)
	}
	second := mustReadFile(t, d.CRL())
	src.set(second, false)
	if err := f.FetchAll(ctx); err != nil || !bytes.Equal(read(), second) {
		t.Fatalf("the newer CRL: %v", err)
	}
	// Number 1 again: refused, the cache keeps number 2.
	src.set(first, false)
	if err := f.FetchAll(ctx); !errors.Is(err, ErrCRLRollback) || !bytes.Equal(read(), second) {
		t.Errorf("an older CRL: %v, cache changed %v", err, !bytes.Equal(read(), second))
	}
	// Another CA's CRL.
	other := pki.Dir(filepath.Join(t.TempDir(), "other"))
	if _, err := pki.Init(ctx, pki.InitOptions{Dir: other, KeyType: pki.ECDSAP256, Hosts: []string{"localhost"}}); err != nil {
		t.Fatal(err)
	}
	src.set(mustReadFile(t, other.CRL()), false)
	if err := f.FetchAll(ctx); err == nil || !strings.Contains(err.Error(), "not signed by a CA the server trusts") || !bytes.Equal(read(), second) {
		t.Errorf("another CA's CRL: %v", err)
	}
	// The source is down.
	src.set(nil, true)
	if err := f.FetchAll(ctx); err == nil || !bytes.Equal(read(), second) {
		t.Errorf("a failed fetch: %v", err)
	}
	if n := testutil.ToFloat64(f.failures.WithLabelValues(f.URLs[0])); n != 3 {
		t.Errorf("%v failures counted, want 3", n)
	}
}

// TestServerTakesUpFetchedCRLs: a server whose CRL file is the fetcher's
// cache refuses a client once the fetched CRL revokes it, and a restart
// from the cache alone still refuses it.
func TestServerTakesUpFetchedCRLs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := pki.Dir(filepath.Join(t.TempDir(), "certs"))
	if _, err := pki.Init(ctx, pki.InitOptions{Dir: d, KeyType: pki.ECDSAP256, Hosts: []string{"localhost"}}); err != nil {
		t.Fatal(err)
	}
	src := &crlSource{}
	src.set(mustReadFile(t, d.CRL()), false)
	hs := httptest.NewServer(src)
	defer hs.Close()
	f := fetcherFor(t, d, hs.URL)
	if err := f.FetchAll(ctx); err != nil {
		t.Fatal(err)
	}
	files := f.Files
	files.CRLs = f.CacheFiles()
	clientCert, err := pki.LoadCert(d.ClientCert())
	if err != nil {
		t.Fatal(err)
	}
	check := func() error {
		s, err := LoadTLS(files, TLSOptions{Now: time.Now})
		if err != nil {
			return err
		}
		snap := s.snap.Load()
		inter, err := pki.LoadCert(d.IntermediateCert())
		if err != nil {
			return err
		}
		root, err := pki.LoadCert(d.CACert())
		if err != nil {
			return err
		}
		chain := []*x509.Certificate{clientCert, inter, root}
		_, err = snap.crls.checkChain(chain, time.Now(), false)
		return err
	}
	if err := check(); err != nil {
		t.Fatalf("control: before the revocation: %v", err)
	}
	if _, err := pki.Revoke(ctx, pki.RevokeOptions{Dir: d, Target: d.ClientCert()}); err != nil {
		t.Fatal(err)
	}
	src.set(mustReadFile(t, d.CRL()), false)
	if err := f.FetchAll(ctx); err != nil {
		t.Fatal(err)
	}
	src.set(nil, true) // the CA is gone: the cache alone decides
	if err := check(); !errors.Is(err, ErrRevoked) {
		t.Errorf("after the fetched revocation, from the cache: %v, want ErrRevoked", err)
	}
}

func mustReadFile(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
