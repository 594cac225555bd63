#!/usr/bin/env bash
# Prints the spine's figures: parse+diff time for 10,000 jobs, Slurm calls per poll cycle with 1,000 tracked
# jobs, create → RUNNING latency. As root; builds in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/setup.sh release
cargo bench -q -p slurm --bench watch
UCIM_E2E=1 cargo bench -q -p e2e --bench spine
