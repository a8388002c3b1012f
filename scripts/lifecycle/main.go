// Command lifecycle runs kvsctl's certificate lifecycle end to end for a
// few minutes and writes what happened as a Markdown report ('make
// lifecycle'): the online CA ('kvsctl pki serve'), two 'kvsctl serve' on
// one PostgreSQL database fetching their CRLs from it, certificates with a
// two-minute lifetime for both servers and both clients, a renewal agent
// for each host, and 'kvsctl bench --op mixed' against both servers the
// whole time. In the middle the CA is stopped for a minute; later a client
// is revoked and the time until both servers refuse it is measured.
//
// Usage:
//
//	go run ./scripts/lifecycle [-bin bin/kvsctl] [-duration 6m] [-out report.md]
//
// PostgreSQL comes from KVS_TEST_DATABASE (default
// postgres://postgres@127.0.0.1:5432/test); a database of its own is made
// on that server and dropped afterwards.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

func main() {
	bin := flag.String("bin", "bin/kvsctl", "the kvsctl binary")
	duration := flag.Duration("duration", 6*time.Minute, "how long the load runs")
	out := flag.String("out", "", "write the report here (default: stdout)")
	ttl := flag.Duration("cert-ttl", 2*time.Minute, "lifetime of every certificate the CA issues")
	outage := flag.Duration("outage", time.Minute, "how long the CA is stopped, from 40% of the run")
	keep := flag.Bool("keep", false, "keep the work directory (certificates, logs) for a look")
	flag.Parse()
	abs, err := filepath.Abs(*bin)
	if err != nil {
		log.Fatal(err)
	}
	r := &run{bin: abs, duration: *duration, ttl: *ttl, outage: *outage, start: time.Now(), keep: *keep}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	report, err := r.main(ctx)
	r.cleanup()
	if err != nil {
		log.Fatalf("lifecycle: %v", err)
	}
	if *out == "" {
		fmt.Print(report)
		return
	}
	if err := os.WriteFile(*out, []byte(report), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "lifecycle: wrote %s\n", *out)
}

// run is one lifecycle run.
type run struct {
	bin      string
	duration time.Duration
	ttl      time.Duration
	outage   time.Duration
	keep     bool
	start    time.Time
	work     string
	db       string // database URL of the run
	dropDB   func()

	mu    sync.Mutex
	procs []*proc
	notes []string // timeline
}

// proc is a kvsctl process of the run, its stderr kept in a file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func (r *run) note(format string, a ...any) {
	line := fmt.Sprintf("%6.1fs  %s", time.Since(r.start).Seconds(), fmt.Sprintf(format, a...))
	r.mu.Lock()
	r.notes = append(r.notes, line)
	r.mu.Unlock()
	fmt.Fprintln(os.Stderr, "lifecycle:", line)
}

