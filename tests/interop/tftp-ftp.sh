#!/usr/bin/env bash
# The TFTP and FTP/FTPS doors driven by real clients (tftp-hpa, atftp, curl, lftp) against a
# release build of polyprov, on loopback.
# Usage: tests/interop/tftp-ftp.sh [path/to/polyprov]   (default: target/release/polyprov)
set -uo pipefail

BIN=${1:-target/release/polyprov}
[ -x "$BIN" ] || { echo "no polyprov binary at $BIN (cargo build --release)"; exit 2; }
for tool in curl tftp atftp lftp openssl fail2ban-regex; do
  command -v $tool >/dev/null || { echo "$tool is not installed (.ci/run installs it)"; exit 2; }
done
REPO=$(cd "$(dirname "$0")/../.." && pwd)

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

passed=0 failed=0
check() { # name, then a command that must succeed
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok - $name"
  else failed=$((failed + 1)); echo "not ok - $name"; fi
}

start() { # name, then serve arguments; sets $SUMMARY and $LOG
  local name=$1; shift
  SUMMARY=$WORK/$name.summary LOG=$WORK/$name.log
  "$BIN" serve --http 127.0.0.1:0 --admin 127.0.0.1:0 "$@" >"$SUMMARY" 2>"$LOG" &
  PIDS+=($!)
  for _ in $(seq 1 100); do grep -q '^  metrics' "$SUMMARY" 2>/dev/null && break; sleep 0.1; done
  grep -q '^  metrics' "$SUMMARY" || { echo "server $name did not start:"; cat "$SUMMARY" "$LOG"; exit 1; }
}
addr_of() { awk -v door="$1" '$0 ~ "phones \\(" door "\\)" {print $3}' "$SUMMARY"; }
MAC=0004f2aa814c

