package postgres

import (
	"os"
	"path/filepath"
	"testing"
)

// TestTLSFilesOf finds the files pgx reads, with pgx's precedence: the URL,
// then the environment, then ~/.postgresql when the files exist.
func TestTLSFilesOf(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	for _, v := range []string{"PGSSLCERT", "PGSSLKEY", "PGSSLROOTCERT"} {
		t.Setenv(v, "")
	}
	for _, tc := range []struct {
		name string
		url  string
		env  map[string]string
		home []string // files to create in ~/.postgresql
		want tlsFileSet
	}{
		{"none", "postgres://kvs@db/kvs?sslmode=verify-full", nil, nil, tlsFileSet{}},
		{"url", "postgres://kvs@db/kvs?sslmode=verify-full&sslrootcert=certs/ca.crt&sslcert=certs/issued/kvs.crt&sslkey=certs/issued/kvs.key",
			nil, nil, tlsFileSet{cert: "certs/issued/kvs.crt", key: "certs/issued/kvs.key", root: "certs/ca.crt"}},
		{"percent-encoded, last wins, plus kept", "postgresql://kvs@db/kvs?sslcert=a&sslcert=%2Fetc%2Fkvs+1.crt&sslkey=/k",
			nil, nil, tlsFileSet{cert: "/etc/kvs+1.crt", key: "/k"}},
		{"multi-host URL", "postgres://kvs@db1:5432,db2:5433/kvs?sslrootcert=/ca.crt", nil, nil, tlsFileSet{root: "/ca.crt"}},
		{"system roots are no file", "postgres://kvs@db/kvs?sslrootcert=system&sslcert=/c&sslkey=/k", nil, nil, tlsFileSet{cert: "/c", key: "/k"}},
		{"environment", "postgres://kvs@db/kvs?sslkey=/url.key",
			map[string]string{"PGSSLCERT": "/env.crt", "PGSSLKEY": "/env.key", "PGSSLROOTCERT": "/env-ca.crt"}, nil,
			tlsFileSet{cert: "/env.crt", key: "/url.key", root: "/env-ca.crt"}},
		{"an empty URL value wins over the environment", "postgres://kvs@db/kvs?sslrootcert=",
			map[string]string{"PGSSLROOTCERT": "/env-ca.crt"}, nil, tlsFileSet{}},
		{"home, when the files exist", "postgres://kvs@db/kvs", nil, []string{"postgresql.crt", "root.crt"},
			tlsFileSet{cert: filepath.Join(home, ".postgresql", "postgresql.crt"), root: filepath.Join(home, ".postgresql", "root.crt")}},
		{"keyword/value: nothing watched", "host=db sslcert=/kv.crt", map[string]string{"PGSSLCERT": "/env.crt"}, nil,
			tlsFileSet{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			pgdir := filepath.Join(home, ".postgresql")
			os.RemoveAll(pgdir)
			for _, f := range tc.home {
				if err := os.MkdirAll(pgdir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(pgdir, f), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if got := tlsFilesOf(tc.url); got != tc.want {
				t.Errorf("tlsFilesOf(%q) = %+v, want %+v", tc.url, got, tc.want)
			}
		})
	}
}
