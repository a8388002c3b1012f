package main

import (
	"fmt"
	"io"
	"strings"
)

// writeMarkdown writes docs/scale.md: how the run was made, the goals with
// their figures, and one section per dimension with its table and plot.
func writeMarkdown(w io.Writer, fg *figures, plots string) {
	m := func(k string) string {
		if v := fg.meta[k]; v != "" {
			return v
		}
		return "?"
	}
	img := func(name, alt string) {
		if fg.data[strings.SplitN(name, "-", 2)[0]] != nil || fg.data[strings.TrimSuffix(name, ".png")] != nil {
			fmt.Fprintf(w, "\n![%s](%s/%s)\n", alt, plots, name)
		}
	}
	fmt.Fprintf(w, "# How cost grows with the work\n\n")
	fmt.Fprintf(w, "Written by `make bench-scale` (`scripts/bench-scale.sh`, plots by `scripts/scale`, a Go module of its own on gonum.org/v1/plot); do not edit by hand. ")
	fmt.Fprintf(w, "Run of %s at commit `%s`: %s, %s, PostgreSQL %s; load average %s before the run and %s after. %s\n\n",
		m("date"), m("commit"), m("cpus"), m("go"), m("postgres"), m("load_before"), m("load_after"), fg.meta["note"])
	fmt.Fprintf(w, "Everything runs on 127.0.0.1: the generator (`kvsctl bench`, %s clients, HTTP/1.1 keep-alive, the client's default) and the server share the CPUs, so a rate is what the pair reaches together. Each timed run lasts %s. Figures of one run; a quiet machine moves them by ±10–20%%, a ratio taken within the run less.\n\n",
		m("clients"), m("duration"))

	fmt.Fprintf(w, "## Goals\n\n| figure | measured | goal | met |\n|---|---|---|---|\n")
	big, small := fg.xs("keyspace", "bolt_get"), 0.0
	last := 0.0
	if len(big) > 0 {
		small, last = big[0], big[len(big)-1]
	}
	for _, s := range []string{"bolt_get", "bolt_put", "postgres_get", "postgres_put"} {
		r, ok := ratio(fg, "keyspace", s, last, "keyspace", s, small)
		goal(w, fmt.Sprintf("%s at %s keys vs %s keys", strings.ReplaceAll(s, "_", " "), num(last, true), num(small, true)), r, ok, 0.8, false, "×")
	}
	for _, x := range []float64{65536, 1 << 20} {
		r, ok := ratio(fg, "values", "serve_get", x, "values", "bare_get", x)
		goal(w, fmt.Sprintf("GET MB/s at %s vs the bare server", size(x)), r, ok, 0.8, false, "×")
	}
	crls := fg.xs("crl", "handshakes")
	for _, x := range crls {
		if x == 0 {
			continue
		}
		r, ok := ratio(fg, "crl", "handshakes", x, "crl", "handshakes", 0)
		goal(w, fmt.Sprintf("full handshakes/s, CRL of %s serials vs empty", num(x, true)), r, ok, 0.95, false, "×")
	}
	for _, x := range fg.xs("policy", "get") {
		if x == 0 {
			continue
		}
		r, ok := ratio(fg, "policy", "get", x, "policy", "get", 0)
		goal(w, fmt.Sprintf("GET/s, policy of %s identities vs none", num(x, true)), r, ok, 0.95, false, "×")
	}
	idle := fg.xs("idle", "serve_kib_per_conn")
	if len(idle) > 0 {
		x := idle[len(idle)-1]
		v, ok := fg.get("idle", "serve_kib_per_conn", x)
		goal(w, fmt.Sprintf("RSS per idle connection at %s", num(x, true)), v, ok, 64, true, " KiB")
	}
	if v, ok := fg.get("listing", "max_rss_over_base_mib", 0); ok {
		fmt.Fprintf(w, "| server memory while listing every key: growth over its resting RSS | %.1f MiB | must not hold the whole list | %s |\n", v, map[bool]string{true: "yes", false: "**no**"}[v < 64])
	}

	fmt.Fprintf(w, "\n## Keyspace\n\n`kvsctl serve` on bolt and on PostgreSQL, preloaded to each size with 100-byte values (each size adds keys to the same store), then GET and PUT on keys drawn uniformly from the whole keyspace. Bytes on disk: the bolt file, or `pg_total_relation_size` of the table with its index, divided by the keys.\n\n")
	fmt.Fprintf(w, "| keys | bolt GET/s | p99 ms | bolt PUT/s | p99 ms | bolt bytes/key | PostgreSQL GET/s | p99 ms | PostgreSQL PUT/s | p99 ms | PostgreSQL bytes/key |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, x := range big {
		fmt.Fprintf(w, "| %s |", num(x, true))
		for _, st := range []string{"bolt", "postgres"} {
			for _, s := range []string{st + "_get", st + "_get_p99", st + "_put", st + "_put_p99", st + "_bytes_per_key"} {
				fmt.Fprintf(w, " %s |", num(fg.get("keyspace", s, x)))
			}
		}
		fmt.Fprintln(w)
	}
	img("keyspace-rate.png", "requests per second by keyspace size")
	img("keyspace-p99.png", "p99 latency by keyspace size")
	img("keyspace-disk.png", "bytes on disk per key")

	fmt.Fprintf(w, "\n## Value size\n\nGET and PUT on serve (bolt) against the bare server answering a GET with a body of the same size (and reading a PUT's body), so the reference pays the same TLS and HTTP for the same bytes. MB/s of values moved.\n\n")
	fmt.Fprintf(w, "| value | serve GET MB/s | bare GET MB/s | ratio | serve PUT MB/s | bare PUT MB/s | ratio |\n|---|---|---|---|---|---|---|\n")
	for _, x := range fg.xs("values", "serve_get") {
		rg, okg := ratio(fg, "values", "serve_get", x, "values", "bare_get", x)
		rp, okp := ratio(fg, "values", "serve_put", x, "values", "bare_put", x)
		sg, ok1 := fg.get("values", "serve_get", x)
		bg, ok2 := fg.get("values", "bare_get", x)
		sp, ok3 := fg.get("values", "serve_put", x)
		bp, ok4 := fg.get("values", "bare_put", x)
		fmt.Fprintf(w, "| %s | %s | %s | %s× | %s | %s | %s× |\n", size(x), num(sg, ok1), num(bg, ok2), num(rg, okg), num(sp, ok3), num(bp, ok4), num(rp, okp))
	}
	img("values.png", "MB/s by value size")

	fmt.Fprintf(w, "\n## Listing\n\n`kvsctl list` pages through every key of the largest bolt store (%s keys per request) while the script samples the server's RSS every 200 ms.\n\n", m("page"))
	fmt.Fprintf(w, "| keys listed | seconds | keys/s | server RSS before | peak | growth |\n|---|---|---|---|---|---|\n")
	keys, ok1 := fg.get("listing", "keys", 0)
	secs, ok2 := fg.get("listing", "seconds", 0)
	base, ok3 := fg.get("listing", "base_rss_mib", 0)
	peak, ok4 := fg.get("listing", "max_rss_mib", 0)
	if ok1 && ok2 && secs > 0 {
		fmt.Fprintf(w, "| %s | %.1f | %s | %s MiB | %s MiB | %s MiB |\n", num(keys, ok1), secs, num(keys/secs, true), num(base, ok3), num(peak, ok4), num(peak-base, ok3 && ok4))
	}
	img("listing.png", "server RSS while listing")

	fmt.Fprintf(w, "\n## CRL size\n\nThe intermediate's CRL (the CA that signs client certificates) lists N random revoked serials; `kvsctl serve` checks every client certificate against it. Handshakes: `kvsctl bench --new-conn --no-resume` (a new connection and a full handshake per request). Load and reload: `scale snapshot`, which builds the server's TLS snapshot from the files as `serve` does (parse, verify the CRL's signature, index the serials), and the heap that snapshot holds.\n\n")
	fmt.Fprintf(w, "| revoked serials | CRL file KiB | full handshakes/s | ratio to empty | load ms | reload ms | snapshot heap KiB |\n|---|---|---|---|---|---|---|\n")
	for _, x := range crls {
		r, ok := ratio(fg, "crl", "handshakes", x, "crl", "handshakes", 0)
		fmt.Fprintf(w, "| %s | %s | %s | %s× | %s | %s | %s |\n", num(x, true), num(fg.get("crl", "file_kib", x)), num(fg.get("crl", "handshakes", x)), num(r, ok),
			num(fg.get("crl", "load_ms", x)), num(fg.get("crl", "reload_ms", x)), num(fg.get("crl", "heap_kib", x)))
	}
	img("crl.png", "handshakes per second by CRL size")

	fmt.Fprintf(w, "\n## Policy size\n\nA policy naming the bench client and N-1 other identities (common names, DNS, e-mail and URI SANs), against no policy at all (0).\n\n| identities | GET/s | ratio to no policy |\n|---|---|---|\n")
	for _, x := range fg.xs("policy", "get") {
		r, ok := ratio(fg, "policy", "get", x, "policy", "get", 0)
		fmt.Fprintf(w, "| %s | %s | %s× |\n", num(x, true), num(fg.get("policy", "get", x)), num(r, ok))
	}
	img("policy.png", "GET per second by policy size")

	fmt.Fprintf(w, "\n## Idle connections\n\n`kvsctl bench hold --http2` opens N mutual-TLS connections (one request each, then idle) to a fresh server; the figure is the growth of the server's VmRSS divided by N, for serve and for the bare server. %s\n\n| connections | serve KiB/conn | bare KiB/conn |\n|---|---|---|\n", fg.meta["limit"])
	for _, x := range idle {
		fmt.Fprintf(w, "| %s | %s | %s |\n", num(x, true), num(fg.get("idle", "serve_kib_per_conn", x)), num(fg.get("idle", "bare_kib_per_conn", x)))
	}
	img("idle.png", "RSS per idle connection")

	fmt.Fprintf(w, "\n## Watchers\n\n")
	if fg.data["watch"] == nil {
		fmt.Fprintf(w, "%s\n", m("watch"))
	} else {
		fmt.Fprintf(w, "| watchers | delivery p99 ms | KiB per watcher |\n|---|---|---|\n")
		for _, x := range fg.xs("watch", "p99_ms") {
			fmt.Fprintf(w, "| %s | %s | %s |\n", num(x, true), num(fg.get("watch", "p99_ms", x)), num(fg.get("watch", "kib_per_watcher", x)))
		}
		img("watch.png", "watch delivery latency")
	}
	if n := fg.meta["notes"]; n != "" {
		fmt.Fprintf(w, "\n## Notes of this run\n\n%s\n", n)
	}
}

func size(x float64) string {
	switch {
	case x >= 1<<20:
		return fmt.Sprintf("%g MiB", x/(1<<20))
	case x >= 1<<10:
		return fmt.Sprintf("%g KiB", x/(1<<10))
	}
	return fmt.Sprintf("%g B", x)
}
