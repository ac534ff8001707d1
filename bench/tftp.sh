#!/usr/bin/env bash
# TFTP throughput: polyprov's TFTP door against tftpd-hpa serving the same 8 MB file, in one run,
# on loopback: lockstep 512-byte blocks (tftp-hpa client), blksize 1428 and blksize 1428 +
# windowsize 16 (atftp client; tftpd-hpa has no windowsize, so it answers lockstep), with 1, 10
# and 100 transfers at once. Reports MB/s and the ratio polyprov/tftpd-hpa.
# Usage: bench/tftp.sh   Needs: cargo build --release, tftpd-hpa (in.tftpd), tftp-hpa, atftp; root
# is not needed (unprivileged ports).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need in.tftpd tftp atftp

mkdir -p "$WORK/root" "$WORK/data/root" "$WORK/out"
head -c $((8 * 1024 * 1024)) /dev/urandom >"$WORK/root/fw.ld"
cp "$WORK/root/fw.ld" "$WORK/data/root/fw.ld"
chmod -R a+r "$WORK/root"

HPA_PORT=$((30000 + RANDOM % 10000))
in.tftpd --foreground --address "127.0.0.1:$HPA_PORT" --secure --user root "$WORK/root" &
PIDS+=($!)
start_polyprov --http 127.0.0.1:0  --tftp 127.0.0.1:0
PP_PORT=$(awk '/phones \(TFTP\)/ {print $3}' "$WORK/summary" | awk -F: '{print $NF}')
sleep 0.5

fetch() { # mode port n -> seconds for n parallel transfers
  local mode=$1 port=$2 n=$3
  local start end
  start=$(date +%s.%N)
  for i in $(seq 1 "$n"); do
    case $mode in
      lockstep) tftp -m binary 127.0.0.1 "$port" -c get fw.ld "$WORK/out/$i" >/dev/null 2>&1 & ;;
      blk1428) atftp --option "blksize 1428" -g -r fw.ld -l "$WORK/out/$i" 127.0.0.1 "$port" >/dev/null 2>&1 & ;;
      window16) atftp --option "blksize 1428" --option "windowsize 16" -g -r fw.ld -l "$WORK/out/$i" 127.0.0.1 "$port" >/dev/null 2>&1 & ;;
    esac
  done
  wait $(jobs -p | grep -v -E "^(${PIDS[0]}|${PIDS[1]})$") 2>/dev/null || true
  end=$(date +%s.%N)
  local ok=0
  for i in $(seq 1 "$n"); do cmp -s "$WORK/out/$i" "$WORK/root/fw.ld" && ok=$((ok + 1)); rm -f "$WORK/out/$i"; done
  echo "$start $end $ok"
}

printf '%-9s %4s %14s %14s %7s\n' MODE N "tftpd-hpa MB/s" "polyprov MB/s" RATIO
for mode in lockstep blk1428 window16; do
  for n in 1 10 100; do
    read -r s1 e1 ok1 < <(fetch "$mode" "$HPA_PORT" "$n")
    read -r s2 e2 ok2 < <(fetch "$mode" "$PP_PORT" "$n")
    python3 - "$mode" "$n" "$s1" "$e1" "$ok1" "$s2" "$e2" "$ok2" <<'PY'
import sys
mode, n, s1, e1, ok1, s2, e2, ok2 = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:5]), int(sys.argv[5]), *map(float, sys.argv[6:8]), int(sys.argv[8])
mb = 8 * n
a, b = mb / (e1 - s1), mb / (e2 - s2)
note = "" if ok1 == n and ok2 == n else f"  (complete: tftpd-hpa {ok1}/{n}, polyprov {ok2}/{n})"
print(f"{mode:<9} {n:>4} {a:>14.1f} {b:>14.1f} {b / a:>7.2f}{note}")
PY
  done
done
