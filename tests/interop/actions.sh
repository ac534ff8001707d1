#!/usr/bin/env bash
# Remote actions against real clients on loopback: `polyprov device resync` to SIPp (Debian
# sip-tester) playing a phone that answers 200, one that challenges with Digest (and checks the
# answer with verifyauth), over UDP and TCP; SIPp sending NOTIFY to the emulated phone (`polyprov
# sim listen`), with and without the phone's Digest check; curl against the emulated phone's
# REST API (HTTPS with its device certificate); `device reboot --via rest` against it.
# Usage: tests/interop/actions.sh [path/to/polyprov]   (default: target/release/polyprov)
set -uo pipefail

BIN=${1:-target/release/polyprov}
[ -x "$BIN" ] || { echo "no polyprov binary at $BIN (cargo build --release)"; exit 2; }
command -v sipp >/dev/null || { echo "sipp is not installed (Debian: sip-tester)"; exit 2; }
for t in curl openssl python3 ss; do command -v $t >/dev/null || { echo "$t is not installed"; exit 2; }; done
SCEN=$(cd "$(dirname "$0")/sipp" && pwd)

WORK=$(mktemp -d)
DATA=$WORK/data
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { # udp|tcp
  python3 -c "import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM if sys.argv[1]=='udp' else socket.SOCK_STREAM); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])" "$1"
}

MAC=0004f2aa7001
# The phones' CA and this phone's device certificate (CN = its MAC; 127.0.0.1 too, for curl).
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=phone CA" \
  -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=$MAC" -keyout "$WORK/device-key.pem" -out "$WORK/device.csr" 2>/dev/null
printf 'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >"$WORK/ext"
openssl x509 -req -in "$WORK/device.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
  -days 30 -extfile "$WORK/ext" -out "$WORK/device.pem" 2>/dev/null
# A short T1 (RFC 3261 timers scale with it), so that nothing here waits 32 s.
printf '[actions]\nsip_t1_ms = 100\nrest_ca = "%s"\n' "$WORK/ca.pem" >"$WORK/polyprov.toml"
"$BIN" serve --config "$WORK/polyprov.toml" --data "$DATA" --http 127.0.0.1:0 --admin 127.0.0.1:0 \
  >"$WORK/summary" 2>"$WORK/log" &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q '^  metrics' "$WORK/summary" 2>/dev/null && break; sleep 0.1; done
PHONES=$(awk '/phones \(HTTP\)/ {print $3}' "$WORK/summary")
ADMIN=$(awk '/admin API/ {print $3}' "$WORK/summary" | sed 's#/api/v1##')
[ -n "$PHONES" ] && [ -n "$ADMIN" ] || { echo "server did not start:"; cat "$WORK/summary" "$WORK/log"; exit 1; }
export POLYPROV_SERVER=$ADMIN POLYPROV_TOKEN=$(cat "$DATA/admin.token")
assign() { # line password, extra args…
  local pw=$1; shift
  "$BIN" device assign $MAC --admin-password 'Adm1n' --line "1001@pbx.example.com,1001,$pw" "$@" >/dev/null
}
assign line-secret

passed=0 failed=0
check() { # name, then a command that must succeed
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok - $name"
  else failed=$((failed + 1)); echo "not ok - $name"; fi
}

# sipp_phone SCENARIO PORT [sipp args…]: SIPp as a phone (UAS) for one call, in the background.
sipp_phone() {
  local scen=$1 port=$2; shift 2
  sipp -sf "$SCEN/$scen" -i 127.0.0.1 -p "$port" -m 1 -nostdin -timeout 20s -timeout_error \
    -trace_err -error_file "$WORK/sipp-$scen.err" "$@" >"$WORK/sipp-$scen.out" 2>&1 &
  SIPP=$!
  # Until it listens.
  for _ in $(seq 1 50); do ss -lnup 2>/dev/null | grep -q ":$port " && break
    ss -lntp 2>/dev/null | grep -q ":$port " && break; sleep 0.1; done
}

resync() { # PORT [args…]: the job as JSON in $WORK/job.json, exit code in RC
  local port=$1; shift
  "$BIN" device resync $MAC --target "127.0.0.1:$port" --wait 0 --json "$@" >"$WORK/job.json" 2>"$WORK/job.err"
  RC=$?
}
field() { python3 -c "import json,sys; j=json.load(open('$WORK/job.json')); r=j['results'][0]; print(eval(sys.argv[1]))" "$1"; }

P=$(free_port udp)
sipp_phone uas-200.xml "$P"
resync "$P"
check "resync over UDP: SIPp answers 200, the command succeeds" [ "$RC" = 0 ]
check "the answer is recorded as 200 OK" [ "$(field "r['answer']['detail']")" = "200 OK" ]
wait $SIPP; check "SIPp saw a NOTIFY with Event: check-sync (its call succeeded)" [ $? = 0 ]

P=$(free_port udp)
sipp_phone uas-digest.xml "$P"
resync "$P"
check "a Digest challenge is answered with the line's credentials (SIPp verifyauth)" [ "$(field "r['answer']['code']")" = 200 ]
check "the result says the phone challenged" [ "$(field "r['answer']['challenged']")" = True ]
wait $SIPP

