#!/usr/bin/env bash
# scripts/bench-scale.sh BIN: how cost grows with the work ('make bench-scale').
#
# One run on 127.0.0.1 with one temporary PKI (kvsctl pki init), writing
# docs/scale.md and its PNG plots under docs/scale/ (scripts/scale, a Go
# module of its own on gonum.org/v1/plot, draws them):
#   keyspace    10k -> 100k -> 1M keys on bolt and PostgreSQL: GET and PUT
#               rate, p99, bytes on disk per key;
#   values      100 B -> 4 KiB -> 64 KiB -> 1 MiB: GET and PUT MB/s, serve
#               against the bare server sending the same bytes;
#   listing     paging through the 1M-key bolt store: keys/s, server RSS;
#   idle        5k -> 10k -> 20k idle mTLS connections: RSS per connection;
#   policy      no policy, 1 and 10k identities: GET rate;
#   crl         0 -> 10k -> 100k revoked serials: full handshakes/s, the TLS
#               snapshot's load and reload time and heap;
#   watch       watchers, when this build has 'kvsctl watch'.
# Needs go and a PostgreSQL superuser URL (KVS_BENCH_DATABASE, default
# postgres://postgres@127.0.0.1:5432/postgres; it creates and drops its own
# database, kvsscale). Raises the open-file limit. About 12 minutes on 2
# cores; SCALE_QUICK=1 shrinks every dimension for a smoke test. Not part of
# 'make test'.
set -euo pipefail

