#!/usr/bin/env bash
# scripts/bench.sh BIN: the side-by-side performance comparison ('make bench').
#
# One run, everything on 127.0.0.1, one temporary PKI (kvsctl pki init), the
# same value size, keyspace and number of clients for every system:
#   (a) kvsctl serve on the embedded store (GET, PUT) against the bare
#       ceiling: net/http with the same mutual-TLS configuration answering a
#       fixed 100-byte body (kvsctl bench bare-server);
#   (b) kvsctl serve on PostgreSQL (GET, PUT) against pgbench -M prepared
#       running the store's own SELECT and upsert on the same table;
#   (c) full and resumed TLS handshakes per second, serve against bare;
#   (d) RSS of kvsctl serve holding 5,000 idle mutual-TLS connections;
#   (e) etcd (Debian's etcd-server, a single member with client-certificate
#       auth and the same certificates) loaded by its own Go client
#       (scripts/etcdbench, a Go module of its own), linearizable GET and
#       PUT, next to serve on both stores;
#   and vegeta (a generator we did not write) against both servers, over
#   HTTP/2 and HTTP/1.1.
# kvsctl bench runs with the client's defaults: HTTP/1.1 on a pool of
# keep-alive connections (BENCH_HTTP=h2 for HTTP/2; both servers get the
# same): each of the clients has one request in flight on its own
# connection, where HTTP/2 multiplexing buys nothing and costs CPU on both
# sides; the (a) pair is repeated over HTTP/2 (--http2). kvsctl serve on
# PostgreSQL gets --pool-size equal to the number of clients, as pgbench
# opens one connection per client. Throughput pairs run alternately,
# BENCH_ROUNDS times, and each system keeps its best round (noise on a
# shared machine only ever slows a run down); the CPU each server process
# spent per request is recorded too, a figure other load hardly moves. The table goes to stdout and to bench-results/latest.md, with the
# raw JSON of every run under bench-results/<date>/.
#
# Needs: go, a PostgreSQL superuser URL (KVS_BENCH_DATABASE, default
# postgres://postgres@127.0.0.1:5432/postgres; the script creates and drops
# its own database, kvsbench). Installs pgbench and etcd-server (apt) and
# vegeta (go install) when missing. Takes about 9 minutes on 2 cores. Not
# part of 'make test'.
set -euo pipefail

