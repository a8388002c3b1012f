package pgtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TLSFiles are the files a TLS cluster serves with, where the test keeps
// them (in its PKI directory). The cluster copies them into its own
// directory, owned by the server's user with the modes PostgreSQL
// requires, at start and at every Reload.
type TLSFiles struct {
	Cert string // ssl_cert_file: the server's certificate, then its intermediate
	Key  string // ssl_key_file
	CA   string // ssl_ca_file: the roots client certificates must chain to
	CRL  string // ssl_crl_file: one CRL per CA of the chain; "" for none
}

// PKIFiles returns the files of a kvsctl PKI directory for a PostgreSQL
// server: issued/postgres.crt and .key (kvsctl pki issue server postgres),
// ca.crt and crl.pem.
func PKIFiles(pkiDir string) TLSFiles {
	return TLSFiles{
		Cert: filepath.Join(pkiDir, "issued", "postgres.crt"),
		Key:  filepath.Join(pkiDir, "issued", "postgres.key"),
		CA:   filepath.Join(pkiDir, "ca.crt"),
		CRL:  filepath.Join(pkiDir, "crl.pem"),
	}
}

// Cluster is a private PostgreSQL server of one test: its own data
// directory in a temporary directory, its own port on 127.0.0.1, and a
// Unix socket in that directory, stopped and removed when the test ends
// (failed or not). Only TLS connections with a client certificate are
// accepted over TCP (pg_hba.conf "hostssl all all 127.0.0.1/32 cert",
// nothing else for TCP), so the database role is the certificate's common
// name; the superuser connects over the socket, without TLS.
type Cluster struct {
	Port int    // on 127.0.0.1
	Dir  string // data/, ssl/, log, the socket; owned by the server's user

	bin   string // directory of initdb and pg_ctl
	owner *user.User
	files TLSFiles
}

// TLSCluster starts a cluster serving the PKI of pkiDir (see PKIFiles)
// with role kvs and database kvs, owned by kvs. Without the PostgreSQL
// server binaries the test skips loudly, or fails under CI=true.
func TLSCluster(t testing.TB, pkiDir string) *Cluster {
	t.Helper()
	c := StartTLSCluster(t, PKIFiles(pkiDir))
	c.Exec(t, "CREATE ROLE kvs LOGIN")
	c.Exec(t, "CREATE DATABASE kvs OWNER kvs")
	return c
}

// StartTLSCluster starts a cluster serving files, with no role but the
// superuser postgres.
func StartTLSCluster(t testing.TB, files TLSFiles) *Cluster {
	t.Helper()
	c := &Cluster{bin: serverBinaries(t), files: files}
	dir, err := os.MkdirTemp("", "kvs-pgtls-") // not t.TempDir: its parent is closed to the server's user
	if err != nil {
		t.Fatal(err)
	}
	c.Dir = dir
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		// initdb refuses to run as root: the cluster belongs to postgres.
		if c.owner, err = user.Lookup("postgres"); err != nil {
			t.Fatalf("running as root needs an OS user postgres to own the test cluster: %v", err)
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c.chown(t, dir)
	c.Port = freeTCPPort(t)
	if out, err := c.cmd("initdb", "-D", c.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	ssl := filepath.Join(dir, "ssl")
	if err := os.Mkdir(ssl, 0o700); err != nil {
		t.Fatal(err)
	}
	c.chown(t, ssl)
	c.copyFiles(t)
	conf := fmt.Sprintf(`
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
max_connections = 60
shared_buffers = 16MB
fsync = off
log_connections = on
ssl = on
ssl_cert_file = '%s'
ssl_key_file = '%s'
ssl_ca_file = '%s'
`, c.Port, dir, c.ssl("server.crt"), c.ssl("server.key"), c.ssl("ca.crt"))
	if files.CRL != "" {
		conf += fmt.Sprintf("ssl_crl_file = '%s'\n", c.ssl("crl.pem"))
	}
	c.appendFile(t, filepath.Join(c.data(), "postgresql.conf"), conf)
	c.writeFile(t, filepath.Join(c.data(), "pg_hba.conf"), []byte(
		"local all all trust\nhostssl all all 127.0.0.1/32 cert\n"), 0o600)
	t.Cleanup(func() { _ = c.cmd("pg_ctl", "-D", c.data(), "-m", "immediate", "-w", "stop").Run() })
	if out, err := c.cmd("pg_ctl", "-D", c.data(), "-l", c.LogFile(), "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, c.Log())
	}
	return c
}

// serverBinaries finds the directory of initdb and pg_ctl: PATH first,
// then the newest /usr/lib/postgresql/*/bin.
func serverBinaries(t testing.TB) string {
	t.Helper()
	var dirs []string
	if p, err := exec.LookPath("initdb"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Sort(sort.Reverse(sort.StringSlice(found)))
	for _, p := range found {
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d
		}
	}
	const msg = "no initdb and pg_ctl in PATH or /usr/lib/postgresql/*/bin: tests on a private PostgreSQL cluster NOT RUN"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; CI=true requires them")
	}
	loudSkip.Do(func() { fmt.Fprintln(os.Stderr, "!!! "+msg+" !!!") })
	t.Skip("!!! " + msg + " !!!")
	return ""
}

// Addr is the server's TCP address, 127.0.0.1:port.
func (c *Cluster) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port)) }

