#!/usr/bin/env bash
# The device check: one call that measures the project on one GPU (written for an H200) and
# fits one command's 600 s limit, returning every figure in at most seven small files.
#
# On the GPU machine, from the checkout's root, with the git-ignored .whl/ folder travelling
# with the checkout, as ONE command with a 600 s limit, OUTDIR being the folder whose files
# come back from the machine:
#
#   bash scripts/device-check.sh OUTDIR
#
# Nothing else is needed there: the script installs the four wheels of .whl/ itself (below).
# Its stages share a 530 s budget (DEVICE_CHECK_SECONDS or --budget to change it), so the
# command ends well inside 600 s; summary.json and table.txt are rewritten after every stage,
# so a command killed at its limit still returns everything measured until then. Afterwards,
# if minutes are left, a part can be rerun with a smaller budget, e.g. the compiled loop alone:
#
#   bash scripts/device-check.sh --stages bench --budget 200 \
#     --bench-extra "--loop-variants compiled --concurrent ''" OUTDIR
#
#   bash scripts/device-check.sh --dry-run OUTDIR   # the same sequence at toy scale on a CPU
#
# Fill .whl/ once, on a machine with network access, from the checkout's root (about 3.5 MiB;
# it must hold only these and stay under 60 MB), with versions pinned as in pyproject.toml
# (farama-notifications is a dependency of gymnasium):
#
#   for wheel in gymnasium==1.4.0 farama-notifications==0.0.6 ale-py==0.12.1 tensorboardX==2.6.5; do
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 -d .whl "$wheel"
#   done
#
# It uses the machine's own python3 and PyTorch (torch is never installed or upgraded) and runs
# the project from this checkout (PYTHONPATH=src:tools). The packages the machine lacks are
# installed, with --no-deps, into a scratch folder from the wheels in .whl/. The other
# dependencies (numpy, opencv, tqdm, psutil, pillow, scipy, protobuf, pytest) come with the GPU
# image; the optional extras (pygame for `storm-wm play`, matplotlib for the report's plots,
# imageio-ffmpeg for MP4 videos) and rliable (the report's cross-check) are not needed here.
#
# Stages, in this order (tools/device_check/check.py): tests (`pytest -m cuda`, at most a
# quarter of the budget, the compile tests last); bench (`storm-wm bench --device cuda`: the
# phases against the measured bf16 peak, a profile of whole steps, the loop eager, compiled,
# then 1, 4 and 2 concurrent runs, most telling first; about 270-315 s); training (Pong,
# Breakout, Boxing and MsPacman at the paper config, all four at once, stopped by SIGINT with a
# checkpoint). A stage stopped at its limit after some figures is reported partial, with them.
# OUTDIR gets summary.json, table.txt (printed last), tests.log, bench.json, bench.log,
# profile.txt (where each phase's device time goes) and training.log. See docs/performance.md,
# "GPU".
#
# Options: --dry-run, --stages LIST (of tests,bench,training), --budget SECONDS,
# --bench-extra "ARGS" (more `storm-wm bench` options; later ones win). Environment: PYTHON
# (default python3), DEVICE_CHECK_SECONDS (the budget of all stages; default 530 with CUDA, 400
# for --dry-run). Exit status: 0 when every stage passed or stopped at its limit with figures,
# 1 when one failed or measured nothing, or the check was interrupted; 2 on bad usage, 3
# without CUDA, 4 with missing packages.
set -euo pipefail

usage="usage: $0 [--dry-run] [--stages LIST] [--budget SECONDS] [--bench-extra ARGS] OUTDIR"
dry_run=""
outdir=""
options=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run="--dry-run" ;;
    --stages|--budget|--bench-extra)
      if [ $# -lt 2 ]; then echo "device-check: $1 needs a value; $usage" >&2; exit 2; fi
      options+=("$1=$2"); shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) echo "device-check: unknown option $1; $usage" >&2; exit 2 ;;
    *) if [ -n "$outdir" ]; then echo "device-check: give one OUTDIR; $usage" >&2; exit 2; fi
       outdir="$1" ;;
  esac
  shift
done
if [ -z "$outdir" ]; then
  echo "device-check: $usage" >&2
  exit 2
fi
mkdir -p "$outdir"
outdir="$(cd "$outdir" && pwd)"
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
if ! "$python" -c 'import torch' >/dev/null 2>&1; then
  echo "device-check: $python cannot import torch; run it where PyTorch is installed (or set PYTHON)" >&2
  exit 3
fi
if [ -z "$dry_run" ] && ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
  echo "device-check: no CUDA device here (torch.cuda.is_available() is False); use --dry-run for the CPU rehearsal" >&2
  exit 3
fi

missing="$("$python" -c '
import importlib.util
print(" ".join(m for m in ("gymnasium", "ale_py", "tensorboardX") if importlib.util.find_spec(m) is None))
')"
if [ -n "$missing" ]; then
  shopt -s nullglob
  wheels=(.whl/*.whl)
  if [ ${#wheels[@]} -eq 0 ]; then
    echo "device-check: $python lacks $missing and .whl/ holds no wheels; fill it as this script's header says" >&2
    exit 4
  fi
  site="$(mktemp -d /tmp/storm-wm-site.XXXXXX)"
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" "${wheels[@]}" >/dev/null
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src:$PWD/tools${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

arguments=("$outdir")
if [ -n "$dry_run" ]; then arguments+=(--dry-run); fi
if [ -n "${DEVICE_CHECK_SECONDS:-}" ]; then arguments+=(--budget "$DEVICE_CHECK_SECONDS"); fi
arguments+=("${options[@]+"${options[@]}"}")
exec "$python" -m device_check "${arguments[@]}"