BIN=${1:-bin/kvsctl}
DURATION=${BENCH_DURATION:-8s}      # each timed run
ROUNDS=${BENCH_ROUNDS:-2}           # alternating rounds per pair
CLIENTS=${BENCH_CLIENTS:-32}
KEYS=${BENCH_KEYS:-10000}
VALUE_SIZE=${BENCH_VALUE_SIZE:-100}
IDLE_CONNS=${BENCH_IDLE_CONNS:-5000}
KEY_TYPE=${BENCH_KEY_TYPE:-rsa2048} # the default of 'kvsctl pki init'
HTTP=${BENCH_HTTP:-http1}           # http1 or h2
PG_ADMIN=${KVS_BENCH_DATABASE:-postgres://postgres@127.0.0.1:5432/postgres}
PG_DB=kvsbench
OUT=${BENCH_OUT:-bench-results}

PORT_BARE=17444
PORT_BOLT=17443
PORT_PG=17445
PORT_IDLE=17446
ETCD_DIR=$(cd "$(dirname "$0")" && pwd)/etcdbench

say() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

[ -x "$BIN" ] || die "$BIN not found: run 'make build' first"
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
secs=${DURATION%s}
[[ $secs =~ ^[0-9]+$ ]] || die "BENCH_DURATION must be whole seconds, like 8s"

# --- tools -----------------------------------------------------------------
sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

find_pgbench() {
	local p
	for p in "$(command -v pgbench 2>/dev/null)" /usr/lib/postgresql/*/bin/pgbench; do
		if [ -n "$p" ] && [ -x "$p" ] && "$p" --version >/dev/null 2>&1; then
			echo "$p"
			return 0
		fi
	done
	return 1
}
if ! PGBENCH=$(find_pgbench); then
	say "installing pgbench"
	sudo_ apt-get update -qq >/dev/null
	# pgbench ships with the client package from PostgreSQL 16, with the
	# server package before.
	major=$(psql "$PG_ADMIN" -tAc 'SHOW server_version_num' 2>/dev/null | cut -c1-2 || true)
	for pkg in ${major:+postgresql-client-$major postgresql-$major} postgresql-client postgresql-contrib; do
		DEBIAN_FRONTEND=noninteractive sudo_ apt-get install -y -qq "$pkg" >/dev/null 2>&1 || true
		PGBENCH=$(find_pgbench) && break
	done
	PGBENCH=$(find_pgbench) || die "could not install pgbench"
fi
command -v psql >/dev/null || die "psql is needed (it comes with pgbench's package)"

VEGETA=$(command -v vegeta 2>/dev/null || echo "$(go env GOPATH)/bin/vegeta")
if ! [ -x "$VEGETA" ]; then
	say "installing vegeta"
	go install github.com/tsenart/vegeta/v12@latest
fi
[ -x "$VEGETA" ] || die "could not install vegeta"

ETCD=$(command -v etcd 2>/dev/null || true)
if [ -z "$ETCD" ]; then
	say "installing etcd-server"
	sudo_ apt-get update -qq >/dev/null
	apt-cache policy etcd-server | grep -q 'Candidate: [0-9]' || die "apt has no etcd-server package"
	DEBIAN_FRONTEND=noninteractive sudo_ apt-get install -y -qq etcd-server >/dev/null
	# The package enables a system service on the default ports; this
	# script starts its own member, so leave no daemon behind.
	if command -v systemctl >/dev/null && systemctl is-active -q etcd 2>/dev/null; then
		sudo_ systemctl disable --now etcd >/dev/null 2>&1 || true
	fi
	ETCD=$(command -v etcd) || die "could not install etcd-server"
fi

# --- set-up ----------------------------------------------------------------
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(( $(ulimit -n) > IDLE_CONNS + 100 )) || die "open file limit $(ulimit -n) is too low for $IDLE_CONNS connections"

TMP=$(mktemp -d)
# The etcd generator builds from its own module; go vet first, so a
# broken generator fails here and not in the middle of the runs.
(cd "$ETCD_DIR" && go vet . && go build -o "$TMP/etcdbench" .) || die "could not build scripts/etcdbench"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW=$OUT/$STAMP
mkdir -p "$RAW"
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

LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
CERTS=$TMP/certs
"$BIN" pki init --dir "$CERTS" --key-type "$KEY_TYPE" --hosts localhost,127.0.0.1 >/dev/null
psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $PG_DB" >/dev/null
psql "$PG_ADMIN" -qc "CREATE DATABASE $PG_DB" >/dev/null
pg_base=${PG_ADMIN%%\?*}
PG_URL="${pg_base%/*}/$PG_DB${PG_ADMIN#"$pg_base"}" # same server and options, database kvsbench

wait_port() {
	local i
	for i in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	die "nothing listens on port $1: see $TMP/*.log"
}
start() { # name port command...
	local name=$1 port=$2
	shift 2
	"$@" 2>"$TMP/$name.log" &
	PIDS+=($!)
	eval "PID_$name=$!"
	wait_port "$port"
}
start bare "$PORT_BARE" "$BIN" bench bare-server --dir "$CERTS" --listen "127.0.0.1:$PORT_BARE"
start bolt "$PORT_BOLT" "$BIN" serve --dir "$CERTS" --listen "127.0.0.1:$PORT_BOLT" --store "bolt:$TMP/kvs.db"
start pg "$PORT_PG" "$BIN" serve --dir "$CERTS" --listen "127.0.0.1:$PORT_PG" --store "$PG_URL" --pool-size "$CLIENTS"

free_port() { # a port nothing listens on, from $1 up
	local p=$1
	while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
	echo "$p"
}
PORT_ETCD=$(free_port 23790)
PORT_ETCD_PEER=$(free_port $((PORT_ETCD + 1)))
mkdir -m 0700 "$TMP/etcd"
# A single member: client-certificate auth with the kvsctl CA (ca.crt is
# the root; server.crt and client.crt carry their intermediate), peer
# traffic on loopback only, no gRPC gateway (it would dial itself with the
# server certificate, which is not a client certificate).
start etcd "$PORT_ETCD" "$ETCD" --name bench --data-dir "$TMP/etcd" \
	--listen-client-urls "https://127.0.0.1:$PORT_ETCD" --advertise-client-urls "https://127.0.0.1:$PORT_ETCD" \
	--listen-peer-urls "http://127.0.0.1:$PORT_ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$PORT_ETCD_PEER" \
	--initial-cluster "bench=http://127.0.0.1:$PORT_ETCD_PEER" --enable-grpc-gateway=false \
	--client-cert-auth --trusted-ca-file "$CERTS/ca.crt" --cert-file "$CERTS/server.crt" --key-file "$CERTS/server.key" \
	--logger zap --log-level warn
ETCD_VERSION=$("$ETCD" --version | awk '/etcd Version/{print $3}')

# --- runs ------------------------------------------------------------------
declare -A RPS P50 P99 NOTE CPU
PROTO=()
[ "$HTTP" = h2 ] && PROTO=(--http2)

num() { grep -o "\"$1\": [0-9.e+-]*" "$2" | head -1 | awk '{print $2}'; }
keep() { # label rps p50 p99 cpu note: keep the best round
	local cur=${RPS[$1]:-0}
	if awk -v a="$2" -v b="$cur" 'BEGIN{exit !(a>b)}'; then
		RPS[$1]=$2 P50[$1]=$3 P99[$1]=$4 CPU[$1]=$5 NOTE[$1]=$6
	fi
}
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

bench() { # label server port round args...
	local label=$1 server=$2 port=$3 round=$4 f
	shift 4
	f=$RAW/$label.$round.json
	local pid t0 t1
	pid=$(eval echo "\$PID_$server")
	t0=$(ticks "$pid")
	"$BIN" bench --dir "$CERTS" --server "localhost:$port" --clients "$CLIENTS" --keys "$KEYS" \
		--value-size "$VALUE_SIZE" --duration "$DURATION" --quiet --json "$@" >"$f" ||
		die "bench $label failed: $(cat "$f")"
	t1=$(ticks "$pid")
	local errs note="" cpu
	errs=$(num errors "$f")
	cpu=$(awk -v t="$((t1 - t0))" -v hz="$HZ" -v n="$(num requests "$f")" 'BEGIN{ if (n>0) printf "%.1f", t*1e6/hz/n }')
	[[ $label == hs_* ]] && note="$(num handshakes "$f") handshakes, $(num resumed "$f") resumed"
	[ "$errs" = 0 ] || note="$note $errs errors: $(grep -o '"first_error": "[^"]*' "$f" | cut -d'"' -f4)"
	keep "$label" "$(num rps "$f")" "$(num p50_ms "$f")" "$(num p99_ms "$f")" "$cpu" "$note"
	say "$(printf '%-14s round %d: %8.0f req/s, server %6s us CPU/request' "$label" "$round" "$(num rps "$f")" "$cpu")"
}

# ebench: the etcd generator, the same figures as bench. With CONNS 0
# each worker has an etcd client (a gRPC connection) of its own, as each
# kvsctl bench worker has; with 1 they share one, as etcd's documentation
# has an application do. Each round tries both; etcd keeps its best.
ebench() { # label round conns args...
	local label=$1 round=$2 conns=$3 f t0 t1 cpu
	shift 3
	f=$RAW/$label.$round.c$conns.json
	t0=$(ticks "$PID_etcd")
	"$TMP/etcdbench" -endpoint "https://127.0.0.1:$PORT_ETCD" -cert "$CERTS/client.crt" -key "$CERTS/client.key" \
		-ca "$CERTS/ca.crt" -clients "$CLIENTS" -conns "$conns" -keys "$KEYS" -value-size "$VALUE_SIZE" \
		-duration "$DURATION" "$@" >"$f" || die "etcd bench $label failed: $(cat "$f")"
	t1=$(ticks "$PID_etcd")
	cpu=$(awk -v t="$((t1 - t0))" -v hz="$HZ" -v n="$(num requests "$f")" 'BEGIN{ if (n>0) printf "%.1f", t*1e6/hz/n }')
	local note="etcd $ETCD_VERSION, $(num conns "$f") gRPC connection(s)"
	[ "$(num errors "$f")" = 0 ] || note="$note, $(num errors "$f") errors: $(grep -o '"first_error": "[^"]*' "$f" | cut -d'"' -f4)"
	keep "$label" "$(num rps "$f")" "$(num p50_ms "$f")" "$(num p99_ms "$f")" "$cpu" "$note"
	say "$(printf '%-14s round %d: %8.0f req/s, server %6s us CPU/request (%s conns)' "$label" "$round" "$(num rps "$f")" "$cpu" "$(num conns "$f")")"
}

PUT_VALUE=$(head -c "$VALUE_SIZE" /dev/urandom | od -An -tx1 -v | tr -d ' \n')
# pgbench connects its clients inside its -T duration, which can take a
# second or more on a loaded machine; it gets 2s more and its tps excludes
# the connection time.
pgb() { # label script round
	local label=$1 script=$2 round=$3 f tps
	f=$RAW/$label.$round.txt
	"$PGBENCH" -n -M prepared -c "$CLIENTS" -j "$(nproc)" -T "$((secs + 2))" -f "$script" -D "v=\\x$PUT_VALUE" \
		-r "$PG_URL" >"$f" 2>&1 || die "pgbench $label failed: $(tail -5 "$f")"
	tps=$(sed -nE 's/^tps = ([0-9.]+) \(without initial connection time\)/\1/p' "$f")
	[ -n "$tps" ] || die "pgbench $label: no tps in its output: $(tail -5 "$f")"
	local lat
	lat=$(sed -nE 's/^latency average = ([0-9.]+) ms/\1/p' "$f")
	keep "$label" "$tps" "${lat:-0}" "" "" "pgbench reports the average latency (in the p50 column)"
	say "$(printf '%-14s round %d: %8.0f tps' "$label" "$round" "$tps")"
}

say "preloading $KEYS keys of $VALUE_SIZE bytes into both stores"
"$BIN" bench --dir "$CERTS" --server "localhost:$PORT_BOLT" --clients "$CLIENTS" --keys "$KEYS" --value-size "$VALUE_SIZE" --preload --requests 1 --quiet >/dev/null
"$BIN" bench --dir "$CERTS" --server "localhost:$PORT_PG" --clients "$CLIENTS" --keys "$KEYS" --value-size "$VALUE_SIZE" --preload --requests 1 --quiet >/dev/null
"$TMP/etcdbench" -endpoint "https://127.0.0.1:$PORT_ETCD" -cert "$CERTS/client.crt" -key "$CERTS/client.key" \
	-ca "$CERTS/ca.crt" -clients "$CLIENTS" -keys "$KEYS" -value-size "$VALUE_SIZE" -preload -duration 1s >/dev/null ||
	die "preloading etcd failed"
"$BIN" bench pgbench-script --op get --keys "$KEYS" >"$TMP/get.sql"
"$BIN" bench pgbench-script --op put --keys "$KEYS" >"$TMP/put.sql"
cp "$TMP/get.sql" "$TMP/put.sql" "$RAW/"

say "(a) embedded store against the bare ceiling, (e) and etcd"
for r in $(seq "$ROUNDS"); do
	bench bare_get bare "$PORT_BARE" "$r" --op get "${PROTO[@]}"
	bench bolt_get bolt "$PORT_BOLT" "$r" --op get "${PROTO[@]}"
	ebench etcd_get "$r" 0 -op get
	ebench etcd_get "$r" 1 -op get
done
for r in $(seq "$ROUNDS"); do
	bench bare_put bare "$PORT_BARE" "$r" --op put "${PROTO[@]}"
	bench bolt_put bolt "$PORT_BOLT" "$r" --op put "${PROTO[@]}"
	ebench etcd_put "$r" 0 -op put
	ebench etcd_put "$r" 1 -op put
done
if [ "$HTTP" != h2 ]; then
	say "(a) again over HTTP/2"
	for r in $(seq "$ROUNDS"); do
		bench h2_bare_get bare "$PORT_BARE" "$r" --op get --http2
		bench h2_bolt_get bolt "$PORT_BOLT" "$r" --op get --http2
	done
	for r in $(seq "$ROUNDS"); do
		bench h2_bare_put bare "$PORT_BARE" "$r" --op put --http2
		bench h2_bolt_put bolt "$PORT_BOLT" "$r" --op put --http2
	done
fi

say "(b) PostgreSQL store against pgbench"
for r in $(seq "$ROUNDS"); do
	pgb pgbench_get "$TMP/get.sql" "$r"
	bench pg_get pg "$PORT_PG" "$r" --op get "${PROTO[@]}"
	ebench etcd_get "$r" 1 -op get
done
for r in $(seq "$ROUNDS"); do
	pgb pgbench_put "$TMP/put.sql" "$r"
	bench pg_put pg "$PORT_PG" "$r" --op put "${PROTO[@]}"
	ebench etcd_put "$r" 1 -op put
done

say "(c) TLS handshakes (a new HTTP/1.1 connection per request)"
for r in $(seq "$ROUNDS"); do
	bench hs_full_bare bare "$PORT_BARE" "$r" --op get --new-conn --no-resume --http1
	bench hs_full_bolt bolt "$PORT_BOLT" "$r" --op get --new-conn --no-resume --http1
done
for r in $(seq "$ROUNDS"); do
	bench hs_res_bare bare "$PORT_BARE" "$r" --op get --new-conn --http1
	bench hs_res_bolt bolt "$PORT_BOLT" "$r" --op get --new-conn --http1
done

say "vegeta against both servers"
for k in $(seq 0 999); do
	echo "GET https://localhost:PORT/v1/kv/$((10000000 + (RANDOM * 32768 + RANDOM) % KEYS))"
done >"$TMP/get.targets"
head -c "$VALUE_SIZE" /dev/urandom >"$TMP/value"
for k in $(seq 0 999); do
	printf 'PUT https://localhost:PORT/v1/kv/%d\n@%s\n\n' "$((10000000 + (RANDOM * 32768 + RANDOM) % KEYS))" "$TMP/value"
done >"$TMP/put.targets"
veg() { # label port op [vegeta flags]
	local label=$1 port=$2 op=$3 f
	f=$RAW/$label.json
	sed "s/PORT/$port/" "$TMP/$op.targets" >"$TMP/targets"
	"$VEGETA" attack "${@:4}" -targets="$TMP/targets" -rate=0 -workers="$CLIENTS" -max-workers="$CLIENTS" \
		-duration="$DURATION" -cert="$CERTS/client.crt" -key="$CERTS/client.key" -root-certs="$CERTS/ca.crt" |
		"$VEGETA" report -type=json >"$f"
	local ok tput p50 p99
	tput=$(jq -r '.throughput' "$f")
	p50=$(jq -r '.latencies["50th"] / 1e6' "$f")
	p99=$(jq -r '.latencies["99th"] / 1e6' "$f")
	ok=$(jq -r '.success' "$f")
	local note=""
	[ "$ok" = 1 ] || note="success ratio $ok: $(jq -c '.errors[:2]' "$f")"
	keep "$label" "$tput" "$p50" "$p99" "" "$note"
	say "$(printf '%-14s         %8.0f req/s' "$label" "$tput")"
}
veg veg_bare_get "$PORT_BARE" get
veg veg_bolt_get "$PORT_BOLT" get
veg veg_bare_put "$PORT_BARE" put
veg veg_bolt_put "$PORT_BOLT" put
veg veg1_bare_get "$PORT_BARE" get -http2=false
veg veg1_bolt_get "$PORT_BOLT" get -http2=false
veg veg1_bare_put "$PORT_BARE" put -http2=false
veg veg1_bolt_put "$PORT_BOLT" put -http2=false

say "(d) memory: $IDLE_CONNS idle connections"
rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
idle() { # label server-command-kind
	local label=$1 kind=$2 pid base held
	if [ "$kind" = bare ]; then
		start "idle_$label" "$PORT_IDLE" "$BIN" bench bare-server --dir "$CERTS" --listen "127.0.0.1:$PORT_IDLE"
	else
		start "idle_$label" "$PORT_IDLE" "$BIN" serve --dir "$CERTS" --listen "127.0.0.1:$PORT_IDLE" --store "bolt:$TMP/idle.db"
	fi
	pid=$(eval echo "\$PID_idle_$label")
	"$BIN" bench --dir "$CERTS" --server "localhost:$PORT_IDLE" --requests 100 --clients 4 --op put --quiet >/dev/null
	sleep 1
	base=$(rss_kib "$pid")
	"$BIN" bench hold --dir "$CERTS" --server "localhost:$PORT_IDLE" --conns "$IDLE_CONNS" --for 5m --http2 >"$TMP/hold.out" 2>"$TMP/hold.err" &
	local holder=$!
	PIDS+=("$holder")
	local i
	for i in $(seq 600); do
		grep -q holding "$TMP/hold.out" 2>/dev/null && break
		kill -0 "$holder" 2>/dev/null || die "holding connections failed: $(cat "$TMP/hold.err")"
		sleep 0.1
	done
	sleep 2
	held=$(rss_kib "$pid")
	kill "$holder" "$pid" 2>/dev/null || true
	wait "$holder" "$pid" 2>/dev/null || true
	echo "$label base_kib=$base held_kib=$held conns=$IDLE_CONNS $(cat "$TMP/hold.out")" >>"$RAW/idle.txt"
	RSS[$label]=$(awk -v a="$base" -v b="$held" -v n="$IDLE_CONNS" 'BEGIN{printf "%.1f", (b-a)/n}')
	say "$(printf '%-14s %s KiB per connection (RSS %d -> %d KiB)' "$label" "${RSS[$label]}" "$base" "$held")"
}
declare -A RSS
idle serve serve
idle bare bare

# --- report ----------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "-" }'; }
met() { awk -v r="$1" -v g="$2" -v dir="$3" 'BEGIN{ if (r=="-") print "-"; else if ((dir==">=" && r>=g) || (dir=="<=" && r<=g)) print "yes"; else print "**no**" }'; }
fmt() { awk -v a="$1" 'BEGIN{ if (a=="") print "-"; else printf "%.0f", a }'; }
ms() { awk -v a="$1" 'BEGIN{ if (a=="" || a==0) print "-"; else printf "%.2f", a }'; }

row() { # figure ours ref goal
	local fig=$1 a=$2 b=$3 goal=$4 r
	r=$(ratio "${RPS[$a]:-0}" "${RPS[$b]:-0}")
	printf '| %s | %s | %s | %s× | ≥ %s× | %s |\n' "$fig" "$(fmt "${RPS[$a]:-}")" "$(fmt "${RPS[$b]:-}")" "$r" "$goal" "$(met "$r" "$goal" ">=")"
}

extra() { # figure ours ref: a row without a goal
	printf '| %s | %s | %s | %s× |\n' "$1" "$(fmt "${RPS[$2]:-}")" "$(fmt "${RPS[$3]:-}")" "$(ratio "${RPS[$2]:-0}" "${RPS[$3]:-0}")"
}
proto=HTTP/1.1
[ "$HTTP" = h2 ] && proto=HTTP/2

REPORT=$RAW/results.md
{
	echo "# kvsctl bench results, $STAMP"
	echo
	echo "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), load average before the run $LOAD_BEFORE, after $(cut -d' ' -f1 /proc/loadavg), $(go version | cut -d' ' -f3), kvsctl $("$BIN" --version | awk '{print $NF}'), $("$PGBENCH" --version | sed 's/ (PostgreSQL)//'), PostgreSQL $(psql "$PG_ADMIN" -tAc 'SHOW server_version' | cut -d' ' -f1), etcd $ETCD_VERSION (its Go client $(awk '$1=="go.etcd.io/etcd/client/v3"{print $2}' "$ETCD_DIR/go.mod"))."
	echo "Everything on 127.0.0.1 and the same 2 CPUs; $KEY_TYPE certificates from one 'kvsctl pki init'; $CLIENTS clients (pgbench: $CLIENTS connections; kvsctl serve: --pool-size $CLIENTS),"
	echo "$KEYS keys, $VALUE_SIZE-byte values, generator over $proto; each throughput is the best of $ROUNDS alternating runs of $DURATION."
	echo "kvsctl serve runs as shipped: audit log (one line per request) to a file, metrics on; kvsctl bench with the client's defaults (HTTP/1.1 keep-alive pool) unless a row says HTTP/2."
	echo "etcd: one member, --client-cert-auth with the same CA and certificates, fsync on; linearizable GETs and PUTs through go.etcd.io/etcd/client/v3 (scripts/etcdbench), the best of one client per worker and one client shared by all."
	echo
	echo "| figure | kvsctl | reference | ratio | goal | met |"
	echo "|---|---|---|---|---|---|"
	row "(e) GET req/s, embedded store vs etcd $ETCD_VERSION (linearizable)" bolt_get etcd_get 3
	row "(e) durable PUT req/s, embedded store vs etcd" bolt_put etcd_put 1.5
	row "(e) GET req/s, PostgreSQL store vs etcd (linearizable)" pg_get etcd_get 2
	row "(e) PUT req/s, PostgreSQL store vs etcd" pg_put etcd_put 1.2
	if [ "$HTTP" != h2 ]; then
		row "(a) GET req/s over HTTP/2, embedded store vs bare ceiling" h2_bolt_get h2_bare_get 0.85
	fi
	row "(a) GET req/s over $proto, embedded store vs bare ceiling" bolt_get bare_get 0.8
	row "(c) full handshakes/s, serve vs bare" hs_full_bolt hs_full_bare 0.9
	r=${RSS[serve]}
	printf '| (d) RSS per idle mTLS connection (%d, HTTP/2) | %s KiB | bare: %s KiB | - | ≤ 64 KiB | %s |\n' "$IDLE_CONNS" "$r" "${RSS[bare]}" "$(met "$r" 64 "<=")"
	echo
	echo "Without a goal (the first three were goals until issue 16; docs/performance.md says why they no longer are):"
	echo
	echo "| figure | kvsctl | reference | ratio |"
	echo "|---|---|---|---|"
	extra "(a) PUT req/s (durable), embedded store vs bare ceiling" bolt_put bare_put
	extra "(b) GET req/s, PostgreSQL store vs pgbench SELECT" pg_get pgbench_get
	extra "(b) PUT req/s, PostgreSQL store vs pgbench upsert" pg_put pgbench_put
	if [ "$HTTP" != h2 ]; then
		extra "(e) GET req/s, embedded store over HTTP/2 vs etcd" h2_bolt_get etcd_get
		extra "(e) PUT req/s, embedded store over HTTP/2 vs etcd" h2_bolt_put etcd_put
		extra "kvsctl bench GET, HTTP/1.1 (the default) vs HTTP/2, serve" bolt_get h2_bolt_get
		extra "kvsctl bench PUT, HTTP/1.1 (the default) vs HTTP/2, serve" bolt_put h2_bolt_put
		extra "kvsctl bench GET, HTTP/1.1 vs HTTP/2, bare" bare_get h2_bare_get
	fi
	extra "(c) resumed handshakes/s, serve vs bare" hs_res_bolt hs_res_bare
	if [ "$HTTP" != h2 ]; then
		extra "(a) GET req/s over HTTP/2, embedded vs bare" h2_bolt_get h2_bare_get
		extra "(a) PUT req/s over HTTP/2, embedded vs bare" h2_bolt_put h2_bare_put
	fi
	extra "vegeta GET req/s (HTTP/2, $CLIENTS workers), serve vs bare" veg_bolt_get veg_bare_get
	extra "vegeta PUT req/s (HTTP/2, $CLIENTS workers), serve vs bare" veg_bolt_put veg_bare_put
	extra "vegeta GET req/s (HTTP/1.1, $CLIENTS workers), serve vs bare" veg1_bolt_get veg1_bare_get
	extra "vegeta PUT req/s (HTTP/1.1, $CLIENTS workers), serve vs bare" veg1_bolt_put veg1_bare_put
	echo
	echo "Server CPU per request (µs, from /proc; other load on the machine moves it far less than throughput):"
	echo
	echo "| figure | kvsctl | etcd | etcd's CPU per request ÷ kvsctl's |"
	echo "|---|---|---|---|"
	cpurow() { printf '| %s | %s | %s | %s× |\n' "$1" "${CPU[$2]:--}" "${CPU[$3]:--}" "$(ratio "${CPU[$3]:-0}" "${CPU[$2]:-0}")"; }
	cpurow "GET, embedded store" bolt_get etcd_get
	cpurow "durable PUT, embedded store" bolt_put etcd_put
	cpurow "GET, PostgreSQL store (PostgreSQL's own CPU not counted)" pg_get etcd_get
	cpurow "PUT, PostgreSQL store (PostgreSQL's own CPU not counted)" pg_put etcd_put
	echo
	echo "Every run (best round): latency in ms, and the CPU the server process spent per request"
	echo "(pgbench: PostgreSQL's CPU is not counted, and only the average latency is reported):"
	echo
	echo "| run | req/s | p50 | p99 | server CPU µs/req | note |"
	echo "|---|---|---|---|---|---|"
	for l in bare_get bolt_get bare_put bolt_put h2_bare_get h2_bolt_get h2_bare_put h2_bolt_put etcd_get etcd_put pgbench_get pg_get pgbench_put pg_put hs_full_bare hs_full_bolt hs_res_bare hs_res_bolt veg_bare_get veg_bolt_get veg_bare_put veg_bolt_put veg1_bare_get veg1_bolt_get veg1_bare_put veg1_bolt_put; do
		[ -n "${RPS[$l]:-}" ] || continue
		printf '| %s | %s | %s | %s | %s | %s |\n' "$l" "$(fmt "${RPS[$l]:-}")" "$(ms "${P50[$l]:-}")" "$(ms "${P99[$l]:-}")" "${CPU[$l]:--}" "${NOTE[$l]:-}"
	done
} >"$REPORT"
cp "$REPORT" "$OUT/latest.md"
cat "$REPORT"
say "written to $OUT/latest.md (raw runs in $RAW)"
