package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/pki"
)

// FuzzHandler drives the server's handler with arbitrary requests: method,
// target, header lines and body are assembled into HTTP/1.1 bytes and parsed
// with http.ReadRequest, as the server would, then served with a fake TLS
// state naming one of four identities (full access, read-only on "pub/", not
// in the policy, no certificate). The handler must not panic and must answer
// only documented statuses, errors as JSON; a request that is not a
// successful write must leave the store unchanged; and an identity the
// policy does not allow to write must never write. The seed corpus is in
// testdata/fuzz/FuzzHandler.
func FuzzHandler(f *testing.F) {
	h := newFuzzHandler(f)
	f.Fuzz(func(t *testing.T, method, target, header string, body []byte, who byte) {
		h.check(t, method, target, header, body, who)
	})
}

// fuzzHandler is a server on an in-memory store with a policy, and the
// identities the fuzzer picks from.
type fuzzHandler struct {
	srv   *Server
	store *memStore
	certs []*x509.Certificate // full, read-only on pub/, unknown; index 3: none
}

const fuzzMaxValue = 1 << 10

func newFuzzHandler(f *testing.F) *fuzzHandler {
	d := pki.Dir(filepath.Join(f.TempDir(), "certs"))
	if _, err := pki.Init(context.Background(), pki.InitOptions{Dir: d, KeyType: pki.ECDSAP256, Hosts: []string{"localhost"}}); err != nil {
		f.Fatal(err)
	}
	files, err := d.ServerFiles()
	if err != nil {
		f.Fatal(err)
	}
	policy := filepath.Join(f.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte(`identities:
  client:
    prefixes: [""]
    operations: [read, write, delete, list]
  reader:
    prefixes: ["pub/"]
    operations: [read, list]
`), 0o600); err != nil {
		f.Fatal(err)
	}
	store := newMemStore()
	srv, err := New(Config{Files: files, Store: store, PolicyFile: policy, MaxValue: fuzzMaxValue})
	if err != nil {
		f.Fatal(err)
	}
	cert := func(cn string) *x509.Certificate {
		return &x509.Certificate{Subject: pkix.Name{CommonName: cn}, SerialNumber: big.NewInt(1)}
	}
	return &fuzzHandler{srv: srv, store: store, certs: []*x509.Certificate{cert("client"), cert("reader"), cert("stranger")}}
}

// documented are the statuses the API documents, plus the redirects that
// ServeMux sends to clean a path outside /v1/kv/. 503 is absent: the
// in-memory store never fails.
var documented = []int{200, 204, 301, 307, 308, 400, 403, 404, 405, 412, 413}

