#!/usr/bin/env bash
# FTP throughput: polyprov's FTP door against vsftpd serving the same files, in one run, on
# loopback, driven by curl:
#   big    an 8 MB firmware image, 1, 10 and 100 downloads at once (MB/s);
#   small  a 1 KB configuration file, one session per file as phones do (login, PASV, RETR,
#          QUIT), 8 clients x 50 sessions (sessions/s).
# Both clear text. Reports the ratio polyprov/vsftpd (> 1: polyprov faster).
# Usage: bench/ftp.sh   Needs: cargo build --release, vsftpd (its package creates the "ftp" user),
# curl; run as root (vsftpd).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need vsftpd curl python3
VSFTPD=$(command -v vsftpd || echo /usr/sbin/vsftpd)

mkdir -p "$WORK/root" "$WORK/data/root" "$WORK/out" "$WORK/empty"
head -c $((8 * 1024 * 1024)) /dev/urandom >"$WORK/root/fw.ld"
head -c 1024 /dev/urandom | base64 -w 76 | head -c 1024 >"$WORK/root/site.cfg"
cp "$WORK/root/fw.ld" "$WORK/root/site.cfg" "$WORK/data/root/"
chmod -R a+rX "$WORK/root"
chmod 755 "$WORK/empty"

VS_PORT=$(free_port)
cat >"$WORK/vsftpd.conf" <<EOF
listen=YES
listen_address=127.0.0.1
listen_port=$VS_PORT
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root=$WORK/root
ftp_username=ftp
local_enable=NO
write_enable=NO
pasv_enable=YES
pasv_min_port=40000
pasv_max_port=40999
max_clients=0
max_per_ip=0
seccomp_sandbox=NO
secure_chroot_dir=$WORK/empty
xferlog_enable=NO
use_sendfile=YES
EOF
"$VSFTPD" "$WORK/vsftpd.conf" &
PIDS+=($!)
cat >"$WORK/polyprov.toml" <<EOF
[ftp]
passive_ports = [41000, 41999]
max_sessions = 1024
# Every client here is 127.0.0.1: without this, 36 of the 100 concurrent downloads would be
# refused by the per-address cap (64), as vsftpd's max_per_ip=0 above refuses none.
max_sessions_per_address = 1024
EOF
start_polyprov --config "$WORK/polyprov.toml" --http 127.0.0.1:0 --ftp 127.0.0.1:0
PP_PORT=$(awk '/phones \(FTP\)/ {print $3}' "$WORK/summary" | awk -F: '{print $NF}')
sleep 0.5

url() { # server file
  case $1 in
    vsftpd) echo "ftp://127.0.0.1:$VS_PORT/$2" ;;
    polyprov) echo "ftp://PlcmSpIp:PlcmSpIp@127.0.0.1:$PP_PORT/$2" ;;
  esac
}

big() { # server n -> "start end complete"
  local server=$1 n=$2 start end ok=0
  start=$(date +%s.%N)
  for i in $(seq 1 "$n"); do curl -s --max-time 120 -o "$WORK/out/$i" "$(url "$server" fw.ld)" & done
  wait $(jobs -p | grep -v -E "^(${PIDS[0]}|${PIDS[1]})$") 2>/dev/null || true
  end=$(date +%s.%N)
  for i in $(seq 1 "$n"); do cmp -s "$WORK/out/$i" "$WORK/root/fw.ld" && ok=$((ok + 1)); rm -f "$WORK/out/$i"; done
  echo "$start $end $ok"
}

small() { # server -> "start end complete" for 8 x 50 one-file sessions
  local server=$1 start end ok
  start=$(date +%s.%N)
  for w in $(seq 1 8); do
    (for i in $(seq 1 50); do curl -s --max-time 20 "$(url "$server" site.cfg)" | cmp -s - "$WORK/root/site.cfg" && echo ok; done >"$WORK/out/w$w") &
  done
  wait $(jobs -p | grep -v -E "^(${PIDS[0]}|${PIDS[1]})$") 2>/dev/null || true
  end=$(date +%s.%N)
  ok=$(cat "$WORK/out"/w* | wc -l)
  rm -f "$WORK/out"/w*
  echo "$start $end $ok"
}

report() { # label n unit vs_start vs_end vs_ok pp_start pp_end pp_ok amount
  python3 - "$@" <<'PY'
import sys
label, n, unit = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s1, e1, ok1, s2, e2, ok2, amount = float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8]), int(sys.argv[9]), float(sys.argv[10])
a, b = amount / (e1 - s1), amount / (e2 - s2)
want = n if unit == "MB/s" else 400
note = "" if ok1 == want and ok2 == want else f"  (complete: vsftpd {ok1}/{want}, polyprov {ok2}/{want})"
print(f"{label:<6} {n:>4} {unit:>10} {a:>10.1f} {b:>10.1f} {b / a:>7.2f}{note}")
PY
}

printf '%-6s %4s %10s %10s %10s %7s\n' TEST N UNIT vsftpd polyprov RATIO
for n in 1 10 100; do
  read -r s1 e1 ok1 < <(big vsftpd "$n")
  read -r s2 e2 ok2 < <(big polyprov "$n")
  report big "$n" MB/s "$s1" "$e1" "$ok1" "$s2" "$e2" "$ok2" $((8 * n))
done
read -r s1 e1 ok1 < <(small vsftpd)
read -r s2 e2 ok2 < <(small polyprov)
report small 8 sessions/s "$s1" "$e1" "$ok1" "$s2" "$e2" "$ok2" 400
