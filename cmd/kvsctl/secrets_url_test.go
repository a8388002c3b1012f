package main

import (
	"net/url"
	"strings"
	"testing"

	"github.com/kvsctl/kvsctl/kvs/postgres/pgtest"
)

// TestStoreURLSecretsNotShown starts serve with the store URLs users get
// wrong or right, with a password in the userinfo or in a query parameter
// (password, sslpassword), in both log formats: no start-up line and no
// error may show the secret (security finding 6).
func TestStoreURLSecretsNotShown(t *testing.T) {
	const secret = "hunter2-url-secret"
	dir := kvPKI(t, false)
	for _, format := range []string{"text", "json"} {
		for _, store := range []string{
			"postgres://kvs:" + secret + "@127.0.0.1:1/kvs",
			"postgres://kvs@127.0.0.1:1/kvs?password=" + secret,
			"postgres://kvs@127.0.0.1:1/kvs?sslmode=require&sslpassword=" + secret,
			"postgresql://kvs:" + secret + "@[::1/kvs",
			"postgres://kvs:" + secret + "@127.0.0.1:notaport/kvs",
			"mysql://root:" + secret + "@db/kvs",
			"host=db password=" + secret,
		} {
			code, out, errs := execKV(t, nil, "serve", "--listen", "127.0.0.1:0", "--dir", dir, "--store", store, "--log-format", format, "--statement-timeout", "1s")
			if code == 0 {
				t.Errorf("serve --store %q started", store)
			}
			if strings.Contains(out+errs, secret) {
				t.Errorf("serve --store %q (%s logs) shows the secret:\n%s%s", store, format, out, errs)
			}
		}
	}
	u, err := url.Parse(pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("sslpassword", secret) // pgx ignores it without sslkey; a user may still write it
	u.RawQuery = q.Encode()
	for _, format := range []string{"text", "json"} {
		srv := startServeCLI(t, dir, "--store", u.String(), "--log-format", format, "--pool-size", "2")
		srv.stop()
		if log := srv.stderr.String(); strings.Contains(log, secret) || !strings.Contains(log, "sslpassword=xxxxx") {
			t.Errorf("%s start-up lines show the secret, or not the masked parameter:\n%s", format, log)
		}
	}
}
