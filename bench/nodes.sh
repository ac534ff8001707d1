#!/usr/bin/env bash
# Several nodes: a boot storm of assigned phones through nginx (round robin, keep-alive to the
# nodes) to 1, 2 and 3 polyprov nodes sharing one PostgreSQL, beside one node on SQLite with no
# balancer; and 3 nodes with [store] check_before_serving off. Reports, for each, phones/s,
# errors, and the database statements per phone boot (pg_stat_statements: every statement the
# nodes sent while the storm ran, sightings flushes and change announcements included; then
# for a second storm of the same phones with the caches warm, all of it and the reads on
# requests' path; VERBOSE=1 lists the most frequent of the first storm).
# On two shared cores more nodes cannot go faster: this shows the cost of the balancer and the
# shared database, and that nothing breaks, not a speed-up.
# Loopback only; bounded by phone count and a time limit.
# Usage: bench/nodes.sh [phones=5000] [concurrency=200]
# Needs: cargo build --release, nginx, PostgreSQL's server (Debian's postgresql).
set -euo pipefail
PHONES=${1:-5000}
CONC=${2:-200}
. "$(dirname "$0")/lib.sh"
need nginx curl

PGBIN=$(dirname "$(readlink -f "$(command -v initdb 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")")
[ -x "$PGBIN/initdb" ] || { echo "PostgreSQL's server is not installed"; exit 2; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$WORK/pg"
[ "$(id -u)" = 0 ] && chown postgres: "$WORK/pg"
PGPORT=$(free_port)
as_pg "$PGBIN/initdb" -D "$WORK/pg/data" -A trust -U polyprov -E UTF8 --locale=C >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w -o \
  "-h 127.0.0.1 -p $PGPORT -k $WORK/pg -c max_connections=200 -c shared_preload_libraries=pg_stat_statements" \
  start >/dev/null
stop_pg() { as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m fast stop >/dev/null 2>&1 || true; }
trap 'stop_pg; cleanup' EXIT
psql_() { "$PGBIN/psql" -qtA -h 127.0.0.1 -p "$PGPORT" -U polyprov "$@"; }

# One boot root, one provisioning password and admin token for every node (a deployment copies
# them, as it copies certificates).
mkdir -p "$WORK/shared/root"
cat >"$WORK/shared/root/000000000000.cfg" <<'CFG'
<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="site.cfg" MISC_FILES="" LOG_FILE_DIRECTORY="" OVERRIDES_DIRECTORY="" CONTACTS_DIRECTORY="" LICENSE_DIRECTORY=""/>
CFG
echo '<polycomConfig><tcpIpApp tcpIpApp.sntp.address="pool.ntp.org"/></polycomConfig>' >"$WORK/shared/root/site.cfg"
{ printf 'POLYPROV-SIM-IMAGE 6.4.3.5018\n'; head -c 65536 /dev/zero; } >"$WORK/shared/root/sip.ld"
head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$WORK/shared/provisioning.password"
head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$WORK/shared/admin.token"
PW=$(cat "$WORK/shared/provisioning.password")
TOKEN=$(cat "$WORK/shared/admin.token")
python3 - "$PHONES" >"$WORK/devices.json" <<'PY'
import json, sys
n = int(sys.argv[1])
print(json.dumps({"devices": [{"mac": f"0004f2{i:06x}", "admin_password": f"pw{i}",
    "lines": [{"address": f"{i}@pbx.example.com", "user": str(i), "password": f"secret{i}"}]}
    for i in range(1, n + 1)]}))
PY

# start_node NAME STORE_URL CHECK: a node with its own data directory; prints its phone door.
start_node() {
  local d=$WORK/$1
  mkdir -p "$d/data"
  cp -r "$WORK/shared/root" "$d/data/root"
  install -m 600 "$WORK/shared/provisioning.password" "$WORK/shared/admin.token" "$d/data/"
  {
    printf '[provisioning]\nnew_devices_per_minute = 1000000\ndevice_logins = false\n'
    [ -n "$2" ] && printf '[store]\nurl = "%s"\ncheck_before_serving = %s\n' "$2" "$3"
  } >"$d/polyprov.toml"
  "$BIN" serve --data "$d/data" --config "$d/polyprov.toml" --http 127.0.0.1:0 \
    --admin 127.0.0.1:0 >"$d/summary" 2>"$d/log" &
  PIDS+=($!)
  NODE_PIDS+=($!)
  for _ in $(seq 1 100); do grep -q '^  metrics' "$d/summary" 2>/dev/null && break; sleep 0.1; done
}
field() { awk "/$2/ {print \$3}" "$WORK/$1/summary"; }

# balance NAME PORT ADDR…: nginx on PORT passing phones round robin to ADDR…
balance() {
  local name=$1 port=$2; shift 2
  mkdir -p "$WORK/$name"
  {
    echo "worker_processes 1; pid $WORK/$name/nginx.pid; error_log $WORK/$name/error.log;"
    echo "events { worker_connections 8192; }"
    echo "http { access_log off; client_body_temp_path $WORK/$name; proxy_temp_path $WORK/$name;"
    echo "  fastcgi_temp_path $WORK/$name; uwsgi_temp_path $WORK/$name; scgi_temp_path $WORK/$name;"
    echo "  upstream polyprov {"
    for a in "$@"; do echo "    server $a;"; done
    echo "    keepalive 256; }"
    echo "  server { listen 127.0.0.1:$port backlog=8192; client_max_body_size 2m;"
    echo "    location / { proxy_pass http://polyprov; proxy_http_version 1.1;"
    echo "      proxy_set_header Connection \"\"; proxy_set_header Host \$host; } } }"
  } >"$WORK/$name/nginx.conf"
  nginx -c "$WORK/$name/nginx.conf" -g 'daemon off;' &
  PIDS+=($!)
  BALANCER_PID=$!
  sleep 0.3
}

# run LABEL NODES ENGINE CHECK [direct]
run() {
  local label=$1 nodes=$2 engine=$3 check=$4 direct=${5:-} db="" url="" i addrs=() server
  NODE_PIDS=()
  if [ "$engine" = postgres ]; then
    db="b$RANDOM$RANDOM"
    psql_ -d postgres -c "CREATE DATABASE $db"
    url="postgres://polyprov@127.0.0.1:$PGPORT/$db"
  fi
  for i in $(seq 1 "$nodes"); do
    start_node "$db-$label-$i" "$url" "$check"
    addrs+=("$(field "$db-$label-$i" 'phones \(HTTP\)')")
  done
  POLYPROV_SERVER=$(field "$db-$label-1" 'admin API' | sed 's#/api/v1##') POLYPROV_TOKEN=$TOKEN \
    "$BIN" device import "$WORK/devices.json" >/dev/null
  if [ "$engine" = postgres ]; then
    psql_ -d "$db" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
    psql_ -d "$db" -c "SELECT pg_stat_statements_reset()" >/dev/null
  fi
  if [ "$engine" = postgres ] && [ -z "$direct" ]; then
    local port
    port=$(free_port)
    balance "lb-$db" "$port" "${addrs[@]}"
    server="http://PlcmSpIp:$PW@127.0.0.1:$port/"
  else
    server="http://PlcmSpIp:$PW@${addrs[0]}/"
  fi
  "$BIN" sim storm --server "$server" --phones "$PHONES" --concurrency "$CONC" --time-limit 300 \
    --mac-prefix 0004f2 --json >"$WORK/$label.json" || true
  sleep 1.2 # one sightings flush after the last boot
  local statements=- warm="- -"
  if [ "$engine" = postgres ]; then
    statements=$(psql_ -d "$db" -c "SELECT COALESCE(SUM(s.calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = '$db' AND s.query NOT LIKE '%pg_stat_statements%'")
    # The same phones again, caches warm: what is still sent, and what of it is on a request's
    # path (reads; the sightings flush is writes in its own transaction).
    psql_ -d "$db" -c "SELECT pg_stat_statements_reset()" >/dev/null
    "$BIN" sim storm --server "$server" --phones "$PHONES" --concurrency "$CONC" --time-limit 300 \
      --mac-prefix 0004f2 --json >"$WORK/$label-warm.json" || true
    sleep 1.2
    warm=$(psql_ -d "$db" -c "SELECT COALESCE(SUM(s.calls), 0) || ' ' || COALESCE(SUM(s.calls) FILTER (WHERE s.query ILIKE 'SELECT%' AND s.query NOT LIKE '%pg_advisory_xact_lock%'), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = '$db' AND s.query NOT LIKE '%pg_stat_statements%'")
    [ -z "$direct" ] && kill "$BALANCER_PID" 2>/dev/null
    if [ "${VERBOSE:-0}" = 1 ]; then
      psql_ -d "$db" -c "SELECT round(s.calls::numeric / $PHONES, 2) || ' a boot: ' || left(regexp_replace(s.query, '\s+', ' ', 'g'), 110) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = '$db' AND s.query NOT LIKE '%pg_stat_statements%' ORDER BY s.calls DESC LIMIT 8" | sed 's/^/    /'
    fi
  fi
  python3 - "$label" "$WORK/$label.json" "$statements" "$PHONES" $warm <<'PY'
import json, sys
label, path, statements, phones = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
warm_all, warm_path = sys.argv[5], sys.argv[6]
r = json.load(open(path))
per = "-" if statements == "-" else f"{int(statements) / max(1, r['phones_booted']):.1f}"
if warm_all != "-":
    per += f" (warm: {int(warm_all) / phones:.1f}, {int(warm_path) / phones:.1f} on requests' path)"
own = r["latency"].get("config", {}).get("p99", 0) / 1000
print(f"{label:<34} {r['phones_booted']:>6} booted {r['phones_per_second']:8.0f} phones/s  "
      f"errors {r['error_count']:>3}  boot p99 {r['boot']['p99'] / 1000:7.1f} ms  "
      f"config p99 {own:6.1f} ms  DB statements/boot {per}  answers {r['statuses']}")
PY
  for p in "${NODE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait "${NODE_PIDS[@]}" 2>/dev/null || true
}

echo "phones=$PHONES concurrency=$CONC, $(nproc) cores; every phone assigned (device_logins off)"
run "1 node, SQLite, direct" 1 sqlite true
run "1 node, PostgreSQL, direct" 1 postgres true direct
run "1 node, PostgreSQL, via nginx" 1 postgres true
run "2 nodes, PostgreSQL, via nginx" 2 postgres true
run "3 nodes, PostgreSQL, via nginx" 3 postgres true
run "3 nodes, PostgreSQL, check off" 3 postgres false
