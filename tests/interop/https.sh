#!/usr/bin/env bash
# The HTTPS door against a release build, with real TLS clients on loopback: curl (--cacert,
# --cert, --digest), openssl s_client (protocol versions, verification, client certificates),
# sslscan (what is offered), and `polyprov tls check`.
# Usage: tests/interop/https.sh [path/to/polyprov]   (default: target/release/polyprov)
set -uo pipefail

BIN=${1:-target/release/polyprov}
[ -x "$BIN" ] || { echo "no polyprov binary at $BIN (cargo build --release)"; exit 2; }
for t in curl openssl sslscan; do command -v $t >/dev/null || { echo "$t is not installed"; exit 2; }; done

WORK=$(mktemp -d)
DATA=$WORK/data
SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# Device certificates from the admin's own CA, with the MAC as the subject CN.
MAC=0004f2aa814c OTHER=0004f2aa9999
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=site device CA" \
  -keyout "$WORK/dev-ca.key" -out "$WORK/dev-ca.pem" 2>/dev/null
for m in $MAC $OTHER; do
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$m" -keyout "$WORK/$m.key" -out "$WORK/$m.csr" 2>/dev/null
  # X.509 v3 with extensions: webpki (and so polyprov) refuses v1 certificates.
  printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n' >"$WORK/ext"
  openssl x509 -req -in "$WORK/$m.csr" -CA "$WORK/dev-ca.pem" -CAkey "$WORK/dev-ca.key" \
    -CAcreateserial -days 30 -extfile "$WORK/ext" -out "$WORK/$m.pem" 2>/dev/null
done

"$BIN" tls init --data "$DATA" --host localhost >/dev/null || { echo "tls init failed"; exit 1; }
cat >"$WORK/polyprov.toml" <<TOML
[https]
listen = "127.0.0.1:0"
client_ca = "$WORK/dev-ca.pem"
client_auth = "optional"
TOML
"$BIN" serve --config "$WORK/polyprov.toml" --data "$DATA" --http 127.0.0.1:0 --admin 127.0.0.1:0 \
  >"$WORK/summary" 2>"$WORK/log" &
