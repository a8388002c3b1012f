package kvs

import (
	"strings"
	"testing"
)

// TestRedactURL feeds the store URLs users write, with their secrets, to
// the one redactor every log line and error uses (security finding 6).
func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"bolt:data/kvs.db", "bolt:data/kvs.db"},
		{"postgres://kvs:hunter2@127.0.0.1:5432/kvs", "postgres://kvs:xxxxx@127.0.0.1:5432/kvs"},
		{"postgres://kvs@db/kvs?password=hunter2", "postgres://kvs@db/kvs?password=xxxxx"},
		{"postgres://kvs@db/kvs?sslmode=verify-full&sslpassword=hunter2&sslkey=/k.pem", "postgres://kvs@db/kvs?sslmode=verify-full&sslpassword=xxxxx&sslkey=/k.pem"},
		{"postgresql://kvs@db/kvs?PassWord=hunter2", "postgresql://kvs@db/kvs?PassWord=xxxxx"},
		{"postgres://kvs@db/kvs?ssl%70assword=hunter2", "postgres://kvs@db/kvs?ssl%70assword=xxxxx"},
		{"postgres://kvs:hun@ter2@db/kvs", "postgres://kvs:xxxxx@db/kvs"},
		{"postgres://kvs:hunter2@[::1/kvs", "postgres:(URL not shown)"},
		{"postgres://kvs:hunter2@db:port/kvs", "postgres:(URL not shown)"},
		{"postgres://kvs:hunter2@db/kvs#hunter2", "postgres://kvs:xxxxx@db/kvs"},
		{"postgres://kvs:p#ss@db/kvs", "postgres:(URL not shown)"},
		{"host=db password=hunter2", "(URL not shown)"},
		{"kvs:hunter2@db/kvs", "kvs:(URL not shown)"},
		{"postgres://kvs@db/kvs?password", "postgres://kvs@db/kvs?password"},
		// The documented TLS URL (docs/postgres-tls.md): file paths are no
		// secret and are kept, so an operator sees which files are used.
		{"postgres://kvs@127.0.0.1:5432/kvs?sslmode=verify-full&sslrootcert=certs/ca.crt&sslcert=certs/issued/kvs.crt&sslkey=certs/issued/kvs.key",
			"postgres://kvs@127.0.0.1:5432/kvs?sslmode=verify-full&sslrootcert=certs/ca.crt&sslcert=certs/issued/kvs.crt&sslkey=certs/issued/kvs.key"},
		{"postgres://kvs:hunter2@db/kvs?sslmode=verify-full&sslkey=/etc/kvs/kvs.key&sslpassword=hunter2",
			"postgres://kvs:xxxxx@db/kvs?sslmode=verify-full&sslkey=/etc/kvs/kvs.key&sslpassword=xxxxx"},
	} {
		got := RedactURL(tc.in)
		if strings.Contains(got, "hunter2") || strings.Contains(got, "ter2") || strings.Contains(got, "ss@") {
			t.Errorf("RedactURL(%q) = %q: shows the secret", tc.in, got)
		}
		if got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
