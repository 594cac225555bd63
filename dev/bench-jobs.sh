#!/usr/bin/env bash
# Prints the jobs figures: create → RUNNING latency (median of 20) and jobs.create throughput for 200 jobs
# against a raw sbatch loop of the same jobs as the same user (ratio; goal ≥ 0.8×), through the ingress as
# deployed and straight to the server. Cancels its jobs.
# UCIM_BENCH_LATENCY_JOBS=N shortens the latency part; UCIM_BENCH_POLL_MS sets the poll interval of the
# throughput part (default 1000, the production default).
# As root. `dev/bench-jobs.sh` sets up and builds in release mode; with UCIM_BIN set (an installed ucim with
# its own sudoers rule) it uses that binary and the profile in BENCH_PROFILE (release|debug) as is.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${BENCH_PROFILE:-release}"
if [ -z "${UCIM_BIN:-}" ]; then
    bash dev/setup.sh release
fi
flag=""
[ "$profile" = debug ] && flag="--profile dev"
echo "bench-jobs: $profile build, ucim binary ${UCIM_BIN:-/usr/local/lib/ucim/ucim}"
UCIM_E2E=1 cargo bench -q -p e2e --bench jobs $flag
