package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvsctl/kvsctl/pki"
)

// DefaultCRLRefresh is how often a CRLFetcher fetches its CRLs.
const DefaultCRLRefresh = time.Minute

// CRLFetcher keeps the CRLs of a server fresh from URLs (the online CA's
// /v1/pki/crls, or CRL distribution points): it fetches each every
// Refresh, and sooner once half of a cached CRL's lifetime has passed;
// checks that every CRL is signed by a CA of the server's bundle and is
// not older than the one already cached for that CA (a CRL can never go
// back); and writes what passes to a cache file per URL, atomically. The
// cache files are CRL files of the server (see Files), so the server's
// reload takes them up, and a restart without the CA still enforces the
// cached CRLs until their NextUpdate, after which it fails closed.
type CRLFetcher struct {
	URLs     []string
	CacheDir string        // created 0700
	Refresh  time.Duration // 0 means DefaultCRLRefresh
	// Files are the server's TLS files: the CA bundle and intermediates
	// whose CRLs are accepted.
	Files pki.Files
	// Client fetches the URLs; nil means one that trusts the CA bundle
	// (for https URLs) with a 10 s timeout.
	Client *http.Client
	Logger *slog.Logger
	Now    func() time.Time

	mu       sync.Mutex
	next     map[string]time.Time // URL -> when to fetch it again
	failures *prometheus.CounterVec
	age      *prometheus.GaugeVec
	nextUp   *prometheus.GaugeVec
}

// CacheFiles are the cache files, one per URL, to give the server as CRL
// files.
func (f *CRLFetcher) CacheFiles() []string {
	out := make([]string, len(f.URLs))
	for i, u := range f.URLs {
		out[i] = f.cacheFile(u)
	}
	return out
}

func (f *CRLFetcher) cacheFile(u string) string {
	sum := sha256.Sum256([]byte(u))
	return filepath.Join(f.CacheDir, "crl-"+hex.EncodeToString(sum[:8])+".pem")
}

func (f *CRLFetcher) init() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.next != nil {
		return
	}
	f.next = map[string]time.Time{}
	if f.Now == nil {
		f.Now = time.Now
	}
	if f.Logger == nil {
		f.Logger = slog.New(slog.DiscardHandler)
	}
	if f.Refresh <= 0 {
		f.Refresh = DefaultCRLRefresh
	}
	f.failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kvs_crl_fetch_failures_total", Help: "CRL fetches that failed or were refused, by URL.",
	}, []string{"url"})
	f.age = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kvs_crl_age_seconds", Help: "Age of the cached CRL of each CA (since its ThisUpdate).",
	}, []string{"issuer"})
	f.nextUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kvs_crl_next_update_timestamp_seconds", Help: "NextUpdate of the cached CRL of each CA, as a Unix time.",
	}, []string{"issuer"})
}

// Collectors are the fetcher's metrics, for the server's registry.
func (f *CRLFetcher) Collectors() []prometheus.Collector {
	f.init()
	return []prometheus.Collector{f.failures, f.age, f.nextUp}
}