assign wrong-secret
P=$(free_port udp)
sipp_phone uas-digest.xml "$P"
resync "$P"
check "wrong line credentials: the phone's 403 is reported, the command fails" \
  [ "$RC" = 1 ] && [ "$(field "r['answer']['code']")" = 403 ]
wait $SIPP
assign line-secret

P=$(free_port tcp)
sipp_phone uas-200.xml "$P" -t t1
resync "$P" --transport tcp
check "resync over TCP" [ "$RC" = 0 ] && [ "$(field "r['via']")" = sip/tcp ]
wait $SIPP

P=$(free_port udp)
resync "$P"
check "nobody at the address: timed out after retransmissions" \
  [ "$RC" = 1 ] && [ "$(field "r['answer']['outcome']")" = timed_out ] && [ "$(field "r['answer']['transmissions'] >= 3")" = True ]
check "each action is in the device's audit log" \
  [ "$("$BIN" device history $MAC --json | grep -c '"resync"')" -ge 5 ]
check "the line's password appears in no output" \
  bash -c "! grep -rq line-secret '$WORK'/job.json '$WORK'/log"

# SIPp as the sender, the emulated phone as the receiver.
PW=$(cat "$DATA/provisioning.password")
ST=$WORK/phone
"$BIN" sim init --state "$ST" --mac $MAC --model "VVX 410" --dhcp-option "160=http://PlcmSpIp:$PW@$PHONES/" \
  --ca-file "$WORK/ca.pem" --device-cert "$WORK/device.pem" --device-key "$WORK/device-key.pem" >/dev/null
"$BIN" sim boot --state "$ST" >/dev/null
listen() { # starts `sim listen` for one NOTIFY; sets LPORT, LPID
  "$BIN" sim listen --state "$ST" --sip 127.0.0.1:0 --count 1 --time-limit 30 --json >"$WORK/listen.out" &
  LPID=$!; PIDS+=($LPID)
  for _ in $(seq 1 50); do grep -q listening "$WORK/listen.out" 2>/dev/null && break; sleep 0.1; done
  LPORT=$(head -1 "$WORK/listen.out" | grep -oE '[0-9]+"' | tr -d '"')
}
sipp_notify() { # [sipp args…]: one NOTIFY from SIPp to the listening phone
  sipp "127.0.0.1:$LPORT" -sf "$SCEN/uac-notify.xml" -i 127.0.0.1 -p "$(free_port udp)" -m 1 \
    -nostdin -timeout 15s -timeout_error "$@" >"$WORK/sipp-uac.out" 2>&1
}
listen
sipp_notify
check "SIPp's NOTIFY to the emulated phone gets 200" [ $? = 0 ]
wait $LPID
check "the phone read its configuration again" grep -q '"notify":"check-sync"' "$WORK/listen.out"

assign line-secret --param voIpProt.SIP.requestValidation.1.request=NOTIFY \
  --param voIpProt.SIP.requestValidation.1.method=digest
"$BIN" sim boot --state "$ST" >/dev/null
listen
sipp_notify -au 1001 -ap wrong
check "a phone that validates NOTIFY refuses SIPp's wrong credentials" [ $? != 0 ]
sipp_notify -au 1001 -ap line-secret
check "and takes SIPp's Digest answer with the line's credentials" [ $? = 0 ]
wait $LPID
check "only the authenticated NOTIFY was acted on" \
  [ "$(grep -c '"notify"' "$WORK/listen.out")" = 1 ] && grep -q '"authenticated":true' "$WORK/listen.out"

# The phone's REST API, with curl, then with polyprov.
assign line-secret --param apps.restapi.enabled=1
"$BIN" sim boot --state "$ST" >/dev/null
"$BIN" sim listen --state "$ST" --sip 127.0.0.1:0 --rest 127.0.0.1:0 --count 1 --time-limit 30 --json >"$WORK/listen.out" &
LPID=$!; PIDS+=($LPID)
for _ in $(seq 1 50); do grep -q 'rest/https' "$WORK/listen.out" 2>/dev/null && break; sleep 0.1; done
REST=$(grep -oE 'rest/https [0-9.:]+' "$WORK/listen.out" | cut -d' ' -f2)
api() { curl -s --cacert "$WORK/ca.pem" "$@"; }
check "curl: device info with the phone's admin password over verified HTTPS" \
  bash -c "curl -s --cacert '$WORK/ca.pem' -u 'Polycom:Adm1n' https://$REST/api/v1/mgmt/device/info | grep -q '\"Status\":\"2000\"'"
check "curl: a wrong admin password gets 401" \
  [ "$(api -o /dev/null -w '%{http_code}' -u Polycom:guess -X POST "https://$REST/api/v1/mgmt/safeReboot")" = 401 ]
"$BIN" device reboot $MAC --via rest --target "$REST" --wait 20 --json >"$WORK/job.json" 2>"$WORK/job.err"
check "device reboot --via rest: 2000, and the phone came back rebooted" \
  [ "$(field "r['answer']['detail']")" = "2000 API executed successfully" ] && [ "$(field "r['came_back']['rebooted']")" = True ]
wait $LPID
check "the admin password appears in no output" bash -c "! grep -q Adm1n '$WORK/job.json' '$WORK/log'"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
