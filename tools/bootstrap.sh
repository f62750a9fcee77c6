#!/usr/bin/env bash
# tools/bootstrap.sh: the README's two set-up commands.
#
#   bash tools/bootstrap.sh demo   install what is missing, build, run the bundled
#                                  default job (inputs/) on 2 MPI ranks, summarise it
#   bash tools/bootstrap.sh test   install what is missing, build, run the test suite
#
# Debian 12 (bookworm) or Ubuntu; run as root or with sudo available. Idempotent:
# a second run installs nothing and rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-demo}
case "$what" in demo|test) ;; *) echo "usage: bash tools/bootstrap.sh demo|test" >&2; exit 2 ;; esac

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

# 1. Debian packages (build, MPI, HDF5, JSON, Python for the tests and tools/,
#    Slurm and munge for the test that submits janus through a real sbatch).
pkgs=(gcc pkg-config meson ninja-build libopenmpi-dev openmpi-bin libhdf5-dev libjansson-dev python3 python3-pip
      slurmctld slurmd slurm-client munge)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 2. A python3 with h5py, numpy, matplotlib (tools/report, plots) and tokenizers
#    (tools/prep, tools/detok): pip first; where pip may not install into the
#    system interpreter (Debian's PEP 668 marker), a virtual environment.
PY=$(command -v python3)
pymods='import h5py, numpy, matplotlib, tokenizers'
if ! "$PY" -c "$pymods" 2>/dev/null; then
  if ! "$PY" -m pip install -q h5py numpy matplotlib tokenizers 2>/dev/null; then
    dpkg-query -W -f='${Status}' python3-venv 2>/dev/null | grep -q "install ok installed" ||
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv .venv && PY=$PWD/.venv/bin/python3 && "$PY" -m pip install -q h5py numpy matplotlib tokenizers
  fi
  "$PY" -c "$pymods" || { echo "bootstrap: no python3 with h5py, numpy, matplotlib and tokenizers" >&2; exit 1; }
fi

# 3. Build (release, CPU engine).
if [ ! -f build/build.ninja ]; then
  meson setup build -Dbuildtype=release -Dpython="$PY" >/dev/null
else
  meson configure build -Dpython="$PY" >/dev/null
fi
ninja -C build >/dev/null
echo "bootstrap: built $(build/janus --version)"

# Open MPI as root (CI, containers) and without ptrace-based single copy.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none

if [ "$what" = demo ]; then
  mkdir -p out
  mpirun --oversubscribe -np 2 build/janus generate --model inputs/model \
    --requests inputs/requests.h5 --out out/demo.h5
  build/janus inspect out/demo.h5
else
  meson test -C build --print-errorlogs --num-processes 2
fi