BIN=${1:-bin/kvsctl}
DURATION=${SCALE_DURATION:-6s}
CLIENTS=${SCALE_CLIENTS:-32}
KEYSPACE=${SCALE_KEYS:-10000 100000 1000000}
VALUES=${SCALE_VALUES:-100 4096 65536 1048576}
IDLE=${SCALE_IDLE:-5000 10000 20000}
POLICIES=${SCALE_POLICIES:-0 1 10000}
CRLS=${SCALE_CRLS:-0 10000 100000}
ROUNDS=${SCALE_ROUNDS:-2} # alternating rounds of the CRL and policy runs; best kept
# Preloading a million keys is a million durable PUTs: more writers make
# bigger group commits (bolt) and batches (PostgreSQL), so it goes faster.
PRELOAD_CLIENTS=${SCALE_PRELOAD_CLIENTS:-256}
PG_ADMIN=${KVS_BENCH_DATABASE:-postgres://postgres@127.0.0.1:5432/postgres}
PG_DB=kvsscale
MD=${SCALE_MD:-docs/scale.md}
PLOTS=${SCALE_PLOTS:-docs/scale}
if [ "${SCALE_QUICK:-}" = 1 ]; then
	DURATION=2s KEYSPACE="1000 5000" VALUES="100 65536" IDLE="200 400" POLICIES="0 100" CRLS="0 1000" ROUNDS=1
fi

say() { printf 'bench-scale: %s\n' "$*" >&2; }
die() { printf 'bench-scale: %s\n' "$*" >&2; exit 1; }

[ -x "$BIN" ] || die "$BIN not found: run 'make build' first"
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
HERE=$(cd "$(dirname "$0")" && pwd)
command -v psql >/dev/null || {
	say "installing the PostgreSQL client"
	apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client >/dev/null
} || die "psql is needed"
psql "$PG_ADMIN" -qAtc 'SELECT 1' >/dev/null || die "cannot reach PostgreSQL at KVS_BENCH_DATABASE"

maxconn=0
for n in $IDLE; do ((n > maxconn)) && maxconn=$n; done
ulimit -n 1048576 2>/dev/null || ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
LIMIT_NOTE=""
if ((maxconn + 500 > $(ulimit -n))); then
	# A container may cap the hard limit below what root could set
	# elsewhere: hold as many as the server process can open.
	cap=$(($(ulimit -n) - 500))
	((cap >= 1000)) || die "open file limit $(ulimit -n) is too low for idle connections"
	LIMIT_NOTE="The open-file limit of this machine is $(ulimit -n) and cannot be raised here, so the largest idle-connection count is $cap instead of $maxconn. "
	IDLE=$(for n in $IDLE; do ((n > cap)) && echo "$cap" || echo "$n"; done | sort -nu | tr '\n' ' ')
fi

TMP=$(mktemp -d)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $PG_DB" >/dev/null 2>&1 || true
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

(cd "$HERE/scale" && go vet . && go build -o "$TMP/scale" .) || die "could not build scripts/scale"
RES=$TMP/results.tsv
: >"$RES"
fig() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$RES"; }
meta() { printf 'meta\t%s\t%s\n' "$1" "$2" >>"$RES"; }
T0=$(date +%s)
meta date "$(date -u +%Y-%m-%dT%H:%MZ)"
meta commit "$(git -C "$HERE" rev-parse --short HEAD 2>/dev/null || echo unknown)"
meta cpus "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'))"
meta go "$(go version | cut -d' ' -f3)"
meta postgres "$(psql "$PG_ADMIN" -tAc 'SHOW server_version' | cut -d' ' -f1)"
meta load_before "$(cut -d' ' -f1 /proc/loadavg)"
meta clients "$CLIENTS"
meta duration "$DURATION"
meta page 1000
meta note "${SCALE_NOTE:-}"
meta limit "$LIMIT_NOTE"

CERTS=$TMP/certs
"$BIN" pki init --dir "$CERTS" --hosts localhost,127.0.0.1 >/dev/null
psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $PG_DB" >/dev/null
psql "$PG_ADMIN" -qc "CREATE DATABASE $PG_DB" >/dev/null
pg_base=${PG_ADMIN%%\?*}
PG_URL="${pg_base%/*}/$PG_DB${PG_ADMIN#"$pg_base"}"

# --- servers ---------------------------------------------------------------
NEXT_PORT=18440
wait_port() {
	local i
	for i in $(seq 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	die "nothing listens on port $1: $(tail -3 "$TMP"/*.log)"
}
# start NAME ARGS...: kvsctl ARGS --listen on a fresh port; sets PORT_NAME, PID_NAME.
start() {
	local name=$1 port
	shift
	port=$NEXT_PORT
	while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
	NEXT_PORT=$((port + 1))
	"$BIN" "$@" --listen "127.0.0.1:$port" 2>"$TMP/$name.log" &
	PIDS+=($!)
	printf -v "PID_$name" %s $!
	printf -v "PORT_$name" %s "$port"
	wait_port "$port"
}
stop() { # NAME
	local pid
	pid=$(eval echo "\$PID_$1")
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
num() { grep -o "\"$1\": [0-9.e+-]*" "$2" | head -1 | awk '{print $2}'; }

# run NAME OUT ARGS...: kvsctl bench against server NAME, JSON in OUT.
run() {
	local name=$1 out=$2 port
	shift 2
	port=$(eval echo "\$PORT_$name")
	"$BIN" bench --dir "$CERTS" --server "localhost:$port" --clients "$CLIENTS" --quiet --json "${@}" >"$out" ||
		die "bench against $name failed: $(cat "$out")"
	local errs
	errs=$(num errors "$out")
	[ "$errs" = 0 ] || say "  $errs errors: $(grep -o '"first_error": "[^"]*' "$out" | cut -d'"' -f4)"
}
best() { # best VALUE CURRENT
	awk -v a="$1" -v b="${2:-0}" 'BEGIN{print (a>b)?a:b}'
}

# --- keyspace --------------------------------------------------------------
say "keyspace: $KEYSPACE keys, bolt and PostgreSQL"
mkdir -m 0700 "$TMP/bolt"
start bolt serve --dir "$CERTS" --store "bolt:$TMP/bolt/kvs.db"
start pg serve --dir "$CERTS" --store "$PG_URL" --pool-size "$CLIENTS"
for n in $KEYSPACE; do
	for st in bolt pg; do
		label=$([ $st = pg ] && echo postgres || echo bolt)
		t=$(date +%s)
		run $st "$TMP/preload.json" --keys "$n" --preload --requests 1 --op get --clients "$PRELOAD_CLIENTS"
		for op in get put; do
			run $st "$TMP/ks.json" --keys "$n" --op $op --duration "$DURATION"
			fig keyspace "${label}_$op" "$n" "$(num rps "$TMP/ks.json")"
			fig keyspace "${label}_${op}_p99" "$n" "$(num p99_ms "$TMP/ks.json")"
			say "  $label $op at $n keys: $(num rps "$TMP/ks.json") req/s, p99 $(num p99_ms "$TMP/ks.json") ms (preload $(($(date +%s) - t))s)"
		done
		if [ $st = bolt ]; then
			bytes=$(stat -c %s "$TMP/bolt/kvs.db")
		else
			bytes=$(psql "$PG_URL" -tAc "SELECT pg_total_relation_size('kv')")
		fi
		fig keyspace "${label}_bytes_per_key" "$n" "$(awk -v b="$bytes" -v n="$n" 'BEGIN{printf "%.1f", b/n}')"
	done
done
stop pg
psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $PG_DB" >/dev/null

# --- listing ---------------------------------------------------------------
say "listing: every key of the bolt store"
pid=$PID_bolt
sleep 1
base=$(rss_kib "$pid")
(
	t0=$(date +%s%N)
	while kill -0 "$pid" 2>/dev/null; do
		printf '%s %s\n' "$((($(date +%s%N) - t0) / 1000000))" "$(rss_kib "$pid")"
		sleep 0.2
	done
) >"$TMP/rss.txt" &
sampler=$!
PIDS+=("$sampler")
t0=$(date +%s%N)
"$BIN" list --dir "$CERTS" --server "localhost:$PORT_bolt" --page-size 1000 >"$TMP/keys.txt"
t1=$(date +%s%N)
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
listed=$(wc -l <"$TMP/keys.txt")
peak=$(awk 'BEGIN{m=0} $2>m{m=$2} END{print m}' "$TMP/rss.txt")
fig listing keys 0 "$listed"
fig listing seconds 0 "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", (b-a)/1e9}')"
fig listing base_rss_mib 0 "$(awk -v k="$base" 'BEGIN{printf "%.1f", k/1024}')"
fig listing max_rss_mib 0 "$(awk -v k="$peak" 'BEGIN{printf "%.1f", k/1024}')"
fig listing max_rss_over_base_mib 0 "$(awk -v k="$peak" -v b="$base" 'BEGIN{printf "%.1f", (k-b)/1024}')"
awk '{printf "listing\trss_mib\t%.1f\t%.1f\n", $1/1000, $2/1024}' "$TMP/rss.txt" >>"$RES"
say "  $listed keys in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", (b-a)/1e9}')s, server RSS $((base / 1024)) -> peak $((peak / 1024)) MiB"
stop bolt
rm -rf "$TMP/bolt" "$TMP/keys.txt"

# --- value size ------------------------------------------------------------
say "values: $VALUES bytes"
for size in $VALUES; do
	keys=$((256 * 1024 * 1024 / size))
	((keys > 1000)) && keys=1000
	mkdir -m 0700 "$TMP/v$size"
	start "vs$size" serve --dir "$CERTS" --store "bolt:$TMP/v$size/kvs.db" --max-value 2MiB
	start "vb$size" bench bare-server --dir "$CERTS" --body-size "$size"
	run "vs$size" "$TMP/v.json" --keys "$keys" --value-size "$size" --preload --requests 1
	for op in get put; do
		for who in vb vs; do
			run "$who$size" "$TMP/v.json" --keys "$keys" --value-size "$size" --op $op --duration "$DURATION"
			series=$([ $who = vs ] && echo serve || echo bare)_$op
			fig values "$series" "$size" "$(awk -v r="$(num rps "$TMP/v.json")" -v s="$size" 'BEGIN{printf "%.2f", r*s/1e6}')"
			say "  $series $size B: $(num rps "$TMP/v.json") req/s"
		done
	done
	stop "vs$size"
	stop "vb$size"
	rm -rf "$TMP/v$size"
done

# --- idle connections ------------------------------------------------------
say "idle connections: $IDLE"
idle() { # KIND N
	local kind=$1 n=$2 pid base held holder i
	if [ "$kind" = bare ]; then
		start idle bench bare-server --dir "$CERTS"
	else
		mkdir -p -m 0700 "$TMP/idle"
		start idle serve --dir "$CERTS" --store "bolt:$TMP/idle/kvs.db" --max-conns 0
	fi
	pid=$PID_idle
	"$BIN" bench --dir "$CERTS" --server "localhost:$PORT_idle" --requests 100 --clients 4 --op put --quiet >/dev/null
	sleep 1
	base=$(rss_kib "$pid")
	"$BIN" bench hold --dir "$CERTS" --server "localhost:$PORT_idle" --conns "$n" --for 10m --http2 >"$TMP/hold.out" 2>"$TMP/hold.err" &
	holder=$!
	PIDS+=("$holder")
	for i in $(seq 1800); do
		grep -q holding "$TMP/hold.out" 2>/dev/null && break
		kill -0 "$holder" 2>/dev/null || die "holding $n connections failed: $(cat "$TMP/hold.err")"
		sleep 0.1
	done
	sleep 2
	held=$(rss_kib "$pid")
	kill "$holder" 2>/dev/null || true
	wait "$holder" 2>/dev/null || true
	stop idle
	rm -rf "$TMP/idle"
	fig idle "${kind}_kib_per_conn" "$n" "$(awk -v a="$base" -v b="$held" -v n="$n" 'BEGIN{printf "%.1f", (b-a)/n}')"
	say "  $kind, $n connections: RSS $base -> $held KiB, $(awk -v a="$base" -v b="$held" -v n="$n" 'BEGIN{printf "%.1f", (b-a)/n}') KiB each ($(cat "$TMP/hold.out"))"
}
# The bare server, the reference, only at the largest count.
for n in $IDLE; do idle serve "$n"; done
idle bare "$(echo "$IDLE" | tr ' ' '\n' | sort -n | tail -1)"

# --- policy size -----------------------------------------------------------
say "policy: $POLICIES identities"
for n in $POLICIES; do
	mkdir -m 0700 "$TMP/p$n"
	if [ "$n" = 0 ]; then
		start "p$n" serve --dir "$CERTS" --store "bolt:$TMP/p$n/kvs.db"
	else
		"$TMP/scale" policy -n "$n" -cn client >"$TMP/p$n/policy.json"
		start "p$n" serve --dir "$CERTS" --store "bolt:$TMP/p$n/kvs.db" --policy "$TMP/p$n/policy.json"
	fi
	run "p$n" "$TMP/p.json" --keys 10000 --preload --requests 1
done
declare -A BEST
for r in $(seq "$ROUNDS"); do
	for n in $POLICIES; do
		run "p$n" "$TMP/p.json" --keys 10000 --op get --duration "$DURATION"
		BEST[p$n]=$(best "$(num rps "$TMP/p.json")" "${BEST[p$n]:-0}")
		say "  round $r, $n identities: $(num rps "$TMP/p.json") GET/s"
	done
done
for n in $POLICIES; do
	fig policy get "$n" "${BEST[p$n]}"
	stop "p$n"
	rm -rf "$TMP/p$n"
done

# --- CRL size --------------------------------------------------------------
say "crl: $CRLS revoked serials"
for n in $CRLS; do
	cp -a "$CERTS" "$TMP/c$n"
	"$TMP/scale" gencrl -dir "$TMP/c$n" -n "$n"
	"$TMP/scale" snapshot -dir "$TMP/c$n" >"$TMP/snap.json"
	for k in load_ms reload_ms heap_kib file_kib; do
		fig crl "$k" "$n" "$(num "$k" "$TMP/snap.json")"
	done
	mkdir -m 0700 "$TMP/c$n/data"
	start "c$n" serve --dir "$TMP/c$n" --store "bolt:$TMP/c$n/data/kvs.db"
	run "c$n" "$TMP/c.json" --keys 100 --preload --requests 1
	say "  $n serials: $(tr -d '\n ' <"$TMP/snap.json")"
done
for r in $(seq "$ROUNDS"); do
	for n in $CRLS; do
		run "c$n" "$TMP/c.json" --keys 100 --op get --new-conn --no-resume --http1 --duration "$DURATION"
		BEST[c$n]=$(best "$(num rps "$TMP/c.json")" "${BEST[c$n]:-0}")
		say "  round $r, $n serials: $(num rps "$TMP/c.json") full handshakes/s"
	done
done
for n in $CRLS; do
	fig crl handshakes "$n" "${BEST[c$n]}"
	stop "c$n"
done

# --- watchers --------------------------------------------------------------
if "$BIN" watch --help >/dev/null 2>&1; then
	meta watch "This build has 'kvsctl watch', but the script does not measure watchers yet."
else
	meta watch "Not measured: this build has no watch API ('kvsctl watch'); the dimension is added once it is in main."
fi

meta load_after "$(cut -d' ' -f1 /proc/loadavg)"
meta notes "The whole run took $(($(date +%s) - T0)) seconds."
mkdir -p "$(dirname "$MD")"
"$TMP/scale" report -in "$RES" -md "$MD" -plots "$PLOTS"
cp "$RES" "$PLOTS/results.tsv"
say "wrote $MD and $PLOTS/ in $(($(date +%s) - T0))s"
