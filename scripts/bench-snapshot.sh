#!/usr/bin/env bash
# scripts/bench-snapshot.sh BIN: the figures of docs/performance.md,
# "Transactions and snapshots".
#
# Everything on 127.0.0.1, one temporary PKI, kvsctl serve on bolt and on
# PostgreSQL (a database of its own, kvsbench_snap, created and dropped):
#   (a) kvsctl bench --op txn (2 compares + 2 puts) against --op put on
#       each store, same clients, keys and value size, alternating rounds;
#   (b) a store of SNAP_KEYS keys of 100 bytes (default 1,000,000) filled
#       with kvsctl import, then snapshot save from each store and snapshot
#       restore into a fresh bolt file and a fresh PostgreSQL database:
#       wall time and MB/s of the snapshot file;
#   (c) the p99 of GETs (kvsctl bench --op get) with and without a
#       snapshot being saved at the same time, on each store.
# Needs: a PostgreSQL superuser URL (KVS_BENCH_DATABASE, default
# postgres://postgres@127.0.0.1:5432/postgres), awk. Takes about 10 minutes
# on 2 cores. Not part of 'make test'. Prints a Markdown table.
set -euo pipefail

BIN=${1:-bin/kvsctl}
DURATION=${BENCH_DURATION:-8s}
ROUNDS=${BENCH_ROUNDS:-2}
CLIENTS=${BENCH_CLIENTS:-16}
KEYS=${BENCH_KEYS:-10000}
SNAP_KEYS=${SNAP_KEYS:-1000000}
PG_ADMIN=${KVS_BENCH_DATABASE:-postgres://postgres@127.0.0.1:5432/postgres}
PG_DB=kvsbench_snap
PORT=17450

say() { printf 'bench-snapshot: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
[ -x "$BIN" ] || die "$BIN not found: run 'make build' first"
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

WORK=$(mktemp -d)
chmod 700 "$WORK"
SERVER_PID=
cleanup() {
	[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
	for db in $PG_DB ${PG_DB}_2 ${PG_DB}_3; do psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
"$BIN" pki init --key-type ecdsa-p256 >/dev/null 2>&1 || "$BIN" pki init >/dev/null
export KVS_SERVER=localhost:$PORT KVS_CERTS=$WORK/certs

pgurl() { local u=${PG_ADMIN%/*}; echo "$u/$1"; }
newdb() { psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >/dev/null 2>&1; }

serve() { # serve STORE_URL
	"$BIN" serve --listen 127.0.0.1:$PORT --store "$1" --pool-size "$CLIENTS" --log-level warn >"$WORK/serve.log" 2>&1 &
	SERVER_PID=$!
	"$BIN" health --wait 20s >/dev/null || die "server did not start: $(tail -3 "$WORK/serve.log")"
}
stop() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; }

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
mbps() { awk -v bytes="$1" -v s="$2" 'BEGIN { printf "%.1f", bytes / 1e6 / s }'; }
jfield() { sed -n "s/.*\"$1\": *\([0-9.]*\).*/\1/p" | head -1; }

bench() { # bench OP -> rps p99
	local out
	out=$("$BIN" bench --op "$1" --clients "$CLIENTS" --keys "$2" --duration "$DURATION" --json --quiet ${3:-})
	printf '%.0f %.1f\n' "$(echo "$out" | jfield rps)" "$(echo "$out" | jfield p99_ms)"
}

echo "machine: $(nproc) cores, load before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# (a) transactions against PUTs -----------------------------------------------
echo "| store | PUT req/s | txn (2 compares + 2 puts) req/s | txn/PUT |"
echo "|---|---|---|---|"
for kind in bolt postgres; do
	if [ $kind = bolt ]; then url=bolt:$WORK/a/kvs.db; else newdb $PG_DB; url=$(pgurl $PG_DB); fi
	serve "$url"
	"$BIN" bench --op put --preload --keys "$KEYS" --requests 1 --quiet >/dev/null
	best_put=0 best_txn=0
	for _ in $(seq "$ROUNDS"); do
		read -r p _ < <(bench put "$KEYS")
		read -r x _ < <(bench txn "$KEYS")
		best_put=$(awk -v a="$best_put" -v b="$p" 'BEGIN { print (b > a ? b : a) }')
		best_txn=$(awk -v a="$best_txn" -v b="$x" 'BEGIN { print (b > a ? b : a) }')
	done
	stop
	echo "| $kind | $best_put | $best_txn | $(awk -v a="$best_txn" -v b="$best_put" 'BEGIN { printf "%.2f", a / b }') |"
done
echo

# (b) snapshot save and restore of SNAP_KEYS keys ------------------------------
say "generating $SNAP_KEYS keys"
value=$(head -c 100 /dev/zero | tr '\0' 'v' | base64 -w0)
awk -v n="$SNAP_KEYS" -v v="$value" 'BEGIN { for (i = 0; i < n; i++) printf "{\"key\":\"%d\",\"value\":\"%s\"}\n", 10000000 + i, v }' >keys.jsonl
serve "bolt:$WORK/b/kvs.db"
t0=$(now)
"$BIN" import keys.jsonl --batch 128 >/dev/null
say "import into bolt: $(elapsed "$t0") s"

declare -A P99
p99s() { # p99s KIND: GET p99 without, then with a snapshot being saved
	read -r _ P99[$1,idle] < <(bench get "$SNAP_KEYS")
	( while :; do "$BIN" snapshot save --force "$WORK/busy.snap" >/dev/null 2>&1 || break; done ) &
	local saver=$!
	sleep 1
	read -r _ P99[$1,snap] < <(bench get "$SNAP_KEYS")
	kill $saver 2>/dev/null; wait $saver 2>/dev/null || true
}

echo "| step | keys | snapshot size | wall time | MB/s |"
echo "|---|---|---|---|---|"
t0=$(now); "$BIN" snapshot save bolt.snap >/dev/null 2>&1; s=$(elapsed "$t0")
size=$(stat -c %s bolt.snap)
echo "| snapshot save from bolt | $SNAP_KEYS | $(awk -v b="$size" 'BEGIN { printf "%.1f", b / 1e6 }') MB | ${s} s | $(mbps "$size" "$s") |"
p99s bolt
stop
t0=$(now); "$BIN" snapshot restore bolt.snap --store "bolt:$WORK/c/kvs.db" >/dev/null 2>&1; s=$(elapsed "$t0")
echo "| snapshot restore into bolt | $SNAP_KEYS | $(awk -v b="$size" 'BEGIN { printf "%.1f", b / 1e6 }') MB | ${s} s | $(mbps "$size" "$s") |"
newdb ${PG_DB}_2
t0=$(now); "$BIN" snapshot restore bolt.snap --store "$(pgurl ${PG_DB}_2)" >/dev/null 2>&1; s=$(elapsed "$t0")
echo "| snapshot restore into PostgreSQL | $SNAP_KEYS | $(awk -v b="$size" 'BEGIN { printf "%.1f", b / 1e6 }') MB | ${s} s | $(mbps "$size" "$s") |"
serve "$(pgurl ${PG_DB}_2)"
t0=$(now); "$BIN" snapshot save pg.snap >/dev/null 2>&1; s=$(elapsed "$t0")
size=$(stat -c %s pg.snap)
echo "| snapshot save from PostgreSQL | $SNAP_KEYS | $(awk -v b="$size" 'BEGIN { printf "%.1f", b / 1e6 }') MB | ${s} s | $(mbps "$size" "$s") |"
p99s postgres
stop
newdb ${PG_DB}_3
t0=$(now); "$BIN" snapshot restore pg.snap --store "$(pgurl ${PG_DB}_3)" >/dev/null 2>&1; s=$(elapsed "$t0")
echo "| snapshot restore PostgreSQL → PostgreSQL | $SNAP_KEYS | $(awk -v b="$size" 'BEGIN { printf "%.1f", b / 1e6 }') MB | ${s} s | $(mbps "$size" "$s") |"
echo

echo "| store | GET p99, no snapshot | GET p99 while snapshots are saved back to back | ratio |"
echo "|---|---|---|---|"
for kind in bolt postgres; do
	echo "| $kind | ${P99[$kind,idle]} ms | ${P99[$kind,snap]} ms | $(awk -v a="${P99[$kind,snap]}" -v b="${P99[$kind,idle]}" 'BEGIN { printf "%.2f", a / b }') |"
done
echo
echo "load after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
