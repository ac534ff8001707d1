#!/usr/bin/env bash
# Fleet action at scale: N emulated phones boot against polyprov and stay on, each listening
# for SIP NOTIFY on its own loopback port; then one `polyprov device resync --all` reaches them
# in waves (--rate) and watches each come back. Reports how many acknowledged and came back and
# how long it took. There is no reference server for this (peers send NOTIFY through a PBX, one
# phone at a time), so the numbers are absolute: compare runs on the same machine.
# Loopback only; bounded by phone count and time limits.
# Usage: bench/actions.sh [phones=1000] [rate=200]
# Needs: cargo build --release.
set -euo pipefail
N=${1:-1000}
RATE=${2:-200}
. "$(dirname "$0")/lib.sh"
need python3

mkdir -p "$WORK/data"
printf '[provisioning]\nnew_devices_per_minute = 1000000\n[actions]\nsip_t1_ms = 200\n' >"$WORK/polyprov.toml"
start_polyprov --config "$WORK/polyprov.toml" --http 127.0.0.1:0
PHONES=$(awk '/phones \(HTTP\)/ {print $3}' "$WORK/summary")
ADMIN=$(awk '/admin API/ {print $3}' "$WORK/summary" | sed 's#/api/v1##')
export POLYPROV_SERVER=$ADMIN POLYPROV_TOKEN=$(cat "$WORK/data/admin.token")
PW=$(cat "$WORK/data/provisioning.password")
# N consecutive free UDP ports below the ephemeral range.
BASE=$(python3 - "$N" <<'PY'
import socket, sys
n = int(sys.argv[1])
for base in range(20000, 32000 - n, 97):
    held = []
    try:
        for i in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", base + i)); held.append(s)
        print(base); break
    except OSError:
        pass
    finally:
        for s in held: s.close()
PY
)
"$BIN" sim storm --server "http://PlcmSpIp:$PW@$PHONES/" --phones "$N" --concurrency 100 \
  --mac-prefix 0004f3 --listen-sip-base "$BASE" --listen-secs 300 --json >"$WORK/storm.json" 2>"$WORK/storm.err" &
PIDS+=($!)
for _ in $(seq 1 600); do grep -q listening "$WORK/storm.err" 2>/dev/null && break; sleep 0.5; done
grep listening "$WORK/storm.err"
python3 - "$N" "$BASE" >"$WORK/devices.json" <<'PY'
import json, sys
n, base = int(sys.argv[1]), int(sys.argv[2])
print(json.dumps({"devices": [{"mac": f"0004f3{i + 1:06x}", "admin_password": f"pw{i}",
    "params": {"voIpProt.SIP.local.port": str(base + i)}} for i in range(n)]}))
PY
"$BIN" device import "$WORK/devices.json" >/dev/null
START=$(date +%s.%N)
"$BIN" device resync --all --rate "$RATE" --wait 60 --json >"$WORK/job.json" || true
END=$(date +%s.%N)
python3 - "$WORK/job.json" "$START" "$END" "$RATE" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); secs = float(sys.argv[3]) - float(sys.argv[2]); rate = float(sys.argv[4])
c = j["counts"]
back = sorted(r["came_back"]["after_ms"] for r in j["results"] if r["came_back"])
p = lambda q: back[min(len(back) - 1, int(q * (len(back) - 1)))] if back else 0
print(f"{c['phones']} phones, rate {rate:.0f}/s: {c['acknowledged']} acknowledged, {c['came_back']} came back, "
      f"{c['failed']} failed, in {secs:.1f} s (the rate alone takes {c['phones'] / rate:.1f} s; each phone "
      f"is then watched 3 s for what it fetches)")
print(f"time from NOTIFY to the phone's master fetch: p50 {p(0.5)} ms, p99 {p(0.99)} ms, max {back[-1] if back else 0} ms")
PY