// kvsctl runs a command to completion and returns its stdout.
func (r *run) kvsctl(args ...string) (string, error) {
	cmd := exec.Command(r.bin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("kvsctl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// startProc starts a long-running kvsctl process.
func (r *run) startProc(name string, args ...string) (*proc, error) {
	p := &proc{name: name, log: filepath.Join(r.work, name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(r.bin, args...)
	p.cmd.Stderr, p.cmd.Stdout = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	go func() { p.err = p.cmd.Wait(); f.Close(); close(p.done) }()
	r.mu.Lock()
	r.procs = append(r.procs, p)
	r.mu.Unlock()
	return p, nil
}

func (p *proc) stop() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(os.Interrupt)
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (r *run) cleanup() {
	r.mu.Lock()
	procs := slices.Clone(r.procs)
	r.mu.Unlock()
	for _, p := range procs {
		p.stop()
	}
	if r.dropDB != nil {
		r.dropDB()
	}
	if r.work != "" && !r.keep {
		os.RemoveAll(r.work)
	} else if r.work != "" {
		fmt.Fprintf(os.Stderr, "lifecycle: kept %s\n", r.work)
	}
}

// waitLog waits until the process's log holds want.
func waitLog(p *proc, want string, within time.Duration) (string, error) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(p.log)
		if strings.Contains(string(data), want) {
			return string(data), nil
		}
		select {
		case <-p.done:
			return string(data), fmt.Errorf("%s exited (%v): %s", p.name, p.err, data)
		default:
		}
		time.Sleep(50 * time.Millisecond)
	}
	data, _ := os.ReadFile(p.log)
	return string(data), fmt.Errorf("%s: no %q within %s: %s", p.name, want, within, data)
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// database makes a database of the run on the server of KVS_TEST_DATABASE.
func (r *run) database(ctx context.Context) error {
	admin := os.Getenv("KVS_TEST_DATABASE")
	if admin == "" {
		admin = "postgres://postgres@127.0.0.1:5432/test"
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return fmt.Errorf("PostgreSQL (KVS_TEST_DATABASE): %w", err)
	}
	name := fmt.Sprintf("kvsctl_lifecycle_%d", time.Now().Unix())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		conn.Close(ctx)
		return fmt.Errorf("create database: %w", err)
	}
	u, _ := url.Parse(admin)
	u.Path = "/" + name
	r.db = u.String()
	r.dropDB = func() {
		_, _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		conn.Close(context.Background())
	}
	return nil
}

// host is one enrolled host: its directory and the name it enrolled as.
type host struct {
	dir, name string
}

func (h host) cert() string { return filepath.Join(h.dir, h.name+".crt") }
func (h host) key() string  { return filepath.Join(h.dir, h.name+".key") }

func (r *run) main(ctx context.Context) (string, error) {
	var err error
	if r.work, err = os.MkdirTemp("", "kvsctl-lifecycle-"); err != nil {
		return "", err
	}
	if err := r.database(ctx); err != nil {
		return "", err
	}
	caDir := filepath.Join(r.work, "ca")
	if _, err := r.kvsctl("pki", "init", "--dir", caDir, "--hosts", "localhost,127.0.0.1"); err != nil {
		return "", err
	}
	caAddr, err := freeAddr()
	if err != nil {
		return "", err
	}
	crlAddr, err := freeAddr()
	if err != nil {
		return "", err
	}
	_, caPort, _ := net.SplitHostPort(caAddr)
	caURL := "https://localhost:" + caPort
	caArgs := []string{"pki", "serve", "--dir", caDir, "--listen", caAddr, "--crl-listen", crlAddr, "--cert-ttl", r.ttl.String(), "--log-format", "json"}
	ca, err := r.startProc("ca", caArgs...)
	if err != nil {
		return "", err
	}
	caLog, err := waitLog(ca, "root fingerprint", 20*time.Second)
	if err != nil {
		return "", err
	}
	fp := strings.Fields(caLog[strings.Index(caLog, "--fingerprint): ")+len("--fingerprint): "):])[0]
	r.note("pki serve on %s (CRLs on http://%s), certificates of %s", caURL, crlAddr, r.ttl)

	// Enroll the hosts: two servers, the bench client, a client to revoke.
	hosts := map[string]host{
		"s1": {filepath.Join(r.work, "s1"), "server"}, "s2": {filepath.Join(r.work, "s2"), "server"},
		"c1": {filepath.Join(r.work, "c1"), "client"}, "c2": {filepath.Join(r.work, "c2"), "client"},
	}
	for _, n := range []string{"s1", "s2", "c1", "c2"} {
		h := hosts[n]
		tokArgs := []string{"pki", "token", h.name, "--dir", caDir, "--profile", "client"}
		if h.name == "server" {
			tokArgs = []string{"pki", "token", h.name, "--dir", caDir, "--profile", "server", "--hosts", "localhost,127.0.0.1"}
		}
		tok, err := r.kvsctl(tokArgs...)
		if err != nil {
			return "", err
		}
		if _, err := r.kvsctl("pki", "enroll", "--ca-url", caURL, "--fingerprint", fp, "--token", strings.TrimSpace(tok), "--dir", h.dir, h.name); err != nil {
			return "", err
		}
		// Renew at 40% of the lifetime: a two-minute certificate then has 72 s
		// left, enough to ride out the one-minute outage of the CA.
		if _, err := r.startProc("agent-"+n, "pki", "renew", "--daemon", "--ca-url", caURL, "--cert", h.cert(), "--key", h.key(),
			"--ca-file", filepath.Join(h.dir, "ca.crt"), "--renew-at", "0.4", "--log-format", "json"); err != nil {
			return "", err
		}
	}
	r.note("enrolled s1, s2 (server) and c1, c2 (client) through tokens; a renewal agent on each")

	servers := map[string]string{}
	for _, n := range []string{"s1", "s2"} {
		addr, err := freeAddr()
		if err != nil {
			return "", err
		}
		p, err := r.startProc("serve-"+n, "serve", "--dir", hosts[n].dir, "--listen", addr, "--store", r.db,
			"--crl-url", "http://"+crlAddr+"/v1/pki/crls", "--crl-refresh", "10s", "--reload-interval", "1s", "--log-format", "json")
		if err != nil {
			return "", err
		}
		if _, err := waitLog(p, `"msg":"ready"`, 30*time.Second); err != nil {
			return "", err
		}
		_, port, _ := net.SplitHostPort(addr)
		servers[n] = "localhost:" + port
	}
	r.note("kvsctl serve s1 on %s and s2 on %s, one PostgreSQL database, CRLs fetched every 10s", servers["s1"], servers["s2"])

	var benches []*proc
	for _, n := range []string{"s1", "s2"} {
		p, err := r.startProc("bench-"+n, "bench", "--server", servers[n], "--dir", hosts["c1"].dir, "--op", "mixed", "--preload",
			"--keys", "1000", "--clients", "4", "--duration", r.duration.String(), "--json", "--quiet")
		if err != nil {
			return "", err
		}
		benches = append(benches, p)
	}
	r.note("kvsctl bench --op mixed against s1 and s2 for %s", r.duration)

	// The CA goes away for a while, from 40% of the run.
	revokeAt := r.duration * 3 / 4
	time.Sleep(r.duration * 2 / 5)
	ca.stop()
	r.note("the CA is stopped")
	time.Sleep(r.outage)
	if ca, err = r.startProc("ca-again", caArgs...); err != nil {
		return "", err
	}
	if _, err := waitLog(ca, "root fingerprint", 20*time.Second); err != nil {
		return "", err
	}
	r.note("the CA is back")

	// A client is revoked on the CA; both servers must refuse it.
	if wait := revokeAt - time.Since(r.start); wait > 0 {
		time.Sleep(wait)
	}
	c2 := hosts["c2"]
	if _, err := r.kvsctl("pki", "revoke", c2.cert(), "--dir", caDir, "--reason", "keyCompromise"); err != nil {
		return "", err
	}
	revoked := time.Now()
	r.note("c2's certificate revoked on the CA ('kvsctl pki revoke')")
	refusedAfter := map[string]time.Duration{}
	for _, n := range []string{"s1", "s2"} {
		for {
			_, err := r.kvsctl("put", "lifecycle/probe", "x", "--server", servers[n], "--dir", c2.dir)
			if err != nil && (strings.Contains(err.Error(), "refused") || strings.Contains(err.Error(), "rejected")) {
				refusedAfter[n] = time.Since(revoked)
				break
			}
			if time.Since(revoked) > 2*time.Minute {
				return "", fmt.Errorf("%s still accepts c2 two minutes after its revocation (last answer: %v)", n, err)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	r.note("c2 refused by s1 after %s and by s2 after %s", refusedAfter["s1"].Round(10*time.Millisecond), refusedAfter["s2"].Round(10*time.Millisecond))

	var results []benchResult
	for _, b := range benches {
		<-b.done
		data, _ := os.ReadFile(b.log)
		var br benchResult
		if err := json.Unmarshal(lastJSON(data), &br); err != nil {
			return "", fmt.Errorf("%s: %w: %s", b.name, err, data)
		}
		br.name = strings.TrimPrefix(b.name, "bench-")
		results = append(results, br)
	}
	r.note("the bench runs ended")
	return r.report(results, refusedAfter, hosts), nil
}

// benchResult is what 'kvsctl bench --json' prints.
type benchResult struct {
	name       string
	Requests   int64            `json:"requests"`
	OK         int64            `json:"ok"`
	Errors     int64            `json:"errors"`
	ErrorKind  map[string]int64 `json:"errors_by_kind"`
	RPS        float64          `json:"rps"`
	Handshakes int64            `json:"handshakes"`
	FirstError string           `json:"first_error"`
}

// lastJSON is the last JSON object of a log (bench prints its result last).
func lastJSON(data []byte) []byte {
	i := strings.LastIndex(string(data), "\n{")
	if i < 0 {
		return data
	}
	return data[i+1:]
}

// logLines decodes the JSON lines of a log with the given message.
func logLines(path, msg string) []map[string]any {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func (r *run) report(results []benchResult, refused map[string]time.Duration, hosts map[string]host) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Run of %s\n\n", r.start.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Certificates of %s, renewed at 40%% of their life; the CA stopped for %s; %s of load.\n\n", r.ttl, r.outage, r.duration)
	b.WriteString("| bench against | requests | failed | requests/s | TLS handshakes |\n|---|---|---|---|---|\n")
	var total, failed int64
	for _, br := range results {
		fmt.Fprintf(&b, "| %s | %d | %d | %.0f | %d |\n", br.name, br.Requests, br.Errors, br.RPS, br.Handshakes)
		total, failed = total+br.Requests, failed+br.Errors
		if br.Errors > 0 {
			fmt.Fprintf(&b, "|  | errors: %v, first: %s | | | |\n", br.ErrorKind, br.FirstError)
		}
	}
	fmt.Fprintf(&b, "| **both** | **%d** | **%d** | | |\n\n", total, failed)

	b.WriteString("Renewals by the agents, and the serials each host presented over time:\n\n")
	b.WriteString("| host | renewals | failed attempts (retried) | serials, in order |\n|---|---|---|---|\n")
	names := []string{"s1", "s2", "c1", "c2"}
	for _, n := range names {
		agentLog := filepath.Join(r.work, "agent-"+n+".log")
		renewed := logLines(agentLog, "certificate renewed")
		retries := len(logLines(agentLog, "renewal failed; retrying"))
		var serials []string
		for i, l := range renewed {
			if i == 0 {
				serials = append(serials, short(l["old_serial"]))
			}
			serials = append(serials, short(l["serial"]))
		}
		fmt.Fprintf(&b, "| %s (%s) | %d | %d | %s |\n", n, hosts[n].name, len(renewed), retries, strings.Join(serials, " → "))
	}
	b.WriteString("\nWhat the servers loaded (each 'tls material loaded' is a hot reload of a renewed certificate or new CRLs):\n\n")
	b.WriteString("| server | reloads | server serials loaded | CRL fetch failures (CA away) |\n|---|---|---|---|\n")
	for _, n := range []string{"s1", "s2"} {
		serveLog := filepath.Join(r.work, "serve-"+n+".log")
		loaded := logLines(serveLog, "tls material loaded")
		var serials []string
		for _, l := range loaded {
			if s := short(l["serial"]); len(serials) == 0 || serials[len(serials)-1] != s {
				serials = append(serials, s)
			}
		}
		fails := len(logLines(serveLog, "crl fetch failed; the cached CRLs stay in force"))
		fmt.Fprintf(&b, "| %s | %d | %s | %d |\n", n, len(loaded), strings.Join(serials, " → "), fails)
	}
	keys := make([]string, 0, len(refused))
	for k := range refused {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b.WriteString("\nThe revoked client c2 was refused by ")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" and ")
		}
		fmt.Fprintf(&b, "%s after %s", k, refused[k].Round(10*time.Millisecond))
	}
	b.WriteString(" (--crl-refresh 10s; the goal is within --crl-refresh + 5 s).\n\nTimeline:\n\n```\n")
	r.mu.Lock()
	for _, n := range r.notes {
		b.WriteString(n + "\n")
	}
	r.mu.Unlock()
	b.WriteString("```\n")
	return b.String()
}

func short(v any) string {
	s, _ := v.(string)
	if len(s) > 8 {
		return s[:8]
	}
	return s
}
