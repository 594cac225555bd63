#!/usr/bin/env bash
# Prepares this machine (Debian 12, as root) for ucim: packages, a Slurm cluster on this machine (two slurmd nodes) with munge and
# slurmdbd on MariaDB, the service user, test/demo users, the sudoers rule, and the ucim binary installed
# where the sudoers rule expects it. Idempotent.
#
#   dev/setup.sh [debug|release]      (default debug)
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${1:-debug}
log() { printf '[setup] %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "run as root"; exit 1; }

# --- packages the module and its tests need (Slurm's own are installed by slurm-cluster.sh)
need=()
for p in sudo gcc libc6-dev pkg-config ca-certificates procps python3; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

# --- Slurm (8 job slots on this small machine)
export SLURM_DEV_CPUS=${SLURM_DEV_CPUS:-8}
# two slurmd nodes on this host; cgroup v1 enforcement (a job over its --mem ends OUT_OF_MEMORY) where the
# v1 memory, freezer and cpuset hierarchies are mounted and writable (else plain process tracking)
export SLURM_DEV_NODES=2
if [ -z "${SLURM_DEV_CGROUP:-}" ]; then
  SLURM_DEV_CGROUP=1
  for c in memory freezer cpuset; do
    [ -w "/sys/fs/cgroup/$c/cgroup.procs" ] || SLURM_DEV_CGROUP=0
  done
  export SLURM_DEV_CGROUP
fi
bash dev/slurm-cluster.sh start >/dev/null

# --- service user, its folders, the group whose members ucim may act as
getent group ucim-users >/dev/null || groupadd --system ucim-users
id ucloud >/dev/null 2>&1 || useradd --system --home-dir /var/lib/ucim --shell /usr/sbin/nologin ucloud
install -d -m 0750 -o ucloud -g ucloud /var/lib/ucim
install -d -m 0755 -o ucloud -g ucloud /run/ucim /var/log/ucim
install -d -m 0755 /etc/ucim
# suspend/resume and raising a time limit need a Slurm operator (job owners are refused): the server does them
bash dev/slurm-cluster.sh ensure-operator ucloud >/dev/null

# --- demo and test users: real unix users with Slurm associations. dave and erin are for instance
# life-cycle tests, ucimshared is the many-to-one account, mallory is deliberately not in ucim-users.
for u in alice bob carol dave erin ucimshared; do
  bash dev/slurm-cluster.sh ensure-user "$u" >/dev/null
  usermod -aG ucim-users "$u"
done
id mallory >/dev/null 2>&1 || useradd -m -s /bin/bash mallory

# --- build and install the binary where the sudoers rule names it
if [ "$PROFILE" = release ]; then flag=--release; else flag=; fi
log "building ucim ($PROFILE)"
if [ "${UCIM_SETUP_TESTS:-0}" = 1 ]; then
  # dev/test.sh: the tests too, in the same build, so dependencies are compiled once with one feature set
  # (a bins-only build resolves features without the tests' dev-dependencies and compiles some twice).
  cargo build -q $flag --workspace --bins --tests
else
  cargo build -q $flag -p ucim -p ucloud-sim --bins
fi
target=${CARGO_TARGET_DIR:-target}
install -D -m 0755 "$target/$PROFILE/ucim" /usr/local/lib/ucim/ucim
install -D -m 0755 "$target/$PROFILE/ucloud-sim" /usr/local/lib/ucim/ucloud-sim
ln -sf /usr/local/lib/ucim/ucim /usr/local/bin/ucim

# --- the default account hook (hook mode): new accounts get a Slurm association in the dev account
install -D -m 0755 hooks/create-user /usr/local/lib/ucim/hooks/create-user
printf '{"slurmAccount": "dev"}\n' > /etc/ucim/create-user.json

# --- the sudo rules, checked before they go live
for rule in ucim ucim-hook; do
  visudo -cqf "dev/sudoers.$rule"
  install -m 0440 "dev/sudoers.$rule" "/etc/sudoers.d/$rule"
done
visudo -cq
log "ready: Slurm up, test users, /usr/local/lib/ucim/ucim installed, sudoers rules in place"
