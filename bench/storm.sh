#!/usr/bin/env bash
# Boot storm: N emulated phones (polyprov sim storm) against nginx serving a static boot root and
# storing the phones' uploads with WebDAV PUT (as Poly's guides have admins set up a web server),
# and against polyprov serving the same root and storing the same uploads, in one run. To show
# whether the storm runner or the server is the bottleneck, wrk replays the same GET mix against
# nginx for the same time.
# Loopback only; bounded by phone count and a time limit.
# Usage: [ROUNDS=5] [VERBOSE=1] [KNOWN=1] bench/storm.sh [phones=10000] [concurrency=100]
# VERBOSE=1 prints every file kind and where the phones waited (accept queue or server).
# KNOWN=1 is the storm after a power cut: every round boots the same phones, which both servers
# have already seen (one unmeasured storm first) — their upload folders and logs exist, nginx
# replaces their files. Without it every round boots phones neither server has seen (a site's
# first install: polyprov makes each phone's upload folder, nginx files in one folder).
# Needs: cargo build --release, nginx, wrk.
set -euo pipefail
PHONES=${1:-10000}
CONC=${2:-100}
. "$(dirname "$0")/lib.sh"
need nginx wrk

ROOT=$WORK/root
mkdir -p "$ROOT"
cat >"$ROOT/000000000000.cfg" <<'CFG'
<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="site.cfg, features.cfg" MISC_FILES="" LOG_FILE_DIRECTORY="" OVERRIDES_DIRECTORY="" CONTACTS_DIRECTORY="" LICENSE_DIRECTORY=""/>
CFG
cp "$REPO/tests/corpus/openspork__pp/Config/features.cfg" "$ROOT/features.cfg"
cat >"$ROOT/site.cfg" <<'CFG'
<polycomConfig><reg reg.1.server.1.address="pbx.example.com"/><tcpIpApp tcpIpApp.sntp.address="pool.ntp.org"/></polycomConfig>
CFG
{ printf 'POLYPROV-SIM-IMAGE 6.4.3.5018\n'; head -c 65536 /dev/zero; } >"$ROOT/sip.ld"
chmod -R a+r "$ROOT"

PORT=$(free_port)
# Uploads (PUT) go to a per-run folder outside the served root, as polyprov keeps them.
mkdir -p "$WORK/dav/uploads"
chmod -R a+rwx "$WORK/dav"
# The same answers as polyprov gives the same boot root: <mac>.cfg falls back to the shared master
# and <part>.<image> to the bare image, so a phone makes as many requests on either server.
start_nginx "listen 127.0.0.1:$PORT backlog=8192; root $ROOT; \
  if (\$request_method = PUT) { rewrite ^ /uploads\$uri last; } \
  location ~ \"^/[0-9a-fA-F]{12}\\.cfg\$\" { try_files \$uri /000000000000.cfg =404; } \
  location ~ \"^/[0-9]{4}-[0-9]{5}-[0-9]{3}\\.(.+)\$\" { try_files \$uri /\$1 =404; } \
  location /uploads/ { root $WORK/dav; dav_methods PUT; create_full_put_path on; \
    dav_access user:rw group:r all:r; client_max_body_size 1m; }"
NGINX_PID=${PIDS[-1]}

mkdir -p "$WORK/data"
cp -r "$ROOT" "$WORK/data/root"
printf '[provisioning]\nnew_devices_per_minute = 1000000\n' >"$WORK/polyprov.toml"
start_polyprov --config "$WORK/polyprov.toml" --http 127.0.0.1:0
POLYPROV_PID=${PIDS[-1]}
PHONES_ADDR=$(awk '/phones \(HTTP\)/ {print $3}' "$WORK/summary")
PW=$(cat "$WORK/data/provisioning.password")
sleep 0.3

