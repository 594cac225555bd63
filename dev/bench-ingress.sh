#!/usr/bin/env bash
# Ingress figures in one run: requests/s and p50/p99 latency for small JSON calls, and throughput and
# p50/p99 for 100 MB streamed bodies (upload and download), three ways to the same backend:
#   direct (plain HTTP to the backend), through `ucim ingress` (TLS), through nginx (Debian's, TLS, reverse
#   proxy with upstream keepalive, proxy_buffering and proxy_request_buffering off).
# Small calls run twice: loaded (CONNS connections back to back: throughput, and latency at saturation,
# where every proxy's CPU time queues) and unloaded (1 connection: what one call costs).
# BACKEND picks what answers:
#   builtin (default): the small backend of crates/ingress/benches/ingress.rs (a JSON answer, a body sink, a
#     body source) plus a stand-in route socket, so the comparison measures the proxies alone; Core calls
#     carry ucloud-username, so the ingress does its route lookup (cached) as in production.
#   instance: a real stack (crates/e2e/benches/ingress_stack.rs: stand-in Core, `ucim server`, `ucim ingress`,
#     alice's instance) answering `files.browse` of 20 files with a real token; small calls only. Runs
#     dev/setup.sh release first unless UCIM_BIN names an installed ucim.
# As root (installs nginx with apt if missing; runs the ingress as the service user `ucloud`).
#   PROFILE=release (default) or debug; SECS, CONNS (small calls), BIG_SECS, BIG_CONNS (100 MB bodies);
#   ROUNDS (default 3): every pass runs this many times, the three paths taking turns, and the figures are
#   medians (single runs here vary by ±10 %);
#   UCIM and BENCH (both) name prebuilt binaries and skip the build (builtin backend).
#   PIN=1 runs everything (backend, proxies, load) on CPU 0. On this VM (Firecracker) waking an idle vCPU
#   costs ~20 µs, and the unloaded figures mostly measure how many such wake-ups a path happens to take.
#   Pinned, no wake-up crosses CPUs and the figures measure each path's own work.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-release}
SECS=${SECS:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32}
BIG_SECS=${BIG_SECS:-8}
BIG_CONNS=${BIG_CONNS:-2}
BIG=100000000
BACKEND_KIND=${BACKEND:-builtin}
# Below the kernel's ephemeral range (32768+): a Slurm client's outgoing connection cannot hold one of these.
BASE=${BENCH_PORT_BASE:-31400}
BACKEND_PORT=$BASE INGRESS=$((BASE + 1)) NGINX=$((BASE + 2))
TARGET=${CARGO_TARGET_DIR:-target}

if ! command -v nginx >/dev/null; then
    echo "== installing nginx (Debian package)"
    # RUNLEVEL=1: do not start the packaged service; this script runs its own instance.
    RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx >/dev/null
fi
id ucloud >/dev/null

