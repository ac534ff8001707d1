#!/usr/bin/env bash
# DHCP for phones against real DHCP servers. `polyprov dhcp probe` against dnsmasq offering
# options 66 and 160; then `polyprov dhcp snippet --dnsmasq` loaded into dnsmasq, answering the
# probe sent as a Poly phone (vendor class) with the URL and the probe sent as a PC with nothing;
# the Kea and ISC snippets checked by `kea-dhcp4 -t` and `dhcpd -t`. In two network namespaces
# this script creates and removes (a veth pair between them; nothing touches any other network).
# Needs root, iproute2, dnsmasq, kea-dhcp4 (kea-dhcp4-server), dhcpd (isc-dhcp-server).
# Usage: tests/interop/dhcp.sh [path/to/polyprov]
set -uo pipefail

BIN=$(realpath "${1:-target/release/polyprov}")
[ -x "$BIN" ] || { echo "no polyprov binary at $BIN"; exit 2; }
for t in ip dnsmasq kea-dhcp4 dhcpd; do command -v $t >/dev/null || { echo "$t is not installed"; exit 2; }; done
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces, DHCP ports)"; exit 2; }

ID=$$
NS_S=ppd-srv-$ID
NS_C=ppd-cli-$ID
IF_S=ppds$ID
IF_C=ppdc$ID
WORK=$(mktemp -d)
DNSMASQ=
cleanup() {
  [ -n "$DNSMASQ" ] && kill "$DNSMASQ" 2>/dev/null && wait "$DNSMASQ" 2>/dev/null
  ip netns del "$NS_S" 2>/dev/null
  ip netns del "$NS_C" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add "$NS_S" && ip netns add "$NS_C" || exit 1
ip link add "$IF_S" type veth peer name "$IF_C" || exit 1
ip link set "$IF_S" netns "$NS_S" && ip link set "$IF_C" netns "$NS_C" || exit 1
ip -n "$NS_S" link set lo up && ip -n "$NS_C" link set lo up
ip -n "$NS_S" addr add 10.213.7.1/24 dev "$IF_S"
ip -n "$NS_S" link set "$IF_S" up && ip -n "$NS_C" link set "$IF_C" up

ip netns exec "$NS_S" dnsmasq --no-daemon --conf-file=/dev/null --user=root --port=0 \
  --interface="$IF_S" --bind-interfaces --dhcp-range=10.213.7.10,10.213.7.50,1h \
  --dhcp-option=66,"10.213.7.1" --dhcp-option=160,"http://10.213.7.1:8080/polycom/" \
  --dhcp-leasefile="$WORK/leases" --pid-file="$WORK/dnsmasq.pid" >"$WORK/dnsmasq.log" 2>&1 &
DNSMASQ=$!
sleep 1

passed=0 failed=0
check() {
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok - $name"
  else failed=$((failed + 1)); echo "not ok - $name"; fi
}

ip netns exec "$NS_C" "$BIN" dhcp probe "$IF_C" --timeout 3 --json >"$WORK/probe.json" 2>"$WORK/probe.err"
check "the probe ran" [ -s "$WORK/probe.json" ]
check "option 160 offered" \
  python3 -c "import json,sys; o=json.load(open('$WORK/probe.json'))['offers'][0]['options']; sys.exit(o.get('160')!='http://10.213.7.1:8080/polycom/')"
check "option 66 offered" \
  python3 -c "import json,sys; o=json.load(open('$WORK/probe.json'))['offers'][0]['options']; sys.exit(o.get('66')!='10.213.7.1')"
check "the offer came from the namespace's DHCP server" \
  python3 -c "import json,sys; r=json.load(open('$WORK/probe.json')); sys.exit(r['offers'][0]['server']!='10.213.7.1')"
check "no lease was taken" [ ! -s "$WORK/leases" ]
ip netns exec "$NS_C" "$BIN" dhcp-probe "$IF_C" --timeout 1 >"$WORK/probe.txt" 2>&1
check "text output names option 160" grep -q "option 160 http://10.213.7.1:8080/polycom/" "$WORK/probe.txt"

# The snippet: dnsmasq serves what `dhcp snippet --dnsmasq` says, to phones only.
URL="http://PlcmSpIp:s3cret@10.213.7.1:8080/"
"$BIN" dhcp snippet --dnsmasq --url "$URL" >"$WORK/snippet.conf"
check "dnsmasq --test accepts the dnsmasq snippet" dnsmasq --test -C "$WORK/snippet.conf"
kill "$DNSMASQ"; wait "$DNSMASQ" 2>/dev/null
ip netns exec "$NS_S" dnsmasq --no-daemon --conf-file="$WORK/snippet.conf" --user=root --port=0 \
  --interface="$IF_S" --bind-interfaces --dhcp-range=10.213.7.10,10.213.7.50,1h \
  --dhcp-leasefile="$WORK/leases" --pid-file="$WORK/dnsmasq.pid" >"$WORK/dnsmasq.log" 2>&1 &
DNSMASQ=$!
sleep 1
# A new dnsmasq pings an address before it first offers it: the first answer takes a few seconds.
ip netns exec "$NS_C" "$BIN" dhcp probe "$IF_C" --timeout 4 --json >"$WORK/phone.json" 2>"$WORK/probe.err"
check "a phone's DISCOVER (Poly vendor class) gets the URL in option 160 and 66" \
  python3 -c "import json,sys; o=json.load(open('$WORK/phone.json'))['offers'][0]['options']; sys.exit(not (o.get('160')=='$URL' and o.get('66')=='$URL'))"
ip netns exec "$NS_C" "$BIN" dhcp probe "$IF_C" --timeout 2 --no-vendor-class --json >"$WORK/pc.json" 2>"$WORK/probe.err"
check "a PC's DISCOVER (no vendor class) gets an offer without them" \
  python3 -c "import json,sys; r=json.load(open('$WORK/pc.json')); o=r['offers'][0]['options']; sys.exit('160' in o or '66' in o)"
"$BIN" dhcp snippet --kea --url "$URL" >"$WORK/kea.json"
check "kea-dhcp4 -t accepts the Kea snippet" kea-dhcp4 -t "$WORK/kea.json"
"$BIN" dhcp snippet --isc --url "$URL" >"$WORK/dhcpd.conf"
check "dhcpd -t accepts the ISC snippet" dhcpd -t -cf "$WORK/dhcpd.conf"
"$BIN" dhcp snippet --dnsmasq --url "http://host/with space/" >/dev/null 2>&1
check "a URL a phone cannot use is refused (exit 2)" [ $? = 2 ]

if [ "$failed" != 0 ]; then cat "$WORK/probe.err" "$WORK/dnsmasq.log"; cat "$WORK/phone.json"; fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
