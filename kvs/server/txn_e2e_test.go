package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvsctl/kvsctl/kvs"
	"github.com/kvsctl/kvsctl/pki"
)

// postTxn sends body to POST /v1/txn with a plain HTTP client and returns
// the status and the answer.
func postTxn(t *testing.T, hc *http.Client, addr, body string) (int, string) {
	t.Helper()
	resp, err := hc.Post(serverURL(addr)+kvs.TxnPath, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// storeKeys lists every key of a store, read directly (not through the
// server).
func storeKeys(t *testing.T, s kvs.Store) []string {
	t.Helper()
	keys, _, err := s.List(context.Background(), "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range keys {
		out = append(out, k.Key)
	}
	return out
}

// TestE2ETxnRefused: every malformed, oversized or forbidden transaction
// gets its status (400, 413, 403) and applies nothing; each body starts
// with a valid put that would otherwise be written. The forbidden
// operation sits in the branch that would not run. The control server
// without a policy and with the default limits applies the same
// forbidden and 413 transactions.
func TestE2ETxnRefused(t *testing.T) {
	d := testPKI(t, false)
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := pki.WriteFileAtomic(path, []byte("identities:\n  client:\n    prefixes: [\"app/\"]\n    operations: [read, write, list]\n"), 0o644, true); err != nil {
		t.Fatal(err)
	}
	put := `{"op": "put", "key": "app/x", "value": "MQ=="}`
	many := strings.Repeat(`{"op": "get", "key": "app/y"}, `, 5)
	big := strings.Repeat("A", 4000)
	forbidden := []struct{ name, body string }{
		{"put outside the prefix in the unused branch", `{"success": [` + put + `], "failure": [{"op": "put", "key": "other/x", "value": "MQ=="}]}`},
		{"delete without the operation in the unused branch", `{"success": [` + put + `], "failure": [{"op": "delete", "key": "app/x"}]}`},
		{"delete_prefix without the operation", `{"success": [` + put + `, {"op": "delete_prefix", "prefix": "app/old/"}]}`},
		{"compare outside the prefix", `{"compare": [{"key": "secret/k", "exists": false}], "success": [` + put + `]}`},
		{"get outside the prefix in the unused branch", `{"compare": [{"key": "app/x", "exists": false}], "success": [` + put + `], "failure": [{"op": "get", "key": "secret/k"}]}`},
	}
	tooLarge := []struct{ name, body string }{
		{"more operations than --max-txn-ops", `{"success": [` + put + `, ` + strings.TrimSuffix(many, ", ") + `]}`},
		{"more compares than --max-txn-ops", `{"compare": [` + strings.TrimSuffix(strings.Repeat(`{"key": "app/y", "exists": false}, `, 5), ", ") + `], "success": [` + put + `]}`},
		{"body over the limit", `{"success": [` + put + `, {"op": "put", "key": "app/big", "value": "` + big + big + `"}]}`},
		{"value over --max-value", `{"success": [` + put + `, {"op": "put", "key": "app/big", "value": "` + big[:2000] + `"}]}`},
	}
	malformed := []struct{ name, body string }{
		{"not JSON", `{"success": [` + put + `,`},
		{"unknown op", `{"success": [` + put + `, {"op": "increment", "key": "app/x"}]}`},
		{"bad base64", `{"success": [` + put + `, {"op": "put", "key": "app/y", "value": "%%%"}]}`},
		{"bad base64 in a compare", `{"compare": [{"key": "app/x", "value": "!"}], "success": [` + put + `]}`},
		{"unknown field", `{"success": [` + put + `], "else": []}`},
		{"compare with two conditions", `{"compare": [{"key": "app/x", "exists": true, "version": 1}], "success": [` + put + `]}`},
		{"compare with none", `{"compare": [{"key": "app/x"}], "success": [` + put + `]}`},
		{"two JSON values", `{"success": [` + put + `]} {}`},
		{"invalid key", `{"success": [` + put + `, {"op": "get", "key": ""}]}`},
		{"empty prefix", `{"success": [` + put + `, {"op": "delete_prefix", "prefix": ""}]}`},
		{"wrong type", `{"success": [` + put + `, {"op": "put", "key": 7}]}`},
	}
	for _, withPolicy := range []bool{true, false} {
		t.Run(map[bool]string{true: "policy-and-limits", false: "control"}[withPolicy], func(t *testing.T) {
			ts := startServer(t, d, nil, func(c *Config) {
				if withPolicy {
					c.PolicyFile, c.MaxTxnOps, c.MaxTxnBytes, c.MaxValue = path, 4, 6000, 1000
				}
			})
			hc := httpClient(t, clientTLS(t, clientFiles(t, d), nil), false)
			check := func(name, body string, want int) {
				t.Helper()
				status, answer := postTxn(t, hc, ts.addr, body)
				if status != want {
					t.Errorf("%s: status %d (%s), want %d", name, status, strings.TrimSpace(answer), want)
				}
				keys := storeKeys(t, ts.store)
				if want != http.StatusOK && len(keys) > 0 {
					t.Errorf("%s: refused with %d but wrote %q", name, status, keys)
				}
				if want == http.StatusOK && len(keys) == 0 {
					t.Errorf("control: %s: nothing written", name)
				}
				for _, k := range keys {
					if _, err := kvs.Store(ts.store).(kvs.PrefixDeleter).DeletePrefix(context.Background(), k); err != nil {
						t.Fatal(err)
					}
				}
			}
			for _, tc := range forbidden {
				check(tc.name, tc.body, map[bool]int{true: http.StatusForbidden, false: http.StatusOK}[withPolicy])
			}
			for _, tc := range tooLarge {
				check(tc.name, tc.body, map[bool]int{true: http.StatusRequestEntityTooLarge, false: http.StatusOK}[withPolicy])
			}
			for _, tc := range malformed {
				check(tc.name, tc.body, http.StatusBadRequest)
			}
			// Within the limits and the policy: applied.
			check("allowed", `{"compare": [{"key": "app/x", "exists": false}], "success": [`+put+`, {"op": "get", "key": "app/x"}], "failure": [{"op": "get", "key": "app/x"}]}`, http.StatusOK)
			// A compare that fails applies nothing of success.
			status, answer := postTxn(t, hc, ts.addr, `{"compare": [{"key": "app/x", "exists": true}], "success": [`+put+`], "failure": [{"op": "get", "key": "app/x"}]}`)
			if status != http.StatusOK || !strings.Contains(answer, `"branch":"failure"`) {
				t.Errorf("compare fails: %d %s, want 200 and the failure branch", status, answer)
			}
			if keys := storeKeys(t, ts.store); len(keys) > 0 {
				t.Errorf("compare fails: wrote %q", keys)
			}
		})
	}
}

// TestE2ETxnAnswer: the answer names the branch, the revision and each
// result; GET on /v1/txn is 405.
func TestE2ETxnAnswer(t *testing.T) {
	d := testPKI(t, false)
	ts := startServer(t, d, nil, nil)
	hc := httpClient(t, clientTLS(t, clientFiles(t, d), nil), false)
	status, body := postTxn(t, hc, ts.addr, `{"compare": [{"key": "k", "version": 0}], "success": [{"op": "put", "key": "k", "value": "aGk="}, {"op": "get", "key": "k"}, {"op": "delete_prefix", "prefix": "none/"}]}`)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	var res kvs.TxnResponse
	if err := json.Unmarshal([]byte(body), &res); err != nil {
		t.Fatal(err)
	}
	if !res.Succeeded || res.Branch != "success" || res.Revision < 1 || len(res.Results) != 3 ||
		res.Results[0].Version != res.Revision || *res.Results[1].Value != "aGk=" || *res.Results[2].Deleted != 0 || res.Results[2].Prefix != "none/" {
		t.Errorf("answer = %s", body)
	}
	resp, err := hc.Get(serverURL(ts.addr) + kvs.TxnPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/txn: %d, want 405", resp.StatusCode)
	}
}

// TestE2EDeletePrefix: DELETE /v1/kv?prefix=P needs the policy's delete on
// P: a prefix wider than the allowed one is refused and deletes nothing.
func TestE2EDeletePrefix(t *testing.T) {
	d := testPKI(t, false)
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := pki.WriteFileAtomic(path, []byte("identities:\n  client:\n    prefixes: [\"app/\"]\n    operations: [read, write, list, delete]\n"), 0o644, true); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, d, nil, func(c *Config) { c.PolicyFile = path })
	c := newTestClient(t, d, ts.addr, nil)
	ctx := context.Background()
	for _, k := range []string{"app/tmp/1", "app/tmp/2", "app/keep", "apple"} {
		if _, err := ts.store.Put(ctx, k, []byte("x"), kvs.Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.DeletePrefix(ctx, "app"); !errors.Is(err, kvs.ErrForbidden) {
		t.Errorf("delete prefix app (wider than app/): %v, want 403", err)
	}
	if n, err := c.DeletePrefix(ctx, "app/tmp/"); err != nil || n != 2 {
		t.Errorf("delete prefix app/tmp/ = %d, %v; want 2", n, err)
	}
	if got := fmt.Sprint(storeKeys(t, ts.store)); got != "[app/keep apple]" {
		t.Errorf("keys left: %s", got)
	}
	hc := httpClient(t, clientTLS(t, clientFiles(t, d), nil), false)
	req, _ := http.NewRequest(http.MethodDelete, serverURL(ts.addr)+kvs.ListPath, nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("DELETE /v1/kv without a prefix: %d, want 400", resp.StatusCode)
	}
}

// TestE2ESnapshotAdmin: GET /v1/snapshot needs the admin operation; the
// control policy with it gets the snapshot.
func TestE2ESnapshotAdmin(t *testing.T) {
	d := testPKI(t, false)
	for _, tc := range []struct {
		ops  string
		want int
	}{{"[read, write, list, delete]", http.StatusForbidden}, {"[read, admin]", http.StatusOK}} {
		path := filepath.Join(t.TempDir(), "policy.yaml")
		if err := pki.WriteFileAtomic(path, []byte("identities:\n  client:\n    prefixes: [\"\"]\n    operations: "+tc.ops+"\n"), 0o644, true); err != nil {
			t.Fatal(err)
		}
		ts := startServer(t, d, nil, func(c *Config) { c.PolicyFile = path })
		if _, err := ts.store.Put(context.Background(), "k", []byte("v"), kvs.Cond{}); err != nil {
			t.Fatal(err)
		}
		hc := httpClient(t, clientTLS(t, clientFiles(t, d), nil), false)
		resp, err := hc.Get(serverURL(ts.addr) + kvs.SnapshotPath)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("operations %s: status %d, want %d", tc.ops, resp.StatusCode, tc.want)
		}
		if tc.want == http.StatusOK && (!bytes.HasPrefix(b, []byte("KVSSNAP\n")) || resp.Header.Get(HeaderSnapshotRevision) == "") {
			t.Errorf("operations %s: not a snapshot (%d bytes, revision header %q)", tc.ops, len(b), resp.Header.Get(HeaderSnapshotRevision))
		}
		if tc.want != http.StatusOK && bytes.Contains(b, []byte("k")) && bytes.HasPrefix(b, []byte("KVSSNAP")) {
			t.Errorf("operations %s: refused but sent the snapshot", tc.ops)
		}
	}
}