# This machine's two cores are shared with other guests: one pair of runs can differ two-fold
# from the next. So the storm runs in ROUNDS rounds, the servers alternating which goes first,
# each round with MACs of its own (new phones for both); the ratio reported is of the medians.
ROUNDS=${ROUNDS:-5}
# MAC prefixes: one per round, never repeated in a run (a repeated one would boot phones both
# servers have met); after Poly's own OUIs, locally administered ones.
PREFIXES=(0004f2 64167f 482567 00e0db 0004f3)
for r in $(seq ${#PREFIXES[@]} $((ROUNDS - 1))); do PREFIXES+=("$(printf '02%04x' "$r")"); done
[ -n "${KNOWN:-}" ] && PREFIXES=(0004f2)
storm() { # name url round
  local pid=$NGINX_PID before before_user
  [ "$1" = polyprov ] && pid=$POLYPROV_PID
  before=$(cpu_ms "$pid")
  before_user=$(cpu_user_ms "$pid")
  # VERBOSE=1: where the phones wait — sampled every 50 ms, connections in the kernel's accept
  # queue (the listener's Recv-Q) and connections the server has taken.
  local sampler= port=${2##*:}
  port=${port%%/*}
  if [ -n "${VERBOSE:-}" ]; then
    while :; do
      echo "$(ss -Hltn "sport = :$port" | awk '{print $2}') $(ss -Htn state established "( sport = :$port )" | wc -l)"
      sleep 0.05
    done >"$WORK/$1-$3.queue" &
    sampler=$!
    PIDS+=("$sampler") # stopped by the cleanup too, should the storm fail
  fi
  "$BIN" sim storm --server "$2" --phones "$PHONES" --concurrency "$CONC" --time-limit 300 \
    --mac-prefix "${PREFIXES[$(( $3 % ${#PREFIXES[@]} ))]}" --json >"$WORK/$1-$3.json" || true
  echo $(($(cpu_ms "$pid") - before)) >"$WORK/$1-$3.cpu"
  echo $(($(cpu_user_ms "$pid") - before_user)) >"$WORK/$1-$3.usr"
  if [ -n "$sampler" ]; then
    kill "$sampler"
    wait "$sampler" 2>/dev/null || true
    awk '$2 > 0 {n++; q += $1; e += $2} END {if (n) printf "%-9s while busy: %.0f phones in the accept queue, %.0f taken by the server (means of %d samples)\n", "", q / n, e / n - q / n, n}' "$WORK/$1-$3.queue"
  fi
  python3 - "$1" "$WORK/$1-$3.json" "$(cat "$WORK/$1-$3.cpu")" <<'PY'
import json, os, sys
r = json.load(open(sys.argv[2]))
cpu = int(sys.argv[3])
lat = r["latency"]
print(f'{sys.argv[1]:<9} {r["phones_booted"]:>6} phones in {r["seconds"]:6.2f} s: {r["requests_per_second"]:8.0f} req/s '
      f'{r["phones_per_second"]:7.0f} phones/s  errors {r["error_count"]}  '
      + "  ".join(f'{k} p50/p99 {v["p50"]/1000:.2f}/{v["p99"]/1000:.2f} ms' for k, v in lat.items()
                 if k in ("master", "config", "firmware", "log") or os.environ.get("VERBOSE")))
print(f'{"":<9} answers by status: {r["statuses"]}  server CPU {cpu} ms, {cpu * 1000 / max(1, r["phones_booted"]):.0f} µs a phone')
PY
}
echo "phones=$PHONES concurrency=$CONC rounds=$ROUNDS${KNOWN:+ known phones (power cut)}"
if [ -n "${KNOWN:-}" ]; then
  # Each server meets the phones once, unmeasured (the JSON is overwritten by round 0).
  storm nginx "http://127.0.0.1:$PORT/" 0 >/dev/null
  storm polyprov "http://PlcmSpIp:$PW@$PHONES_ADDR/" 0 >/dev/null
fi
for r in $(seq 0 $((ROUNDS - 1))); do
  echo "round $((r + 1))"
  if [ $((r % 2)) = 0 ]; then
    storm nginx "http://127.0.0.1:$PORT/" "$r"
    storm polyprov "http://PlcmSpIp:$PW@$PHONES_ADDR/" "$r"
  else
    storm polyprov "http://PlcmSpIp:$PW@$PHONES_ADDR/" "$r"
    storm nginx "http://127.0.0.1:$PORT/" "$r"
  fi
done

# The same request mix, replayed by wrk against nginx for as long as the storm took.
SECS=$(python3 -c "import json;print(max(3,round(json.load(open('$WORK/nginx-0.json'))['seconds'])))")
cat >"$WORK/mix.lua" <<'LUA'
local paths = { "/000000000000.cfg", "/sip.ld", "/site.cfg", "/features.cfg", "/0004f2000001.cfg",
  "/3111-44500-001.sip.ld", "/0004f2000001-phone.cfg", "/0004f2000001-web.cfg", "/000000000000-license.cfg",
  "/0004f2000001-license.cfg", "/0004f2000001-calls.xml", "/0004f2000001-directory.xml", "/000000000000-directory.xml" }
local i = 0
request = function() i = i + 1; return wrk.format("GET", paths[(i % #paths) + 1]) end
LUA
wrk -t2 -c"$CONC" -d"${SECS}s" -s "$WORK/mix.lua" "http://127.0.0.1:$PORT" >"$WORK/wrk.txt"
WRK_RPS=$(awk '/^Requests\/sec/ {print $2}' "$WORK/wrk.txt")
python3 - "$WORK" "$ROUNDS" "$WRK_RPS" <<'PY'
import json, os, statistics, sys
work, rounds, w = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
runs = {s: [json.load(open(f"{work}/{s}-{r}.json")) for r in range(rounds)] for s in ("nginx", "polyprov")}
med = lambda s, f: statistics.median(f(r) for r in runs[s])
print(f"wrk, same mix against nginx: {w:.0f} req/s")
print(f"ratio storm-on-nginx / wrk-on-nginx: {runs['nginx'][0]['requests_per_second'] / w:.2f}  (1.0 = the runner keeps up with a load generator)")
print("per round, polyprov/nginx phones/s: " + " ".join(
    f"{p['phones_per_second'] / n['phones_per_second']:.2f}" for n, p in zip(runs["nginx"], runs["polyprov"])))
for kind in ("master", "config", "firmware", "log"):
    try:
        n, p = (med(s, lambda r: r["latency"][kind]["p99"]) for s in ("nginx", "polyprov"))
        print(f"p99 {kind:<8} median of rounds: nginx {n / 1000:.2f} ms, polyprov {p / 1000:.2f} ms, ratio {p / n:.2f} (goal <= 1.5)")
    except KeyError:
        pass
# A phone's whole boot (first request to last): what its user waits for, whichever of its
# requests the queue lands on.
for q in ("p50", "p99"):
    n, p = (med(s, lambda r: r["boot"][q]) for s in ("nginx", "polyprov"))
    print(f"boot {q}      median of rounds: nginx {n / 1000:.2f} ms, polyprov {p / 1000:.2f} ms, ratio {p / n:.2f}")
# CPU the server spent per phone booted: what a neighbour on the shared cores cannot skew.
cpu = {s: statistics.median(int(open(f"{work}/{s}-{r}.cpu").read()) * 1000 / max(1, runs[s][r]["phones_booted"])
    for r in range(rounds)) for s in ("nginx", "polyprov")}
print(f"server CPU a phone, median of rounds: nginx {cpu['nginx']:.0f} µs, polyprov {cpu['polyprov']:.0f} µs, ratio {cpu['polyprov'] / cpu['nginx']:.2f}")
# Split: user space is the server's own code; system time is mostly the TCP stack and the
# file system, which both servers drive with about as many calls.
usr = {s: statistics.median(int(open(f"{work}/{s}-{r}.usr").read()) * 1000 / max(1, runs[s][r]["phones_booted"])
    for r in range(rounds)) for s in ("nginx", "polyprov")}
sys_ = {s: statistics.median((int(open(f"{work}/{s}-{r}.cpu").read()) - int(open(f"{work}/{s}-{r}.usr").read()))
    * 1000 / max(1, runs[s][r]["phones_booted"]) for r in range(rounds)) for s in ("nginx", "polyprov")}
print(f"  user space: nginx {usr['nginx']:.0f} µs, polyprov {usr['polyprov']:.0f} µs, ratio {usr['polyprov'] / max(1, usr['nginx']):.2f};"
      f" system: nginx {sys_['nginx']:.0f} µs, polyprov {sys_['polyprov']:.0f} µs, ratio {sys_['polyprov'] / max(1, sys_['nginx']):.2f}")
errors = sum(r["error_count"] for s in runs.values() for r in s)
print(f"errors, all rounds: {errors}")
print(f"ratio polyprov / nginx+WebDAV under the storm{' of known phones' if os.environ.get('KNOWN') else ''}: "
      f"{med('polyprov', lambda r: r['phones_per_second']) / med('nginx', lambda r: r['phones_per_second']):.2f} (phones/s, median of {rounds} rounds)")
PY
echo "uploads stored: nginx $(find "$WORK/dav/uploads" -type f | wc -l) files, polyprov $(find "$WORK/data/uploads" -type f -not -name '.*' | wc -l) files"
