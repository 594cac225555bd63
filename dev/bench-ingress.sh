#!/usr/bin/env bash
# Ingress figures in one run: requests/s and p50/p99 latency for small JSON calls, and throughput and
# p50/p99 for 100 MB streamed bodies (upload and download), three ways to the same backend:
#   direct (plain HTTP to the backend), through `ucim ingress` (TLS), through nginx (Debian's, TLS, reverse
#   proxy with upstream keepalive, proxy_buffering and proxy_request_buffering off).
# The backend is the small built-in one of crates/ingress/benches/ingress.rs (a JSON answer, a body sink,
# a body source) plus a stand-in route socket, so the comparison measures the proxies alone; Core calls
# carry ucloud-username, so the ingress does its route lookup (cached) as in production.
# As root (installs nginx with apt if missing; runs the ingress as the service user `ucloud`).
#   PROFILE=release (default) or debug; SECS, CONNS (small calls), BIG_SECS, BIG_CONNS (100 MB bodies);
#   UCIM and BENCH (both) name prebuilt binaries and skip the build.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-release}
SECS=${SECS:-10}
CONNS=${CONNS:-32}
BIG_SECS=${BIG_SECS:-15}
BIG_CONNS=${BIG_CONNS:-2}
BIG=100000000
BASE=${BENCH_PORT_BASE:-46400}
BACKEND=$BASE INGRESS=$((BASE + 1)) NGINX=$((BASE + 2))
TARGET=${CARGO_TARGET_DIR:-target}

if ! command -v nginx >/dev/null; then
    echo "== installing nginx (Debian package)"
    # RUNLEVEL=1: do not start the packaged service; this script runs its own instance.
    RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx >/dev/null
fi
id ucloud >/dev/null

echo "== building ($PROFILE)"
if [ -n "${UCIM:-}" ] && [ -n "${BENCH:-}" ]; then
    echo "using UCIM=$UCIM BENCH=$BENCH as given"
elif [ "$PROFILE" = release ]; then
    cargo build -q --release -p ucim
    UCIM="$TARGET/release/ucim"
    BENCH=$(cargo bench -p ingress --bench ingress --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
else
    cargo build -q -p ucim
    UCIM="$TARGET/debug/ucim"
    BENCH=$(cargo test -p ingress --bench ingress --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
fi
case "$BENCH" in /*) ;; *) BENCH="$PWD/$BENCH" ;; esac
case "$UCIM" in /*) ;; *) UCIM="$PWD/$UCIM" ;; esac

DIR=$(mktemp -d /tmp/ucim-bench-ingress.XXXXXX)
chmod 755 "$DIR"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$DIR/nginx.pid" ] && kill "$(cat "$DIR/nginx.pid")" 2>/dev/null || true
    sleep 0.5
    rm -rf "$DIR"
}
trap cleanup EXIT

echo "== certificates (test CA, P-256)"
(
    cd "$DIR"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=bench-ca 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out leaf.csr -subj /CN=127.0.0.1 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > leaf.ext
    openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 2 -extfile leaf.ext 2>/dev/null
    chown ucloud key.pem cert.pem
)

"$BENCH" backend "$BACKEND" "$DIR/route.sock" 2>"$DIR/backend.log" &
PIDS+=($!)

cat > "$DIR/config.toml" <<TOML
provider_id = "bench"
[core]
url = "http://127.0.0.1:9"
public_key_file = "$DIR/unused"
refresh_token_file = "$DIR/unused"
[server]
listen = "127.0.0.1:$BACKEND"
socket = "$DIR/route.sock"
[products.x]
category = "x"
partition = "x"
cpus = 1
memory_gb = 1
price = 1
[ingress]
listen = "127.0.0.1:$INGRESS"
tls_cert = "$DIR/cert.pem"
tls_key = "$DIR/key.pem"
TOML
UCIM_LOG=info runuser -u ucloud -- "$UCIM" ingress --config "$DIR/config.toml" 2>"$DIR/ingress.log" &
PIDS+=($!)

mkdir -p "$DIR/tmp" && chmod 777 "$DIR/tmp"
cat > "$DIR/nginx.conf" <<CONF
user www-data;
worker_processes auto;
pid $DIR/nginx.pid;
error_log $DIR/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log $DIR/nginx-access.log;
    client_body_temp_path $DIR/tmp/body;
    proxy_temp_path $DIR/tmp/proxy;
    fastcgi_temp_path $DIR/tmp/fastcgi;
    uwsgi_temp_path $DIR/tmp/uwsgi;
    scgi_temp_path $DIR/tmp/scgi;
    upstream backend {
        server 127.0.0.1:$BACKEND;
        keepalive 128;
    }
    server {
        listen 127.0.0.1:$NGINX ssl;
        ssl_certificate $DIR/cert.pem;
        ssl_certificate_key $DIR/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        client_max_body_size 0;
        keepalive_requests 1000000;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }
    }
}
CONF
nginx -c "$DIR/nginx.conf" -g 'daemon on;'

for port in "$BACKEND" "$INGRESS" "$NGINX"; do
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
        sleep 0.1
    done
done

run() { # name url mode conns secs bytes
    local out
    out=$("$BENCH" load "$2" "$DIR/ca.pem" "$4" "$5" "$3" "$6")
    echo "$1 $3 $out" | tee -a "$DIR/results"
}
echo "== small JSON calls: $CONNS connections, $SECS s each; 100 MB bodies: $BIG_CONNS connections, $BIG_SECS s each"
for mode in small upload download; do
    if [ "$mode" = small ]; then c=$CONNS s=$SECS; else c=$BIG_CONNS s=$BIG_SECS; fi
    run direct "http://127.0.0.1:$BACKEND" "$mode" "$c" "$s" "$BIG"
    run ingress "https://127.0.0.1:$INGRESS" "$mode" "$c" "$s" "$BIG"
    run nginx "https://127.0.0.1:$NGINX" "$mode" "$c" "$s" "$BIG"
done
grep -c 'ucim::access' "$DIR/ingress.log" | sed 's/^/ingress access log lines: /'

python3 - "$DIR/results" <<'PY'
import json, sys
r = {}
for line in open(sys.argv[1]):
    name, mode, js = line.split(" ", 2)
    r[(name, mode)] = json.loads(js)
print()
print(f"{'mode':9} {'path':8} {'req/s':>9} {'MB/s':>8} {'p50 ms':>9} {'p99 ms':>9} {'errors':>6}")
for mode in ["small", "upload", "download"]:
    for name in ["direct", "ingress", "nginx"]:
        x = r[(name, mode)]
        print(f"{mode:9} {name:8} {x['rps']:9.1f} {x['mb_per_s']:8.1f} {x['p50_ms']:9.3f} {x['p99_ms']:9.3f} {x['errors']:6}")
print()
for mode in ["small", "upload", "download"]:
    key = "rps" if mode == "small" else "mb_per_s"
    i, n, d = r[("ingress", mode)], r[("nginx", mode)], r[("direct", mode)]
    print(f"{mode:9} ingress/nginx throughput {i[key] / n[key]:5.2f}x (goal >= 1.0)   "
          f"ingress/direct p50 {i['p50_ms'] / d['p50_ms']:5.2f}x (goal <= 1.15)   ingress/nginx p50 {i['p50_ms'] / n['p50_ms']:5.2f}x")
PY
