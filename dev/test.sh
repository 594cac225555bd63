#!/usr/bin/env bash
# The whole test suite, end-to-end tests included, on a real Slurm with real users and sudo. As root.
# Tests marked #[ignore] disturb the whole cluster (they stop slurmctld); they run alone, after the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
# A clean build without incremental caches is faster and writes far less; CI always builds clean.
export CARGO_INCREMENTAL=0
UCIM_SETUP_TESTS=1 bash dev/setup.sh debug
export UCIM_E2E=1 UCIM_REAL_SLURM=1
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
  cargo nextest run --workspace --no-fail-fast --run-ignored only
else
  cargo test --workspace --no-fail-fast
  cargo test --workspace --no-fail-fast -- --ignored --test-threads=1
fi