SERVER_PID=$!
for _ in $(seq 1 100); do grep -q '^  metrics' "$WORK/summary" 2>/dev/null && break; sleep 0.1; done
HTTPS=$(awk '/phones \(HTTPS\)/ {print $3}' "$WORK/summary" | tr -d ,)
ADMIN=$(awk '/admin API/ {print $3}' "$WORK/summary" | sed 's#/api/v1##')
[ -n "$HTTPS" ] && [ -n "$ADMIN" ] || { echo "server did not start:"; cat "$WORK/summary" "$WORK/log"; exit 1; }
PORT=${HTTPS##*:}
URL=https://localhost:$PORT
CA=$DATA/tls/ca.pem
PW=$(cat "$DATA/provisioning.password")
UA='FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Application'
export POLYPROV_SERVER=$ADMIN POLYPROV_TOKEN=$(cat "$DATA/admin.token")
"$BIN" device assign $MAC --admin-password 'Tls&Pw' >/dev/null
"$BIN" device assign $OTHER --admin-password 'Other&Pw' >/dev/null

passed=0 failed=0
check() { # name, then a command that must succeed
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok - $name"
  else failed=$((failed + 1)); echo "not ok - $name"; fi
}
status() { curl -s -o /dev/null -w '%{http_code}' --cacert "$CA" -A "$UA" "$@"; }
body() { curl -s --cacert "$CA" -A "$UA" "$@"; }

check "the staging master over HTTPS, verified against the tls init CA" \
  bash -c "curl -sf --cacert '$CA' '$URL/000000000000.cfg' | grep -q '<APPLICATION'"
check "curl without the CA refuses the server" bash -c "! curl -sf '$URL/000000000000.cfg' -o /dev/null"
check "per-device file needs credentials or a certificate" [ "$(status "$URL/$MAC-polyprov.cfg")" = 401 ]
check "Digest credentials over HTTPS" \
  bash -c "curl -sf --cacert '$CA' --digest -u 'PlcmSpIp:$PW' '$URL/$MAC-polyprov.cfg' | grep -q 'Tls&amp;Pw'"
check "its own device certificate, no password" \
  bash -c "curl -sf --cacert '$CA' --cert '$WORK/$MAC.pem' --key '$WORK/$MAC.key' '$URL/$MAC-polyprov.cfg' | grep -q 'Tls&amp;Pw'"
check "another MAC's certificate is refused (403)" \
  [ "$(status --cert "$WORK/$OTHER.pem" --key "$WORK/$OTHER.key" "$URL/$MAC-polyprov.cfg")" = 403 ]
check "no secret in the refusal" \
  bash -c "! curl -s --cacert '$CA' --cert '$WORK/$OTHER.pem' --key '$WORK/$OTHER.key' '$URL/$MAC-polyprov.cfg' | grep -q 'Tls&amp;Pw'"

check "openssl s_client: TLS 1.2 verifies" \
  bash -c "openssl s_client -connect localhost:$PORT -servername localhost -tls1_2 -CAfile '$CA' </dev/null 2>&1 | grep -q 'Verify return code: 0 (ok)'"
check "openssl s_client: TLS 1.3 verifies" \
  bash -c "openssl s_client -connect localhost:$PORT -servername localhost -tls1_3 -CAfile '$CA' </dev/null 2>&1 | grep -q 'Verify return code: 0 (ok)'"
check "openssl s_client: TLS 1.1 is refused" \
  bash -c "! openssl s_client -connect localhost:$PORT -servername localhost -tls1_1 -CAfile '$CA' </dev/null >/dev/null 2>&1"
check "openssl s_client: a client certificate is asked for (optional)" \
  bash -c "openssl s_client -connect localhost:$PORT -servername localhost -CAfile '$CA' </dev/null 2>&1 | grep -q 'Acceptable client certificate CA names'"

sslscan --no-colour "localhost:$PORT" >"$WORK/scan" 2>&1
check "sslscan: only TLS 1.2 and 1.3 enabled" \
  bash -c "grep -Eq 'TLSv1.2 +enabled' '$WORK/scan' && grep -Eq 'TLSv1.3 +enabled' '$WORK/scan' && grep -Eq 'TLSv1.1 +disabled' '$WORK/scan' && grep -Eq 'TLSv1.0 +disabled' '$WORK/scan'"
check "sslscan: no weak suite (RC4, 3DES, CBC, NULL, EXPORT)" \
  bash -c "! grep -E '^(Preferred|Accepted)' '$WORK/scan' | grep -Eq 'RC4|DES|CBC|NULL|EXP'"
echo "# accepted suites:"; grep -E '^(Preferred|Accepted)' "$WORK/scan" | sed 's/^/#   /'

check "polyprov tls check verifies against the CA" \
  bash -c "'$BIN' tls check '$URL/' --ca-file '$CA' | grep -q 'verified      yes'"
check "polyprov tls check --json" \
  bash -c "'$BIN' tls check '$URL/' --ca-file '$CA' --json | grep -q '\"protocol\": \"TLSv1_3\"'"

check "security events for the wrong certificate" \
  bash -c "curl -s $ADMIN/metrics | grep -q 'polyprov_security_events_total{event=\"certificate_mismatch\"} 2'"

# The device's own provisioning login: rendered while pending, adopted on first use (curl
# --digest), then the shared login and other devices' logins are refused.
OWN=$(curl -s --cacert "$CA" -u "PlcmSpIp:$PW" "$URL/$OTHER-polyprov.cfg" | sed -n 's/.*device.prov.password="\([0-9a-f]*\)".*/\1/p')
check "the device file carries the device's own login" [ -n "$OWN" ]
check "its own login with curl --digest" \
  bash -c "curl -sf --cacert '$CA' --digest -u '$OTHER:$OWN' '$URL/$OTHER-polyprov.cfg' | grep -q 'Other&amp;Pw'"
check "the shared login is refused once the device uses its own (403)" \
  [ "$(status -u "PlcmSpIp:$PW" "$URL/$OTHER-polyprov.cfg")" = 403 ]
check "its login does not open another device's file (403)" \
  [ "$(status --digest -u "$OTHER:$OWN" "$URL/$MAC-polyprov.cfg")" = 403 ]
check "a wrong own password is refused (401)" \
  [ "$(status -u "$OTHER:0000" "$URL/$OTHER-polyprov.cfg")" = 401 ]
check "polyprov device login shows it adopted" \
  bash -c "curl -s -H 'Authorization: Bearer $POLYPROV_TOKEN' $ADMIN/api/v1/devices/$OTHER/login | grep -q '\"state\":\"adopted\"'"
check "one security event each" \
  bash -c "curl -s $ADMIN/metrics | grep -q 'event=\"shared_login_after_switch\"} 1' && curl -s $ADMIN/metrics | grep -q 'event=\"wrong_device_login\"} 1'"

curl -s $ADMIN/metrics | grep security_events | sed "s/^/# /"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