echo "== building ($PROFILE)"
if [ "$BACKEND_KIND" = instance ]; then
    [ -n "${UCIM_BIN:-}" ] || bash dev/setup.sh release
    STACK=$(cargo bench -p e2e --bench ingress_stack --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
    UCIM=${UCIM_BIN:-/usr/local/lib/ucim/ucim}
    BENCH=${BENCH:-$(cargo bench -p ingress --bench ingress --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)}
elif [ -n "${UCIM:-}" ] && [ -n "${BENCH:-}" ]; then
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
if [ -n "${PIN:-}" ]; then
    # After the build: everything this script starts from here on inherits the affinity.
    taskset -p -c 0 $$ >/dev/null
    echo "== PIN: backend, ingress, nginx and load all on CPU 0"
fi

DIR=$(mktemp -d /tmp/ucim-bench-ingress.XXXXXX)
chmod 755 "$DIR"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    # The stack tears itself down (server, instances, its files) before it exits.
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
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

if [ "$BACKEND_KIND" = instance ]; then
    # The stack's own ingress (TLS, its own test CA) and alice's instance; nginx goes to that instance.
    UCIM_E2E=1 UCIM_BIN="$UCIM" "$STACK" "$INGRESS" >"$DIR/stack.json" 2>"$DIR/stack.log" &
    PIDS+=($!)
    for _ in $(seq 600); do [ -s "$DIR/stack.json" ] && break; sleep 0.1; done
    [ -s "$DIR/stack.json" ] || { echo "the stack did not come up:"; tail -30 "$DIR/stack.log"; exit 1; }
    spec() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$DIR/stack.json" "$1"; }
    BACKEND_PORT=$(spec direct | sed 's/.*://')
    INGRESS_CA=$(spec ca)
    INGRESS_LOG=$(dirname "$INGRESS_CA")/ingress.log
    SMALL="call:$DIR/stack.json"
    MODES="small"
else
    "$BENCH" backend "$BACKEND_PORT" "$DIR/route.sock" 2>"$DIR/backend.log" &
    PIDS+=($!)

    cat > "$DIR/config.toml" <<TOML
provider_id = "bench"
[core]
url = "http://127.0.0.1:9"
public_key_file = "$DIR/unused"
refresh_token_file = "$DIR/unused"
[server]
listen = "127.0.0.1:$BACKEND_PORT"
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

    INGRESS_CA="$DIR/ca.pem"
    INGRESS_LOG="$DIR/ingress.log"
    SMALL=small
    MODES="small upload download"
fi

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
        server 127.0.0.1:$BACKEND_PORT;
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

for port in "$BACKEND_PORT" "$INGRESS" "$NGINX"; do
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
        sleep 0.1
    done
done

run() { # name url ca mode conns secs bytes label
    local out
    out=$("$BENCH" load "$2" "$3" "$5" "$6" "$4" "$7")
    echo "$1 $8 $out" | tee -a "$DIR/results"
}
echo "== small calls ($SMALL): $CONNS connections, then 1, $SECS s each; 100 MB bodies: $BIG_CONNS connections, $BIG_SECS s each; $ROUNDS rounds"
for round in $(seq "$ROUNDS"); do
    for mode in $MODES small-1; do
        case $mode in
            small) m=$SMALL c=$CONNS s=$SECS ;;
            small-1) m=$SMALL c=1 s=$SECS ;;
            *) m=$mode c=$BIG_CONNS s=$BIG_SECS ;;
        esac
        run direct "http://127.0.0.1:$BACKEND_PORT" - "$m" "$c" "$s" "$BIG" "$mode"
        run ingress "https://127.0.0.1:$INGRESS" "$INGRESS_CA" "$m" "$c" "$s" "$BIG" "$mode"
        run nginx "https://127.0.0.1:$NGINX" "$DIR/ca.pem" "$m" "$c" "$s" "$BIG" "$mode"
    done
done
grep -c 'ucim::access' "$INGRESS_LOG" | sed 's/^/ingress access log lines: /' || true

python3 - "$DIR/results" <<'PY'
import json, statistics, sys
r = {}
for line in open(sys.argv[1]):
    name, mode, js = line.split(" ", 2)
    r.setdefault((name, mode), []).append(json.loads(js))
med = lambda runs, key: statistics.median(x[key] for x in runs)
modes = [m for m in ["small", "small-1", "upload", "download"] if ("direct", m) in r]
print()
print(f"medians of {len(r[('direct', modes[0])])} runs")
print(f"{'mode':9} {'path':8} {'req/s':>9} {'MB/s':>8} {'p50 ms':>9} {'p99 ms':>9} {'errors':>6}")
for mode in modes:
    for name in ["direct", "ingress", "nginx"]:
        x = r[(name, mode)]
        print(f"{mode:9} {name:8} {med(x, 'rps'):9.1f} {med(x, 'mb_per_s'):8.1f} {med(x, 'p50_ms'):9.3f} {med(x, 'p99_ms'):9.3f} {sum(y['errors'] for y in x):6}")
print()
for mode in modes:
    key = "mb_per_s" if mode in ("upload", "download") else "rps"
    i, n, d = r[("ingress", mode)], r[("nginx", mode)], r[("direct", mode)]
    each = ", ".join(f"{a[key] / b[key]:.2f}" for a, b in zip(i, n))
    print(f"{mode:9} ingress/nginx throughput {med(i, key) / med(n, key):5.2f}x (goal >= 1.0; rounds {each})   "
          f"ingress/direct p50 {med(i, 'p50_ms') / med(d, 'p50_ms'):5.2f}x (goal <= 1.15)   ingress/nginx p50 {med(i, 'p50_ms') / med(n, 'p50_ms'):5.2f}x")
PY