// FetchAll fetches every URL once. It returns the first failure, after
// trying them all; a URL that failed keeps its cache file.
func (f *CRLFetcher) FetchAll(ctx context.Context) error {
	f.init()
	if err := os.MkdirAll(f.CacheDir, pki.DirMode); err != nil {
		return fmt.Errorf("CRL cache: %w", err)
	}
	var first error
	for _, u := range f.URLs {
		if err := f.fetch(ctx, u); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Run fetches the URLs when they are due, until ctx ends.
func (f *CRLFetcher) Run(ctx context.Context) {
	f.init()
	t := time.NewTicker(max(time.Second, min(f.Refresh/4, 5*time.Second)))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, u := range f.URLs {
			f.mu.Lock()
			due := !f.Now().Before(f.next[u])
			f.mu.Unlock()
			if due {
				_ = f.fetch(ctx, u)
			}
		}
	}
}

// fetch gets one URL, checks it and writes its cache file, and schedules
// the next fetch.
func (f *CRLFetcher) fetch(ctx context.Context, u string) error {
	now := f.Now()
	next := now.Add(f.Refresh)
	defer func() {
		f.mu.Lock()
		f.next[u] = next
		f.mu.Unlock()
	}()
	lists, err := f.get(ctx, u)
	if err == nil {
		err = f.accept(u, lists)
	}
	if err != nil {
		f.failures.WithLabelValues(u).Inc()
		f.Logger.Error("crl fetch failed; the cached CRLs stay in force", "url", u, "err", err)
		// Retry sooner than Refresh when the cache is short of life.
		if soon := now.Add(max(time.Second, f.Refresh/4)); soon.Before(next) {
			next = soon
		}
		return err
	}
	for _, rl := range lists {
		half := rl.ThisUpdate.Add(rl.NextUpdate.Sub(rl.ThisUpdate) / 2)
		if half.After(now) && half.Before(next) {
			next = half
		}
		f.age.WithLabelValues(rl.Issuer.String()).Set(now.Sub(rl.ThisUpdate).Seconds())
		f.nextUp.WithLabelValues(rl.Issuer.String()).Set(float64(rl.NextUpdate.Unix()))
	}
	return nil
}

// get fetches a URL and parses every CRL in it (PEM blocks or one DER
// CRL).
func (f *CRLFetcher) get(ctx context.Context, u string) ([]*x509.RevocationList, error) {
	hc := f.Client
	if hc == nil {
		pool, err := pki.LoadPool(f.Files.CA)
		if err != nil {
			return nil, err
		}
		hc = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("CRL URL %s: %w", u, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch %s: HTTP %d", u, resp.StatusCode)
	}
	return parseCRLs(data)
}

// accept checks the fetched CRLs against the server's CAs and the cache
// and writes them. Each must be signed by a CA of the bundle (or an
// intermediate of the server's), and not be older than the cached one of
// its issuer.
func (f *CRLFetcher) accept(u string, lists []*x509.RevocationList) error {
	cas, err := f.knownCAs()
	if err != nil {
		return err
	}
	cached := f.cached(u)
	var out bytes.Buffer
	for _, rl := range lists {
		issuer := crlIssuer(rl, cas)
		if issuer == nil {
			return fmt.Errorf("%s: the CRL of %s (number %v) is not signed by a CA the server trusts", u, rl.Issuer, rl.Number)
		}
		for _, old := range cached {
			if issuerKeyOfCRL(old, issuer) && old.Number != nil && rl.Number != nil && rl.Number.Cmp(old.Number) < 0 {
				return fmt.Errorf("%w: %s served the CRL number %v of %s, older than the cached number %v: keeping the cached one",
					ErrCRLRollback, u, rl.Number, issuer.Subject, old.Number)
			}
		}
		_ = pem.Encode(&out, &pem.Block{Type: "X509 CRL", Bytes: rl.Raw})
	}
	if old, err := os.ReadFile(f.cacheFile(u)); err == nil && bytes.Equal(old, out.Bytes()) {
		return nil
	}
	if err := pki.WriteFileAtomic(f.cacheFile(u), out.Bytes(), pki.CertMode, true); err != nil {
		return fmt.Errorf("CRL cache: %w", err)
	}
	f.Logger.Info("crl fetched", "url", u, "crls", len(lists))
	return nil
}

// issuerKeyOfCRL reports whether the cached CRL old is the CRL of issuer.
func issuerKeyOfCRL(old *x509.RevocationList, issuer *x509.Certificate) bool {
	return old.CheckSignatureFrom(issuer) == nil && bytes.Equal(old.RawIssuer, issuer.RawSubject)
}

// cached is the content of the cache file of u (nothing when there is
// none or it does not parse).
func (f *CRLFetcher) cached(u string) []*x509.RevocationList {
	data, err := os.ReadFile(f.cacheFile(u))
	if errors.Is(err, fs.ErrNotExist) || err != nil {
		return nil
	}
	lists, err := parseCRLs(data)
	if err != nil {
		return nil
	}
	return lists
}

// knownCAs are the CAs whose CRLs the server accepts: the bundle, the
// intermediates bundle, and the CAs of the server's own chain.
func (f *CRLFetcher) knownCAs() ([]*x509.Certificate, error) {
	cas, err := pki.LoadCerts(f.Files.CA)
	if err != nil {
		return nil, err
	}
	if f.Files.Intermediates != "" {
		if more, err := pki.LoadCerts(f.Files.Intermediates); err == nil {
			cas = append(cas, more...)
		}
	}
	if f.Files.Cert != "" {
		if chain, err := pki.LoadCerts(f.Files.Cert); err == nil && len(chain) > 1 {
			cas = append(cas, chain[1:]...)
		}
	}
	return slices.DeleteFunc(cas, func(c *x509.Certificate) bool { return !c.IsCA }), nil
}
