#!/usr/bin/env bash
# Every benchmark, one after the other, and one table of polyprov/anchor ratios (> 1: polyprov
# faster). Each script runs its anchor and polyprov in the same run on this machine; the raw
# outputs are kept in the folder printed at the end. Loopback only; every run is bounded.
# Usage: bench/all.sh [quick|full]   (quick: smaller counts, a few minutes)
# Needs: what each script needs (nginx, wrk, openssl, tftpd-hpa, tftp, atftp, vsftpd, curl).
set -uo pipefail
MODE=${1:-quick}
DIR=$(cd "$(dirname "$0")" && pwd)
OUT=$(mktemp -d /tmp/polyprov-bench.XXXXXX)
if [ "$MODE" = full ]; then
  STORMS=("10000 100" "10000 1000"); HTTP="1000 10 64"; HTTPS="500 10 64"
else
  STORMS=("3000 100" "3000 1000"); HTTP="300 5 32"; HTTPS="200 5 32"
fi
row() { printf '%-72s %s\n' "$1" "$2"; }
ratio_of() { grep -oE "$2[^0-9]*[0-9]+\.[0-9]+" "$OUT/$1" | grep -oE '[0-9]+\.[0-9]+$' | head -1; }

# shellcheck disable=SC2086
bash "$DIR/http-storm.sh" $HTTP >"$OUT/http-storm.txt" 2>&1
bash "$DIR/https.sh" $HTTPS >"$OUT/https.txt" 2>&1
for s in "${STORMS[@]}"; do
  # shellcheck disable=SC2086
  bash "$DIR/storm.sh" $s >"$OUT/storm-${s// /-}.txt" 2>&1
  # shellcheck disable=SC2086
  KNOWN=1 bash "$DIR/storm.sh" $s >"$OUT/storm-known-${s// /-}.txt" 2>&1
done
bash "$DIR/tftp.sh" >"$OUT/tftp.txt" 2>&1
bash "$DIR/ftp.sh" >"$OUT/ftp.txt" 2>&1

echo "polyprov/anchor ratios ($(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), mode $MODE)"
row "HTTP generated files vs nginx static" "$(ratio_of http-storm.txt 'ratio polyprov/nginx:')"
row "HTTPS keep-alive vs nginx, same certificate" "$(ratio_of https.txt 'keep-alive requests:')"
row "HTTPS full handshakes vs nginx" "$(ratio_of https.txt 'full handshakes:')"
for s in "${STORMS[@]}"; do
  row "boot storm ${s/ / new phones, concurrency } vs nginx+WebDAV" "$(ratio_of "storm-${s// /-}.txt" 'under the storm:')"
  row "boot storm ${s/ / known phones (power cut), concurrency } vs nginx+WebDAV" \
    "$(ratio_of "storm-known-${s// /-}.txt" 'under the storm of known phones:')"
done
awk 'NR > 1 && NF >= 5 && $5 ~ /^[0-9.]+$/ {printf "%-72s %s\n", "TFTP " $1 " x" $2 " vs tftpd-hpa", $5}' "$OUT/tftp.txt"
awk 'NR > 1 && NF >= 6 && $6 ~ /^[0-9.]+$/ {printf "%-72s %s\n", "FTP " $1 " x" $2 " vs vsftpd", $6}' "$OUT/ftp.txt"
echo "raw outputs: $OUT"
