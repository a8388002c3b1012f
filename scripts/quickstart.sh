#!/usr/bin/env bash
# Quick start, run by 'make run': create certificates if the PKI directory
# holds none, start 'kvsctl serve' on the embedded store, wait until it
# answers, do a put/get round trip with the client, print the curl commands
# that do the same, and keep the server in the foreground: Ctrl-C stops it
# (gracefully) and ends the script.
#
# Usage: scripts/quickstart.sh [BIN]   (BIN defaults to bin/kvsctl)
# Honours KVS_CERTS, KVS_LISTEN, KVS_STORE and KVS_SERVER like kvsctl does.
set -euo pipefail

BIN=${1:-bin/kvsctl}
cd "$(dirname "$0")/.."
case $BIN in /*) ;; *) BIN=./$BIN ;; esac
if [ ! -x "$BIN" ]; then
  echo "quickstart: $BIN not found: run 'make build' first" >&2
  exit 1
fi

export KVS_CERTS=${KVS_CERTS:-certs}
export KVS_LISTEN=${KVS_LISTEN:-127.0.0.1:7443}
export KVS_STORE=${KVS_STORE:-bolt:data/kvs.db}
export KVS_SERVER=${KVS_SERVER:-localhost:${KVS_LISTEN##*:}}
dir=$KVS_CERTS

step() { printf '\n==> %s\n' "$*"; }

if [ -f "$dir/ca.crt" ] || [ -f "$dir/server.crt" ]; then
  step "using the certificates in $dir/"
else
  step "kvsctl pki init   ($dir/ holds no certificates yet)"
  "$BIN" pki init
fi
if [ -f "$dir/ca.crt" ]; then ca=$dir/ca.crt; else ca=$dir/server.crt; fi

step "kvsctl serve   (store $KVS_STORE, https://$KVS_LISTEN)"
"$BIN" serve &
pid=$!
# Ctrl-C reaches the server too (same process group); on TERM, pass it on.
# Whatever ends the script, the server does not outlive it.
trap 'kill -INT "$pid" 2>/dev/null || true' INT TERM
trap 'kill -INT "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true' EXIT

# Wait for /healthz through the client, unless the server gave up.
for _ in $(seq 1 100); do
  if ! kill -0 "$pid" 2>/dev/null; then
    status=0
    wait "$pid" || status=$?
    echo "quickstart: kvsctl serve exited with status $status (its message is above)" >&2
    exit "$status"
  fi
  "$BIN" health >/dev/null 2>&1 && break
  sleep 0.2
done
"$BIN" health --wait 1s >/dev/null

step "kvsctl put hello world   (prints the new version)"
"$BIN" put hello world
step "kvsctl get hello"
"$BIN" get hello
echo

step "the same with curl"
cert="--cert $dir/client.crt --key $dir/client.key --cacert $ca"
echo "  curl $cert -X PUT --data-binary world https://$KVS_SERVER/v1/kv/hello"
echo "  curl $cert https://$KVS_SERVER/v1/kv/hello"
if command -v curl >/dev/null; then
  # shellcheck disable=SC2086 # $cert is a list of arguments
  printf '  -> %s\n' "$(curl -q -sS --noproxy '*' $cert "https://$KVS_SERVER/v1/kv/hello")"
fi

step "serving on https://$KVS_LISTEN in the foreground: Ctrl-C stops it"
status=0
wait "$pid" || status=$?
if kill -0 "$pid" 2>/dev/null; then
  # wait was interrupted by the signal: let the server finish shutting down.
  status=0
  wait "$pid" || status=$?
fi
exit "$status"