func (h *fuzzHandler) check(t *testing.T, method, target, header string, body []byte, who byte) {
	req, ok := fuzzRequest(method, target, header, body)
	if !ok {
		return // the server would answer 400 before the handler
	}
	req.RemoteAddr = "127.0.0.1:1234"
	id := int(who) % 4
	req.TLS = &tls.ConnectionState{HandshakeComplete: true, Version: tls.VersionTLS13}
	if id < 3 {
		req.TLS.PeerCertificates = []*x509.Certificate{h.certs[id]}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req = req.WithContext(ctx)

	// A request that hangs the handler is a bug too; go test -fuzz has no
	// per-input timeout, so crash the worker and let it record the input.
	watchdog := time.AfterFunc(10*time.Second, func() {
		panic(fmt.Sprintf("handler hung for 10s on %s %q (identity %d)", req.Method, req.RequestURI, id))
	})
	defer watchdog.Stop()
	h.store.trim(10000)
	before := h.store.writes()
	rec := httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(rec, req)
	wrote := h.store.writes() - before
	code := rec.Code
	isKey := strings.HasPrefix(req.URL.Path, kvs.KeyPath)

	if !slices.Contains(documented, code) {
		t.Fatalf("%s %q (identity %d): status %d not documented; body %q", req.Method, req.RequestURI, id, code, rec.Body.Bytes())
	}
	if code >= 300 && code < 400 && isKey {
		t.Fatalf("%s %q: key path redirected to %q", req.Method, req.RequestURI, rec.Header().Get("Location"))
	}
	if code >= 400 && req.RequestURI != "*" { // ServeMux answers "*" with a bare 400
		var e struct {
			Error string `json:"error"`
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %q: error %d with Content-Type %q", req.Method, req.RequestURI, code, ct)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
			t.Fatalf("%s %q: error %d body %q is not {\"error\": ...}", req.Method, req.RequestURI, code, rec.Body.Bytes())
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("%s %q: error %d without nosniff", req.Method, req.RequestURI, code)
		}
	}
	successfulWrite := isKey && ((req.Method == http.MethodPut && code == 200) || (req.Method == http.MethodDelete && code == 204))
	switch {
	case wrote > 1:
		t.Fatalf("%s %q: one request made %d writes", req.Method, req.RequestURI, wrote)
	case wrote == 1 && !successfulWrite:
		t.Fatalf("%s %q: status %d but the store changed", req.Method, req.RequestURI, code)
	case wrote == 0 && successfulWrite:
		t.Fatalf("%s %q: status %d but the store did not change", req.Method, req.RequestURI, code)
	}
	if successfulWrite && id != 0 {
		t.Fatalf("%s %q: identity %d may not write but got %d", req.Method, req.RequestURI, id, code)
	}
	if isKey && id >= 2 && code != 400 && code != 403 && code != 405 {
		t.Fatalf("%s %q: identity %d is not in the policy but got %d", req.Method, req.RequestURI, id, code)
	}
	if isKey && req.Method == http.MethodGet && code == 200 {
		if rec.Header().Get("Content-Type") != "application/octet-stream" || rec.Header().Get("Etag") == "" {
			t.Fatalf("GET %q: value answered with headers %v", req.RequestURI, rec.Header())
		}
	}
	if successfulWrite && req.Method == http.MethodPut && len(body) > fuzzMaxValue {
		t.Fatalf("PUT %q: stored a value of %d bytes over the %d limit", req.RequestURI, len(body), fuzzMaxValue)
	}
}

// fuzzRequest assembles and parses an HTTP/1.1 request; header holds
// "Name: value" lines. Without Content-Length or Transfer-Encoding the body
// gets a Content-Length.
func fuzzRequest(method, target, header string, body []byte) (*http.Request, bool) {
	var b bytes.Buffer
	b.WriteString(method + " " + target + " HTTP/1.1\r\nHost: localhost\r\n")
	lower := strings.ToLower(header)
	for line := range strings.SplitSeq(header, "\n") {
		line = strings.TrimRight(line, "\r")
		if line != "" {
			b.WriteString(line + "\r\n")
		}
	}
	if !strings.Contains(lower, "content-length") && !strings.Contains(lower, "transfer-encoding") {
		b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(body)
	req, err := http.ReadRequest(bufio.NewReader(&b))
	return req, err == nil
}

// memStore is an in-memory kvs.Store with the documented semantics, fast enough
// for fuzzing, which counts its writes.
type memStore struct {
	mu  sync.Mutex
	m   map[string]kvs.Entry
	rev int64
	nwr int
}

func newMemStore() *memStore { return &memStore{m: map[string]kvs.Entry{}} }

// trim empties the store when it holds more than n keys, so that long
// fuzzing runs stay small.
func (s *memStore) trim(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) > n {
		clear(s.m)
	}
}

func (s *memStore) writes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nwr
}

func (s *memStore) Get(ctx context.Context, key string) (kvs.Entry, error) {
	if err := kvs.ValidateKey(key); err != nil {
		return kvs.Entry{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if !ok {
		return kvs.Entry{}, kvs.ErrNotFound
	}
	e.Value = bytes.Clone(e.Value)
	return e, nil
}

func (s *memStore) Put(ctx context.Context, key string, value []byte, c kvs.Cond) (int64, error) {
	if err := kvs.ValidateKey(key); err != nil {
		return 0, err
	}
	if !c.Satisfiable() {
		return 0, kvs.ErrPrecondition
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.m[key]
	if (c.CreateOnly && ok) || (c.IfVersion > 0 && (!ok || cur.Version != c.IfVersion)) {
		return 0, kvs.ErrPrecondition
	}
	s.rev++
	s.nwr++
	s.m[key] = kvs.Entry{Key: key, Value: append([]byte{}, value...), Version: s.rev, Updated: time.Now().UTC()}
	return s.rev, nil
}

func (s *memStore) Delete(ctx context.Context, key string, c kvs.Cond) error {
	if err := kvs.ValidateKey(key); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.m[key]
	switch {
	case !ok:
		return kvs.ErrNotFound
	case c.CreateOnly || (c.IfVersion != 0 && cur.Version != c.IfVersion):
		return kvs.ErrPrecondition
	}
	delete(s.m, key)
	s.nwr++
	return nil
}

func (s *memStore) List(ctx context.Context, prefix, after string, limit int) ([]kvs.KeyInfo, string, error) {
	if err := kvs.ValidateKeyPart(prefix); err != nil {
		return nil, "", err
	}
	if err := kvs.ValidateKeyPart(after); err != nil {
		return nil, "", err
	}
	if limit < 1 {
		limit = kvs.MaxPageSize
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k := range s.m {
		if strings.HasPrefix(k, prefix) && k > after {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	next := ""
	if len(keys) > limit {
		keys, next = keys[:limit], keys[limit-1]
	}
	out := make([]kvs.KeyInfo, len(keys))
	for i, k := range keys {
		e := s.m[k]
		out[i] = kvs.KeyInfo{Key: k, Version: e.Version, Size: len(e.Value), Updated: e.Updated}
	}
	return out, next, nil
}

func (s *memStore) Ping(ctx context.Context) error { return nil }
func (s *memStore) Close() error                   { return nil }

var _ kvs.Store = (*memStore)(nil)
