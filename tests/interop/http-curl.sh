#!/usr/bin/env bash
# The phone door's core path driven by curl against a release build of polyprov, on loopback:
# GET, HEAD, PUT, Range, If-None-Match, credentials, refusals.
# Usage: tests/interop/http-curl.sh [path/to/polyprov]   (default: target/release/polyprov)
set -uo pipefail

BIN=${1:-target/release/polyprov}
[ -x "$BIN" ] || { echo "no polyprov binary at $BIN (cargo build --release)"; exit 2; }
command -v curl >/dev/null || { echo "curl is not installed"; exit 2; }
command -v fail2ban-regex >/dev/null || { echo "fail2ban-regex is not installed (Debian: fail2ban)"; exit 2; }
REPO=$(cd "$(dirname "$0")/../.." && pwd)

WORK=$(mktemp -d)
DATA=$WORK/data
SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" serve --data "$DATA" --http 127.0.0.1:0 --admin 127.0.0.1:0 >"$WORK/summary" 2>"$WORK/log" &
SERVER_PID=$!
for _ in $(seq 1 100); do grep -q '^  metrics' "$WORK/summary" 2>/dev/null && break; sleep 0.1; done
PHONES=$(awk '/phones \(HTTP\)/ {print $3}' "$WORK/summary")
ADMIN=$(awk '/admin API/ {print $3}' "$WORK/summary" | sed 's#/api/v1##')
[ -n "$PHONES" ] && [ -n "$ADMIN" ] || { echo "server did not start:"; cat "$WORK/summary" "$WORK/log"; exit 1; }
PW=$(cat "$DATA/provisioning.password")
AUTH=(-u "PlcmSpIp:$PW")
UA='FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Application'
MAC=0004f2aa814c
export POLYPROV_SERVER=$ADMIN POLYPROV_TOKEN=$(cat "$DATA/admin.token")

passed=0 failed=0
check() { # name, then a command that must succeed
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok - $name"
  else failed=$((failed + 1)); echo "not ok - $name"; fi
}
status() { # prints the HTTP status of a curl call
  curl -s -o /dev/null -w '%{http_code}' -A "$UA" "$@"
}

check "staging master for an unknown MAC" \
  bash -c "curl -sf -A '$UA' http://$PHONES/0004F2000001.cfg | grep -q '<APPLICATION'"

"$BIN" profile set sales --param reg.1.server.1.address=pbx.example.com >/dev/null
"$BIN" device assign $MAC --profile sales --admin-password 'Curl&Pw' --line '1001@pbx.example.com,1001,linepw' >/dev/null

check "generated master lists the per-device file first" \
  bash -c "curl -sf -A '$UA' http://$PHONES/$MAC.cfg | grep -q 'CONFIG_FILES=\"$MAC-polyprov.cfg\"'"