// Superuser is a keyword/value connection string for the superuser
// postgres, over the cluster's Unix socket, to database db.
func (c *Cluster) Superuser(db string) string {
	return fmt.Sprintf("host='%s' port=%d user=postgres dbname='%s' sslmode=disable", c.Dir, c.Port, db)
}

// Exec runs statements as the superuser in database postgres.
func (c *Cluster) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.Superuser("postgres"))
	if err != nil {
		t.Fatalf("connect as superuser: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// Reload copies the TLS files again (after the test revoked, renewed or
// rotated something) and makes the server reload them with pg_ctl reload
// (SIGHUP), as an operator would; it returns once connections made from
// then on see them, and fails the test when the server did not take the
// new SSL configuration.
func (c *Cluster) Reload(t testing.TB) {
	t.Helper()
	c.ReloadFiles(t, c.files)
}

// ReloadFiles is Reload with other files, which Reload uses from then on.
func (c *Cluster) ReloadFiles(t testing.TB, files TLSFiles) {
	t.Helper()
	if (files.CRL == "") != (c.files.CRL == "") {
		t.Fatal("pgtest: a reload cannot add or remove ssl_crl_file")
	}
	c.files = files
	before := c.confLoadTime(t)
	logSize := len(c.Log())
	c.copyFiles(t)
	if out, err := c.cmd("pg_ctl", "-D", c.data(), "reload").CombinedOutput(); err != nil {
		t.Fatalf("pg_ctl reload: %v\n%s", err, out)
	}
	// The postmaster reloads everything, SSL files included, before it
	// starts another backend, so a new session that sees the new load
	// time also gets the new SSL context.
	deadline := time.Now().Add(20 * time.Second)
	for !c.confLoadTime(t).After(before) {
		if time.Now().After(deadline) {
			t.Fatalf("the server did not reload within 20s:\n%s", c.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if log := c.Log(); len(log) >= logSize && strings.Contains(log[logSize:], "SSL configuration was not reloaded") {
		t.Fatalf("the server refused the new SSL files:\n%s", log[logSize:])
	}
}

// confLoadTime is pg_conf_load_time() as a new session sees it.
func (c *Cluster) confLoadTime(t testing.TB) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.Superuser("postgres"))
	if err != nil {
		t.Fatalf("connect as superuser: %v", err)
	}
	defer conn.Close(context.Background())
	var at time.Time
	if err := conn.QueryRow(ctx, "SELECT pg_conf_load_time()").Scan(&at); err != nil {
		t.Fatalf("pg_conf_load_time: %v", err)
	}
	return at
}

// LogFile is the server's log (pg_ctl -l).
func (c *Cluster) LogFile() string { return filepath.Join(c.Dir, "log") }

// Log returns the server's log so far.
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(c.LogFile())
	return string(b)
}

func (c *Cluster) data() string           { return filepath.Join(c.Dir, "data") }
func (c *Cluster) ssl(name string) string { return filepath.Join(c.Dir, "ssl", name) }

// copyFiles puts the TLS files where the server reads them: owned by its
// user, the key 0600 (PostgreSQL refuses a key others may read).
func (c *Cluster) copyFiles(t testing.TB) {
	t.Helper()
	for _, f := range []struct {
		from, to string
		mode     os.FileMode
	}{
		{c.files.Cert, "server.crt", 0o644},
		{c.files.Key, "server.key", 0o600},
		{c.files.CA, "ca.crt", 0o644},
		{c.files.CRL, "crl.pem", 0o644},
	} {
		if f.from == "" {
			continue
		}
		b, err := os.ReadFile(f.from)
		if err != nil {
			t.Fatal(err)
		}
		c.writeFile(t, c.ssl(f.to), b, f.mode)
	}
}

// writeFile replaces path (through a rename, so the server never reads
// half a file) with a file owned by the server's user.
func (c *Cluster) writeFile(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		t.Fatal(err)
	}
	c.chown(t, tmp)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func (c *Cluster) appendFile(t testing.TB, path, text string) {
	t.Helper()
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	c.writeFile(t, path, append(bytes.Clone(old), text...), fi.Mode().Perm())
}

// chown gives path to the server's user when the test runs as root.
func (c *Cluster) chown(t testing.TB, path string) {
	t.Helper()
	if c.owner == nil {
		return
	}
	uid, _ := strconv.Atoi(c.owner.Uid)
	gid, _ := strconv.Atoi(c.owner.Gid)
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

// cmd runs a server program as the server's user.
func (c *Cluster) cmd(tool string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.bin, tool), args...)
	cmd.Dir = c.Dir
	if c.owner != nil {
		uid, _ := strconv.Atoi(c.owner.Uid)
		gid, _ := strconv.Atoi(c.owner.Gid)
		runAs(cmd, uint32(uid), uint32(gid))
	}
	return cmd
}

// freeTCPPort returns a port on 127.0.0.1 that was free a moment ago.
func freeTCPPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
