# Shared by the benchmark scripts (source it): tools check, a work directory removed on exit with
# every process started from it, a reference nginx. Loopback only.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$REPO/target/release/polyprov

# need TOOL…: exit 2 unless every tool (in PATH or /usr/sbin) and the release build are there.
need() {
  for t in "$@"; do
    command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || { echo "$t is not installed"; exit 2; }
  done
  [ -x "$BIN" ] || { echo "build first: cargo build --release"; exit 2; }
}

WORK=$(mktemp -d)
chmod a+rx "$WORK"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

# free_port: a TCP port nothing listens on now (asked of the kernel, not guessed).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_nginx SERVER…: nginx (2 workers, sendfile, long keep-alive, no access log) with the
# given directives inside its one server block, e.g. "listen 127.0.0.1:8080; root /srv;".
start_nginx() {
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<NGINX
worker_processes 2;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off; sendfile on; tcp_nodelay on; keepalive_requests 100000;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx; fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  server { $* }
}
NGINX
  nginx -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
  PIDS+=($!)
}

# start_polyprov ARG…: `polyprov serve --data $WORK/data --admin 127.0.0.1:0 ARG…` (release
# build), its summary in $WORK/summary and log in $WORK/log; returns once it is listening.
start_polyprov() {
  "$BIN" serve --data "$WORK/data" --admin 127.0.0.1:0 "$@" >"$WORK/summary" 2>"$WORK/log" &
  PIDS+=($!)
  for _ in $(seq 1 100); do grep -q '^  metrics' "$WORK/summary" 2>/dev/null && break; sleep 0.1; done
}