check "per-device file needs credentials" [ "$(status "http://$PHONES/$MAC-polyprov.cfg")" = 401 ]
check "wrong credentials are refused" [ "$(status -u PlcmSpIp:wrong "http://$PHONES/$MAC-polyprov.cfg")" = 401 ]
check "per-device file with credentials" \
  bash -c "curl -sf ${AUTH[*]} -A '$UA' http://$PHONES/$MAC-polyprov.cfg | grep -q 'device.auth.localAdminPassword=\"Curl&amp;Pw\"'"

check "Digest credentials (curl --digest) are accepted" \
  bash -c "curl -sf --digest -u PlcmSpIp:$PW -A '$UA' http://$PHONES/$MAC-polyprov.cfg | grep -q 'device.auth.localAdminPassword'"
check "a wrong Digest password is refused" [ "$(status --digest -u PlcmSpIp:wrong "http://$PHONES/$MAC-polyprov.cfg")" = 401 ]

ETAG=$(curl -s -D - -o /dev/null "${AUTH[@]}" -A "$UA" "http://$PHONES/$MAC-polyprov.cfg" | tr -d '\r' | awk 'tolower($1)=="etag:" {print $2}')
check "If-None-Match on a generated file gives 304" \
  [ "$(status "${AUTH[@]}" -H "If-None-Match: $ETAG" "http://$PHONES/$MAC-polyprov.cfg")" = 304 ]

head -c 100000 /dev/urandom >"$WORK/sip.ld"
cp "$WORK/sip.ld" "$DATA/root/sip.ld"
check "HEAD gives the length" \
  bash -c "curl -sI -A '$UA' http://$PHONES/sip.ld | tr -d '\r' | grep -qi '^content-length: 100000$'"
check "Range gives 206 and the bytes" \
  bash -c "[ \"\$(curl -s -w '%{http_code}' -o '$WORK/part' -r 500-1499 -A '$UA' http://$PHONES/sip.ld)\" = 206 ] && cmp -s '$WORK/part' <(tail -c +501 '$WORK/sip.ld' | head -c 1000)"
check "a whole firmware download is intact" \
  bash -c "curl -sf -A '$UA' http://$PHONES/sip.ld | cmp -s - '$WORK/sip.ld'"
check "part-number request falls back to the bare image" \
  bash -c "curl -sf -A '$UA' http://$PHONES/3111-44500-001.sip.ld | cmp -s - '$WORK/sip.ld'"
FILE_ETAG=$(curl -sI -A "$UA" "http://$PHONES/sip.ld" | tr -d '\r' | awk 'tolower($1)=="etag:" {print $2}')
check "If-None-Match on a boot-root file gives 304" \
  [ "$(status -H "If-None-Match: $FILE_ETAG" "http://$PHONES/sip.ld")" = 304 ]

printf '<PHONE_CONFIG><OVERRIDES device.auth.localAdminPassword="P2"/></PHONE_CONFIG>' >"$WORK/web.cfg"
check "PUT of the web override is stored" [ "$(status "${AUTH[@]}" -T "$WORK/web.cfg" "http://$PHONES/$MAC-web.cfg")" = 201 ]
check "PUT with Digest credentials is stored too" [ "$(status --digest "${AUTH[@]}" -T "$WORK/web.cfg" "http://$PHONES/$MAC-web.cfg")" = 201 ]
check "GET returns the latest upload" \
  bash -c "curl -sf ${AUTH[*]} -A '$UA' http://$PHONES/$MAC-web.cfg | cmp -s - '$WORK/web.cfg'"
check "the upload is not in the boot root" [ ! -e "$DATA/root/$MAC-web.cfg" ]
head -c 300000 /dev/zero >"$WORK/big"
check "an oversized upload is refused" [ "$(status "${AUTH[@]}" -T "$WORK/big" "http://$PHONES/$MAC-phone.cfg")" = 413 ]
check "traversal is refused" [ "$(status --path-as-is "http://$PHONES/../../etc/passwd")" = 400 ]
check "an encoded slash is refused" [ "$(status "http://$PHONES/a%2F..%2Fetc%2Fpasswd")" = 400 ]
check "an unknown upload kind is refused" [ "$(status "${AUTH[@]}" -T "$WORK/web.cfg" "http://$PHONES/$MAC-other.cfg")" = 405 ]
check "nothing but the two override versions was written" \
  [ "$(find "$DATA/uploads" -type f -not -path '*/.tmp/*' -not -name '.*' | wc -l)" = 2 ]
check "metrics count the requests" \
  bash -c "curl -sf $ADMIN/metrics | grep -q 'polyprov_requests_total{door=\"http\",kind=\"device_config\",status=\"200\"}'"

kill -TERM "$SERVER_PID"; wait "$SERVER_PID"; code=$?; SERVER_PID=
check "SIGTERM stops the server cleanly" [ "$code" = 0 ]

# The traversal, the encoded slash and the two wrong passwords above: one line each for fail2ban.
hits=$(fail2ban-regex "$WORK/log" "$REPO/contrib/fail2ban/polyprov.conf" 2>/dev/null | awk '/^Failregex:/ {print $2}')
check "fail2ban's filter matches the security events ($hits)" [ "${hits:-0}" = 4 ]

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
