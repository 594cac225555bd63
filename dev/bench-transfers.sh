#!/usr/bin/env bash
# Prints transfer figures: 1 GiB download and upload throughput through a user's instance against nginx
# serving (and taking a WebDAV PUT of) the same file on loopback, as ratios, and the instance's peak RSS
# (VmHWM) during a 10,000-file folder upload. As root, with Slurm, the test users and the sudo rule for
# $UCIM_BIN in place (dev/setup.sh). PROFILE=release (default) or dev: which build of ucim is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-release}
UCIM_BIN=${UCIM_BIN:-/usr/local/lib/ucim/ucim}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
DIR=/tmp/ucim-bench-transfers
PORT=47690

command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; }
command -v curl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null; }

cargo build -q --profile "$PROFILE" -p ucim
out=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
install -m 0755 "$TARGET/$out/ucim" "$UCIM_BIN"

mkdir -p "$DIR/up" "$DIR/tmp" && chmod 0755 "$DIR" && chown www-data "$DIR/up" "$DIR/tmp"
[ "$(stat -c %s "$DIR/big.bin" 2>/dev/null || echo 0)" = 1073741824 ] || head -c 1073741824 /dev/urandom > "$DIR/big.bin"
chmod 0644 "$DIR/big.bin"
cat > "$DIR/nginx.conf" <<CONF
user www-data;
worker_processes 2;
pid $DIR/nginx.pid;
error_log $DIR/nginx-error.log;
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path $DIR/tmp;
    server {
        listen 127.0.0.1:$PORT;
        root $DIR;
        location /up/ { dav_methods PUT; client_max_body_size 0; create_full_put_path on; }
    }
}
CONF
nginx -c "$DIR/nginx.conf" -g 'daemon off;' &
NGINX=$!
trap 'kill $NGINX 2>/dev/null || true; rm -rf "$DIR/up" "$DIR/tmp"' EXIT
sleep 1

echo "ucim build: $PROFILE; nginx $(nginx -v 2>&1 | sed 's/.*\///'), sendfile on"
UCIM_E2E=1 UCIM_BIN="$UCIM_BIN" UCIM_BENCH_NGINX="http://127.0.0.1:$PORT" UCIM_BENCH_DIR="$DIR" \
    cargo bench -q --profile "$PROFILE" -p e2e --bench transfers
