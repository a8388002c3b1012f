#!/usr/bin/env bash
# bench-pki.sh: time 'kvsctl pki init' against the flow it replaces, two
#   openssl req -x509 -sha256 -newkey rsa:2048 -keyout X.key -out X.crt -days 1024 -nodes -subj /CN=x
# runs (server and client), and print the median of each and their ratio.
#
# Usage: scripts/bench-pki.sh [path/to/kvsctl]    (RUNS=N, default 15, at least 10)
# Without an argument it builds bin/kvsctl first. Runs are interleaved
# (kvsctl, openssl, kvsctl, ...) so that load from other processes hits both
# sides alike. The goal is on the default, a CA hierarchy: four RSA keys
# (root, intermediate, server, client), both CAs, two signed CRLs and the
# inventory. kvsctl is also timed with --flat (three keys, one CA) and
# with --self-signed, which writes exactly what the openssl flow writes
# (two self-signed pairs).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-15}
if [ "$runs" -lt 10 ]; then echo "bench-pki: RUNS must be at least 10" >&2; exit 2; fi
command -v openssl >/dev/null || { echo "bench-pki: openssl is required" >&2; exit 1; }
bin=${1:-}
if [ -z "$bin" ]; then
  go build -trimpath -o bin/kvsctl ./cmd/kvsctl
  bin=bin/kvsctl
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

now() { date +%s%N; }
us_since() { echo $(( ($(now) - $1) / 1000 )); }

openssl_flow() {
  (cd "$1" &&
    openssl req -x509 -sha256 -newkey rsa:2048 -keyout server.key -out server.crt -days 1024 -nodes -subj /CN=server 2>/dev/null &&
    openssl req -x509 -sha256 -newkey rsa:2048 -keyout client.key -out client.crt -days 1024 -nodes -subj /CN=client 2>/dev/null)
}

kv=() ; kf=() ; ks=() ; os=()
for i in $(seq 1 "$runs"); do
  t=$(now); "$bin" pki init --dir "$work/ca$i" >/dev/null; kv+=("$(us_since "$t")")
  mkdir "$work/o$i"
  t=$(now); openssl_flow "$work/o$i"; os+=("$(us_since "$t")")
  t=$(now); "$bin" pki init --flat --dir "$work/flat$i" >/dev/null; kf+=("$(us_since "$t")")
  t=$(now); "$bin" pki init --self-signed --dir "$work/ss$i" >/dev/null; ks+=("$(us_since "$t")")
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {m = (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; printf "%.1f", m/1000}'; }
mk=$(median "${kv[@]}"); mf=$(median "${kf[@]}"); ms=$(median "${ks[@]}"); mo=$(median "${os[@]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }

echo "runs: $runs each, interleaved; $(nproc) CPUs; $(openssl version)"
printf '%-44s %10s ms\n' "openssl req -x509 rsa:2048, twice" "$mo"
printf '%-44s %10s ms   ratio %s\n' "kvsctl pki init (hierarchy, 4 RSA-2048 keys)" "$mk" "$(ratio "$mk" "$mo")"
printf '%-44s %10s ms   ratio %s\n' "kvsctl pki init --flat (3 keys)" "$mf" "$(ratio "$mf" "$mo")"
printf '%-44s %10s ms   ratio %s\n' "kvsctl pki init --self-signed (2 keys)" "$ms" "$(ratio "$ms" "$mo")"
if awk -v a="$mk" -v b="$mo" 'BEGIN {exit !(a <= 0.5*b)}'; then
  echo "target met: kvsctl pki init takes at most half the time of the openssl flow"
else
  echo "target MISSED: kvsctl pki init takes more than half the time of the openssl flow"
fi
