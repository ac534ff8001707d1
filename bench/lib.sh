# Shared by the benchmark scripts (source it): tools check, a work directory removed on exit with
# every process started from it, a reference nginx. Loopback only.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# BIN=path/to/polyprov compares another build (an A/B of two commits on the same load).
BIN=${BIN:-$REPO/target/release/polyprov}

# need TOOL…: exit 2 unless every tool (in PATH or /usr/sbin) and the release build are there.
need() {
  for t in "$@"; do
    command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || { echo "$t is not installed"; exit 2; }
  done
  [ -x "$BIN" ] || { echo "build first: cargo build --release"; exit 2; }
}

WORK=$(mktemp -d)
chmod a+rx "$WORK"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

# free_port: a TCP port nothing listens on now (asked of the kernel, not guessed).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_nginx SERVER…: nginx (2 workers, sendfile, long keep-alive, no access log, no error line
# for a file it does not have — polyprov logs those at debug level only, and phones ask for
# optional files on every boot) with the given directives inside its one server block, e.g.
# "listen 127.0.0.1:8080; root /srv;".
start_nginx() {
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<NGINX
worker_processes 2;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off; log_not_found off; sendfile on; tcp_nodelay on; keepalive_requests 100000;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx; fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  server { $* }
}
NGINX
  nginx -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
  PIDS+=($!)
}

# start_polyprov ARG…: `polyprov serve --data $WORK/data --admin 127.0.0.1:0 ARG…` (release
# build), its summary in $WORK/summary and log in $WORK/log; returns once it is listening.
start_polyprov() {
  "$BIN" serve --data "$WORK/data" --admin 127.0.0.1:0 "$@" >"$WORK/summary" 2>"$WORK/log" &
  PIDS+=($!)
  for _ in $(seq 1 100); do grep -q '^  metrics' "$WORK/summary" 2>/dev/null && break; sleep 0.1; done
}

# bench_devices N: assigns N devices (profile "bench", an admin password and a line each) to
# the polyprov started by start_polyprov, lists their MACs in $WORK/macs, and writes the files
# polyprov generates for them (<mac>.cfg, <mac>-polyprov.cfg) to $WORK/static for nginx to
# serve as static files; $WORK/mix.lua is a wrk script asking for them, half masters, half
# per-device files, with the credentials. Sets PHONES, ADMIN, TOKEN, BASIC.
bench_devices() {
  local n=$1 mac i
  PHONES=$(awk '/phones \(HTTP\)/ {print $3}' "$WORK/summary")
  ADMIN=$(awk '/admin API/ {print $3}' "$WORK/summary" | sed 's#/api/v1##')
  TOKEN=$(cat "$WORK/data/admin.token")
  BASIC=$(printf 'PlcmSpIp:%s' "$(cat "$WORK/data/provisioning.password")" | base64 -w0)
  echo "assigning $n devices..."
  curl -sf -X PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"params":{"reg.1.server.1.address":"pbx.example.com","tcpIpApp.sntp.address":"pool.ntp.org","voIpProt.SIP.outboundProxy.address":"sbc.example.com"}}' \
    "$ADMIN/api/v1/profiles/bench" >/dev/null
  python3 - "$n" >"$WORK/devices.json" <<'PY'
import json, sys
n = int(sys.argv[1])
print(json.dumps({"devices": [{"mac": f"0004f2{i:06x}", "profile": "bench", "admin_password": f"pw{i}",
    "lines": [{"address": f"{i}@pbx.example.com", "user": str(i), "password": f"secret{i}"}]} for i in range(1, n + 1)]}))
PY
  POLYPROV_SERVER=$ADMIN POLYPROV_TOKEN=$TOKEN "$BIN" device import "$WORK/devices.json" >/dev/null 2>&1
  mkdir -p "$WORK/static"
  chmod a+rx "$WORK" "$WORK/static"  # nginx workers run as another user
  : >"$WORK/macs"
  for i in $(seq 1 "$n"); do
    mac=$(printf '0004f2%06x' "$i")
    echo "$mac" >>"$WORK/macs"
    curl -sf -H "Authorization: Basic $BASIC" "http://$PHONES/$mac-polyprov.cfg" -o "$WORK/static/$mac-polyprov.cfg"
    curl -sf "http://$PHONES/$mac.cfg" -o "$WORK/static/$mac.cfg"
  done
  chmod a+r "$WORK"/static/*
  cat >"$WORK/mix.lua" <<LUA
local macs = {}
for line in io.lines("$WORK/macs") do macs[#macs + 1] = line end
local i = 0
request = function()
  i = i + 1
  local mac = macs[(i % #macs) + 1]
  local path
  if i % 2 == 0 then path = "/" .. mac .. "-polyprov.cfg" else path = "/" .. mac .. ".cfg" end
  return wrk.format("GET", path, { ["Authorization"] = "Basic $BASIC",
    ["User-Agent"] = "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Application" })
end
LUA
}

# cpu_ms PID…: CPU time (user + system, ms) used so far by each PID and its children processes
# (nginx's workers), summed — for cost-per-request figures that a busy neighbour cannot skew.
# cpu_user_ms PID…: the user-space part of it.
cpu_ms() { cpu_fields_ms '$12 + $13' "$@"; }
cpu_user_ms() { cpu_fields_ms '$12' "$@"; }
cpu_fields_ms() {
  local tck p fields=$1 ticks=0
  shift
  tck=$(getconf CLK_TCK)
  for p in "$@" $(for q in "$@"; do pgrep -P "$q"; done); do
    [ -r "/proc/$p/stat" ] || continue
    ticks=$((ticks + $(sed 's/.*) //' "/proc/$p/stat" | awk "{print $fields}")))
  done
  echo $((ticks * 1000 / tck))
}
