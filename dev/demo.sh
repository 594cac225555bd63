#!/usr/bin/env bash
# The demo: sets up the machine (as root), starts the stand-in UCloud Core and the ucim server, maps the
# UCloud user alice#1234 to the unix user alice, submits one job through the provider API and prints its
# life. Leaves the stack running.
#
#   dev/demo.sh          set up, start (or restart), submit a job, follow it
#   dev/demo.sh stop     stop the server and the stand-in Core
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }

ETC=/etc/ucim LOGS=/var/log/ucim RUN=/run/ucim
SIM_URL=http://127.0.0.1:8888 PROVIDER_URL=http://127.0.0.1:8889
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

stop_pidfile() {
  local f=$1
  if [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then
    kill -TERM "$(cat "$f")" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$(cat "$f")" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$f"
}

stop() {
  stop_pidfile $RUN/server.pid
  stop_pidfile $RUN/sim.pid
}

if [ "${1:-}" = stop ]; then stop; echo "stopped (Slurm keeps running: dev/slurm-cluster.sh stop)"; exit 0; fi

say "Setting up: packages, Slurm, users, sudoers, build (the first run takes several minutes)"
bash dev/setup.sh debug
stop

say "Starting the stand-in UCloud Core on $SIM_URL"
install -d -m 0755 $ETC/sim
setsid /usr/local/lib/ucim/ucloud-sim serve --provider-id demo --listen 127.0.0.1:8888 \
  --provider-url $PROVIDER_URL --key-dir $ETC/sim --refresh-token-file $ETC/sim/refresh_token \
  </dev/null >$LOGS/sim.log 2>&1 &
echo $! > $RUN/sim.pid
for _ in $(seq 100); do [ -s $ETC/sim/public.pem ] && [ -s $ETC/sim/refresh_token ] && break; sleep 0.1; done
# What an operator gets from UCloud: the Core's public key and the provider's refresh token.
install -m 0644 $ETC/sim/public.b64 $ETC/ucloud_key.pub
install -m 0600 -o ucloud -g ucloud $ETC/sim/refresh_token $ETC/refresh_token

cat > $ETC/config.toml <<TOML
# ucim demo configuration (written by dev/demo.sh)
provider_id = "demo"

[core]
url = "$SIM_URL"
public_key_file = "$ETC/ucloud_key.pub"
refresh_token_file = "$ETC/refresh_token"

[server]
listen = "127.0.0.1:8889"

[products.cpu-1]
category = "cpu"
partition = "cpu"
cpus = 1
memory_gb = 1
price = 1
description = "1 core, 1 GB"

[applications.print-id]
script = '''
echo "running as: \$(id)"
echo "on: \$(hostname), Slurm job \$SLURM_JOB_ID, UCloud job \$UCLOUD_JOB_ID"
sleep "\${UCLOUD_PARAM_seconds:-5}"
echo "done"
'''
TOML

say "Starting ucim server as the service user 'ucloud'"
setsid runuser -u ucloud -- /usr/local/lib/ucim/ucim server --config $ETC/config.toml </dev/null >$LOGS/server.log 2>&1 &
echo $! > $RUN/server.pid
for _ in $(seq 100); do ucim admin users >/dev/null 2>&1 && break; sleep 0.1; done
ucim admin map 'alice#1234' alice >/dev/null
ucim admin users

say "Submitting a job for UCloud user alice#1234 through the provider API"
out=$(/usr/local/lib/ucim/ucloud-sim create-job --sim $SIM_URL --user 'alice#1234' --product cpu-1 \
  --category cpu --app print-id --param seconds=5 --minutes 10)
echo "$out"
job=$(printf '%s\n' "$out" | head -1)
[ -n "$job" ] || { echo "could not read the job id" >&2; exit 1; }

say "Following job $job (state changes as the Core receives them)"
last=""
for _ in $(seq 300); do
  st=$(/usr/local/lib/ucim/ucloud-sim job --sim $SIM_URL "$job")
  state=$(printf '%s' "$st" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("state"))')
  if [ "$state" != "$last" ]; then
    status=$(printf '%s' "$st" | python3 -c 'import json,sys; u=json.load(sys.stdin).get("updates") or [{}]; print(u[-1].get("status") or "")')
    printf '%s  %-10s %s\n' "$(date +%T)" "$state" "$status"
    last=$state
  fi
  case "$state" in SUCCESS|FAILURE|EXPIRED) break;; esac
  sleep 0.5
done

dir=$(getent passwd alice | cut -d: -f6)/ucloud-jobs/$job
say "Output of the job ($dir/stdout.txt, owned by $(stat -c %U "$dir/stdout.txt"))"
cat "$dir/stdout.txt"
cat <<TXT

The stack is still running:
  stand-in Core   $SIM_URL     (log $LOGS/sim.log)
  ucim server     $PROVIDER_URL     (log $LOGS/server.log, socket $RUN/ucim.sock)
Poke at it:
  ucim admin users | ucim admin instances
  /usr/local/lib/ucim/ucloud-sim create-job --sim $SIM_URL --user 'alice#1234' --product cpu-1 --category cpu --app print-id --param seconds=60 --minutes 5
  /usr/local/lib/ucim/ucloud-sim job --sim $SIM_URL JOBID | /usr/local/lib/ucim/ucloud-sim terminate --sim $SIM_URL JOBID
  squeue; sacct
Stop it:  dev/demo.sh stop
TXT