# ---- TFTP: no credentials in the protocol, so this server trusts its network (auth = none).
cat >"$WORK/tftp.toml" <<EOF
data = "$WORK/tftp-data"
[provisioning]
auth = "none"
EOF
start tftp --config "$WORK/tftp.toml" --tftp 127.0.0.1:0
TFTP=$(addr_of TFTP); TPORT=${TFTP##*:}; HTTP=$(addr_of HTTP)
ROOT=$WORK/tftp-data/root
head -c 8000000 /dev/urandom >"$ROOT/sip.ld"
head -c 41000000 /dev/urandom >"$ROOT/big.bin"

check "tftp-hpa: lockstep get of the staging master" \
  bash -c "cd '$WORK' && tftp -m binary 127.0.0.1 $TPORT -c get 000000000000.cfg master.cfg && grep -q '<APPLICATION' master.cfg"
printf '<PHONE_CONFIG><OVERRIDES a.b="1"/></PHONE_CONFIG>' >"$WORK/web.cfg"
check "tftp-hpa: put of an override, read back over HTTP" \
  bash -c "cd '$WORK' && tftp -m binary 127.0.0.1 $TPORT -c put web.cfg $MAC-web.cfg && curl -sf http://$HTTP/$MAC-web.cfg | cmp -s - web.cfg"
check "atftp: blksize 1428 + tsize + windowsize 16, 8 MB byte-identical" \
  bash -c "atftp --option 'blksize 1428' --option 'tsize 0' --option 'windowsize 16' -g -r sip.ld -l '$WORK/a.ld' 127.0.0.1 $TPORT && cmp -s '$WORK/a.ld' '$ROOT/sip.ld'"
check "curl tftp:// with the part-number fallback, byte-identical" \
  bash -c "curl -sf --tftp-blksize 1024 tftp://127.0.0.1:$TPORT/3111-44500-001.sip.ld -o '$WORK/c.ld' && cmp -s '$WORK/c.ld' '$ROOT/sip.ld'"
check "tftp-hpa: 41 MB at 512-byte blocks (block numbers roll over), byte-identical" \
  bash -c "cd '$WORK' && tftp -m binary 127.0.0.1 $TPORT -c get big.bin big.bin && cmp -s big.bin '$ROOT/big.bin'"
printf '<broken' >"$WORK/bad.cfg"
malformed_override() {
  (cd "$WORK" && tftp -m binary 127.0.0.1 $TPORT -c put bad.cfg $MAC-phone.cfg 2>&1) | grep -q 'not well-formed' &&
    [ -z "$(find "$WORK/tftp-data/uploads" -path '*phone.cfg*' -type f)" ]
}
check "tftp-hpa: a malformed override is refused with an error packet, nothing stored" malformed_override
# Garbage datagrams: answered or dropped, never a crash; the door keeps serving.
for junk in '\x00\x09zz' '\x00\x01nofilename' '\xff\xff\xff' '\x00\x01a\x00octet\x00blksize\x00-5\x00'; do
  printf "$junk" >/dev/udp/127.0.0.1/$TPORT
done
check "malformed packets do not stop the door" \
  bash -c "cd '$WORK' && tftp -m binary 127.0.0.1 $TPORT -c get 000000000000.cfg again.cfg && cmp -s again.cfg master.cfg"

# ---- FTP and explicit FTPS, with provisioning credentials (the default).
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/ca.key" -out "$WORK/ca.pem" -days 2 \
  -subj "/CN=polyprov interop CA" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$WORK/key.pem" -out "$WORK/leaf.csr" -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$WORK/ext.cnf"
openssl x509 -req -in "$WORK/leaf.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
  -out "$WORK/cert.pem" -days 2 -extfile "$WORK/ext.cnf" 2>/dev/null
cat >"$WORK/ftp.toml" <<EOF
data = "$WORK/ftp-data"
[ftp]
passive_ports = [50000, 50999]
tls_cert = "$WORK/cert.pem"
tls_key = "$WORK/key.pem"
EOF
start ftp --config "$WORK/ftp.toml" --ftp 127.0.0.1:0
FTP=$(addr_of FTP); FPORT=${FTP##*:}; HTTP=$(addr_of HTTP)
DATA=$WORK/ftp-data
PW=$(cat "$DATA/provisioning.password")
export POLYPROV_SERVER=$(awk '/admin API/ {print $3}' "$SUMMARY" | sed 's#/api/v1##') POLYPROV_TOKEN=$(cat "$DATA/admin.token")
"$BIN" device assign $MAC --admin-password 'Ftp&Pw' >/dev/null
cp "$ROOT/sip.ld" "$DATA/root/sip.ld"
F="ftp://localhost:$FPORT"
TLS=(--ssl-reqd --cacert "$WORK/ca.pem")
LFTP_TLS="set ssl:ca-file $WORK/ca.pem; set ftp:ssl-force true; set ftp:ssl-protect-data true"
LFTP_CLEAR="set ftp:ssl-allow false"
lftp_run() { lftp -c "set net:max-retries 1; set net:timeout 20; $1; open -u PlcmSpIp,$PW $F; $2"; }

check "curl: the factory login reads shared files" \
  bash -c "curl -sf -u PlcmSpIp:PlcmSpIp $F/000000000000.cfg | grep -q '<APPLICATION'"
check "curl: the factory login cannot read a phone's own file" \
  bash -c "! curl -sf -u PlcmSpIp:PlcmSpIp $F/$MAC-polyprov.cfg"
check "curl: the provisioning login reads it" \
  bash -c "curl -sf -u PlcmSpIp:$PW $F/$MAC-polyprov.cfg | grep -q 'localAdminPassword=\"Ftp&amp;Pw\"'"
check "curl: put of an override, read back over HTTP" \
  bash -c "curl -sf -u PlcmSpIp:$PW -T '$WORK/web.cfg' $F/$MAC-web.cfg && curl -sf -u PlcmSpIp:$PW http://$HTTP/$MAC-web.cfg | cmp -s - '$WORK/web.cfg'"
check "curl: explicit FTPS get, 8 MB byte-identical" \
  bash -c "curl -sf ${TLS[*]} -u PlcmSpIp:$PW $F/sip.ld -o '$WORK/f.ld' && cmp -s '$WORK/f.ld' '$ROOT/sip.ld'"
printf '<directory><item_list/></directory>' >"$WORK/dir.xml"
check "curl: explicit FTPS put" \
  bash -c "curl -sf ${TLS[*]} -u PlcmSpIp:$PW -T '$WORK/dir.xml' $F/$MAC-directory.xml && curl -sf -u PlcmSpIp:$PW http://$HTTP/$MAC-directory.xml | cmp -s - '$WORK/dir.xml'"
lftp_clear() {
  lftp_run "$LFTP_CLEAR" "get sip.ld -o $WORK/l.ld; put $WORK/web.cfg -o $MAC-phone.cfg" &&
    cmp -s "$WORK/l.ld" "$ROOT/sip.ld"
}
lftp_tls() {
  lftp_run "$LFTP_TLS" "get 3111-44500-001.sip.ld -o $WORK/lt.ld; put $WORK/dir.xml -o $MAC-calls.xml" &&
    cmp -s "$WORK/lt.ld" "$ROOT/sip.ld" &&
    curl -sf -u "PlcmSpIp:$PW" "http://$HTTP/$MAC-calls.xml" | cmp -s - "$WORK/dir.xml"
}
lftp_listing() {
  local out; out=$(lftp_run "$LFTP_TLS" "cls -1") || return 1
  echo "$out" | grep -q '^sip.ld$' && ! echo "$out" | grep -q $MAC
}
check "lftp: clear-text get and put" lftp_clear
check "lftp: explicit FTPS get and put (GnuTLS, protected data)" lftp_tls
check "lftp: a listing shows shared files and no phone's" lftp_listing

# Cut-off uploads: FTPS notices the missing close_notify; a cut XML file is not well-formed.
head -c 900000 /dev/urandom | base64 -w 0 | head -c 900000 >"$WORK/big.log"
curl -s "${TLS[@]}" --limit-rate 200k -u "PlcmSpIp:$PW" -T "$WORK/big.log" "$F/$MAC-app.log" & CP=$!
sleep 1; kill -9 $CP 2>/dev/null; wait $CP 2>/dev/null; sleep 1
check "an FTPS upload killed midway stores nothing" \
  bash -c "[ -z \"\$(find '$DATA/uploads' -path '*app.log*' -type f)\" ]"
{ printf '<PHONE_CONFIG><OVERRIDES a="'; head -c 200000 /dev/zero | tr '\0' x; printf '"/></PHONE_CONFIG>'; } >"$WORK/big.cfg"
curl -s --limit-rate 50k -u "PlcmSpIp:$PW" -T "$WORK/big.cfg" "$F/$MAC-license.cfg" & CP=$!
sleep 1; kill -9 $CP 2>/dev/null; wait $CP 2>/dev/null; sleep 1
check "a clear-text override upload killed midway stores nothing" \
  bash -c "[ -z \"\$(find '$DATA/uploads' -path '*license.cfg*' -type f)\" ]"
uncut_upload_is_stored() {
  curl -sf "${TLS[@]}" -u "PlcmSpIp:$PW" -T "$WORK/big.log" "$F/$MAC-app.log" &&
    [ -n "$(find "$DATA/uploads" -path '*app.log*' -type f)" ]
}
check "the same FTPS upload, not cut, is stored" uncut_upload_is_stored
over_limit() {
  head -c 300000 /dev/zero | tr '\0' x >"$WORK/huge.cfg"
  local before; before=$(find "$DATA/uploads" -path '*phone.cfg*' -type f | wc -l)
  ! curl -sf -u "PlcmSpIp:$PW" -T "$WORK/huge.cfg" "$F/$MAC-phone.cfg" 2>/dev/null &&
    [ "$(find "$DATA/uploads" -path '*phone.cfg*' -type f | wc -l)" = "$before" ]
}
check "over the size limit: refused, nothing stored" over_limit

# Malformed commands on a raw control connection: error replies, and the door keeps serving.
raw_ftp() { # lines to send after the greeting; prints every reply line
  exec 3<>/dev/tcp/127.0.0.1/$FPORT
  read -r -t 5 greeting <&3
  for line in "$@"; do
    printf '%b\r\n' "$line" >&3
    read -r -t 5 reply <&3 && echo "$reply"
  done
  exec 3<&-
}
raw_errors() {
  local out
  out=$(raw_ftp 'BOGUS x' 'RETR 000000000000.cfg' 'USER PlcmSpIp' "PASS $PW" 'SIZE ../../etc/passwd' 'DELE sip.ld' 'MKD x')
  [ "$(echo "$out" | grep -c '^5')" -ge 5 ] || { echo "$out"; return 1; }
}
raw_binary() {
  raw_ftp '\xff\xfe\x00' >/dev/null
  curl -sf -u PlcmSpIp:PlcmSpIp "$F/000000000000.cfg" | grep -q '<APPLICATION'
}
check "malformed and forbidden commands get 5xx replies" raw_errors
check "a non-UTF-8 command line does not stop the door" raw_binary
check "a wrong FTP login is refused (530)" \
  bash -c "curl -s -u PlcmSpIp:guess $F/000000000000.cfg; [ \$? = 67 ]"
sleep 0.3
check "fail2ban's filter matches the FTP login failure" \
  bash -c "fail2ban-regex '$LOG' '$REPO/contrib/fail2ban/polyprov.conf' | grep -qE 'Failregex: [1-9][0-9]* total'"
check "metrics count FTP and TFTP requests" \
  bash -c "curl -sf $POLYPROV_SERVER/metrics | grep -q 'door=\"ftp\",kind=\"shared\",status=\"200\"'"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
