#!/usr/bin/env bash
# Prints the user figures of issue 4: instance cold start (sudo included), idle RSS of one instance, server
# RSS with 1,000 mapped users of whom 50 have running instances. As root; builds in release mode. Makes the
# bench accounts ucimb01..ucimb50 (in ucim-users) if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/setup.sh release
for i in $(seq -w 1 50); do
  id "ucimb$i" >/dev/null 2>&1 || useradd -M -N -g ucim-users -s /usr/sbin/nologin "ucimb$i"
done
UCIM_E2E=1 cargo bench -q -p e2e --bench users
