#!/usr/bin/env bash
# HTTPS beside nginx with the same certificate and key (from `polyprov tls init`, RSA 2048), in
# one run: keep-alive requests/s for generated per-device files and masters (polyprov renders
# them; nginx serves the same bytes as static files; wrk), and full handshakes/s (`openssl
# s_time -new`: a new session every time, two clients at once; nginx without session cache or
# tickets). Reports polyprov/nginx ratios.
# Loopback only; every load run is bounded in time.
# Usage: bench/https.sh [devices=500] [seconds=10] [connections=64]
# Needs: a release build (cargo build --release), wrk, nginx, curl.
set -euo pipefail
DEVICES=${1:-500}
SECONDS_PER_RUN=${2:-10}
CONNECTIONS=${3:-64}
. "$(dirname "$0")/lib.sh"
need wrk nginx curl openssl

"$BIN" tls init --data "$WORK/data" --host localhost >/dev/null
cat >"$WORK/polyprov.toml" <<TOML
[https]
listen = "127.0.0.1:0"
[provisioning]
new_devices_per_minute = 100000
TOML
start_polyprov --config "$WORK/polyprov.toml" --http 127.0.0.1:0
bench_devices "$DEVICES"
SECURE=$(awk '/phones \(HTTPS\)/ {print $3}' "$WORK/summary" | tr -d ,)
chmod a+rx "$WORK/data" "$WORK/data/tls"
chmod a+r "$WORK"/data/tls/*
NGINX_PORT=$(free_port)
start_nginx "listen 127.0.0.1:$NGINX_PORT ssl; root $WORK/static; \
  ssl_certificate $WORK/data/tls/server.pem; ssl_certificate_key $WORK/data/tls/server-key.pem; \
  ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache off; ssl_session_tickets off;"
sleep 0.5


run() { # name url [extra wrk args]
  local name=$1 url=$2; shift 2
  wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" -s "$WORK/mix.lua" "$@" "$url" >"$WORK/$name.txt"
  local rps errors
  rps=$(awk '/^Requests\/sec/ {print $2}' "$WORK/$name.txt")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' "$WORK/$name.txt" | tr '\n' ' ')
  printf '%-22s %10s req/s  %s\n' "$name" "$rps" "$errors"
  echo "$rps" >"$WORK/$name.rps"
}
ratio() { awk -v p="$(cat "$WORK/$1.rps")" -v n="$(cat "$WORK/$2.rps")" 'BEGIN { printf "%.2f", p / n }'; }
echo "devices=$DEVICES seconds=$SECONDS_PER_RUN connections=$CONNECTIONS (wrk -t2; RSA 2048; TLS as negotiated)"
run nginx-keepalive "https://localhost:$NGINX_PORT"
run polyprov-keepalive "https://localhost:${SECURE##*:}"
handshakes() { # name port: full handshakes per second, two s_time clients at once
  local name=$1 port=$2
  local clients=()
  for c in 1 2; do
    openssl s_time -connect "localhost:$port" -new -time "$SECONDS_PER_RUN" >"$WORK/$name.$c.txt" 2>&1 &
    clients+=($!)
  done
  wait "${clients[@]}"
  local total
  total=$(awk '/connections in [0-9]+ real seconds/ {n += $1; t = $4} END { if (t > 0) printf "%.0f", n / t; else print 0 }' "$WORK/$name".[12].txt)
  printf '%-22s %10s handshakes/s\n' "$name" "$total"
  echo "$total" >"$WORK/$name.rps"
}
handshakes nginx-handshakes "$NGINX_PORT"
handshakes polyprov-handshakes "${SECURE##*:}"
echo "ratio polyprov/nginx keep-alive requests: $(ratio polyprov-keepalive nginx-keepalive)  (goal >= 1.0)"
echo "ratio polyprov/nginx full handshakes:     $(ratio polyprov-handshakes nginx-handshakes)  (goal >= 0.8)"
