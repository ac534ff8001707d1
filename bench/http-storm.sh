#!/usr/bin/env bash
# Boot-storm benchmark of the phone door: GETs of generated per-device files (<mac>-polyprov.cfg)
# and generated masters (<mac>.cfg) for many assigned devices, against polyprov and against nginx
# serving the very same bytes as static files, in the same run. Reports the ratio polyprov/nginx.
# Loopback only; every load run is bounded in time.
# Usage: bench/http-storm.sh [devices=1000] [seconds=10] [connections=64]
# Needs: a release build (cargo build --release), wrk, nginx, curl.
set -euo pipefail
DEVICES=${1:-1000}
SECONDS_PER_RUN=${2:-10}
CONNECTIONS=${3:-64}
. "$(dirname "$0")/lib.sh"
need wrk nginx curl

start_polyprov --http 127.0.0.1:0
bench_devices "$DEVICES"

NGINX_PORT=$(free_port)
start_nginx "listen 127.0.0.1:$NGINX_PORT; root $WORK/static;"
sleep 0.5


run() { # name url
  wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -s "$WORK/mix.lua" "$2" >"$WORK/$1.txt"
  local rps p50 p99 errors
  rps=$(awk '/^Requests\/sec/ {print $2}' "$WORK/$1.txt")
  p50=$(awk '$1=="50%" {print $2}' "$WORK/$1.txt")
  p99=$(awk '$1=="99%" {print $2}' "$WORK/$1.txt")
  errors=$(awk '/Non-2xx/ {print $NF}' "$WORK/$1.txt")
  printf '%-9s %10s req/s   p50 %8s   p99 %8s   non-2xx %s\n' "$1" "$rps" "$p50" "$p99" "${errors:-0}"
  echo "$rps" >"$WORK/$1.rps"
}
echo "devices=$DEVICES seconds=$SECONDS_PER_RUN connections=$CONNECTIONS (wrk -t2, half masters, half per-device files)"
run nginx "http://127.0.0.1:$NGINX_PORT"
run polyprov "http://$PHONES"
awk -v p="$(cat "$WORK/polyprov.rps")" -v n="$(cat "$WORK/nginx.rps")" \
  'BEGIN { printf "ratio polyprov/nginx: %.2f\n", p / n }'
