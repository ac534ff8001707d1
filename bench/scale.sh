#!/usr/bin/env bash
# Scale: N assigned devices (default 100,000) — assigning them through the bulk endpoint, paging
# through the inventory, the server's memory (RSS) idle and at its peak under a storm of phones
# that are those devices (each fetches its own generated files), and that storm's errors.
# Loopback only; bounded in count and time.
# Usage: bench/scale.sh [devices=100000] [storm_phones=50000] [concurrency=100]
# Needs: a release build, python3, curl.
set -euo pipefail
DEVICES=${1:-100000}
PHONES=${2:-50000}
CONC=${3:-100}
. "$(dirname "$0")/lib.sh"
need python3 curl

printf '[provisioning]\nnew_devices_per_minute = 10000000\n' >"$WORK/polyprov.toml"
start_polyprov --config "$WORK/polyprov.toml" --http 127.0.0.1:0
PID=${PIDS[-1]}
PHONES_ADDR=$(awk '/phones \(HTTP\)/ {print $3}' "$WORK/summary")
ADMIN=$(awk '/admin API/ {print $3}' "$WORK/summary" | sed 's#/api/v1##')
TOKEN=$(cat "$WORK/data/admin.token")
PW=$(cat "$WORK/data/provisioning.password")
rss() { awk -v k="$1" '$1 == k":" {printf "%.0f", $2 / 1024}' "/proc/$PID/status"; }

echo "devices=$DEVICES storm_phones=$PHONES concurrency=$CONC"
echo "RSS at start: $(rss VmRSS) MB"
python3 - "$ADMIN" "$TOKEN" "$DEVICES" <<'PY'
import json, sys, time, urllib.request
admin, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def call(method, path, body=None):
    req = urllib.request.Request(admin + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)
call("PUT", "/api/v1/profiles/site", {"params": {"reg.1.server.1.address": "pbx.example.com"}})
t = time.monotonic()
for start in range(1, n + 1, 10000):
    devices = [{"mac": f"0004f2{i:06x}", "profile": "site", "admin_password": f"pw{i}",
                "lines": [{"address": f"{i}@pbx.example.com", "user": str(i), "password": f"s{i}"}]}
               for i in range(start, min(n, start + 9999) + 1)]
    call("PUT", "/api/v1/devices", {"devices": devices})
assign = time.monotonic() - t
t = time.monotonic(); seen = 0; after = None
while True:
    page = call("GET", "/api/v1/devices?limit=1000" + (f"&after={after}" if after else ""))
    if not page: break
    seen += len(page); after = page[-1]["mac"]
paging = time.monotonic() - t
print(f"assign {n} devices (bulk, 10,000 a request): {assign:.1f} s ({n / assign:.0f} devices/s)")
print(f"page through {seen} devices, 1,000 a page: {paging:.1f} s")
PY
sleep 1
echo "RSS idle with $DEVICES devices: $(rss VmRSS) MB"
# The console's fleet page at this size: first page, a page deep in the MAC order, a search by
# part of a MAC, a state filter, last seen first (first page and deep), a model filter; and a
# device's page (each the median of 11 requests, server time seen by curl).
COOKIE=$(curl -s -i -X POST -d "token=$TOKEN" "$ADMIN/console/signin" | sed -n 's/^set-cookie: \(polyprov_session=[^;]*\).*/\1/ip')
for q in "?" "?after=0004f2010000" "?q=f2a8" "?state=released" "?sort=seen" \
  "?sort=seen&after=0-0004f2010000" "?model=VVX_500" "/0004f2000001"; do
  python3 - "$ADMIN/console/devices$q" "$COOKIE" <<'PY'
import statistics, subprocess, sys
url, cookie = sys.argv[1], sys.argv[2]
t = [float(subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{time_total}", "-b", cookie, url],
     capture_output=True, text=True).stdout) for _ in range(11)]
print(f"console {url.split('/console')[1]:<40} median {statistics.median(t) * 1000:.1f} ms")
PY
done
"$BIN" sim storm --server "http://PlcmSpIp:$PW@$PHONES_ADDR/" --phones "$PHONES" --concurrency "$CONC" \
  --time-limit 600 --json >"$WORK/storm.json" || true
python3 - "$WORK/storm.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
own = r["statuses"]
print(f'storm: {r["phones_booted"]} phones in {r["seconds"]:.1f} s ({r["phones_per_second"]:.0f} phones/s), '
      f'errors {r["error_count"]}, answers {own}')
PY
echo "RSS after the storm: $(rss VmRSS) MB, peak: $(rss VmHWM) MB"
