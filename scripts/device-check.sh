#!/usr/bin/env bash
# The device check: one call, at most 9 minutes on one GPU (written for an H200).
#
#   scripts/device-check.sh OUTDIR            # on a machine with CUDA
#   scripts/device-check.sh --dry-run OUTDIR  # the same sequence at toy scale on the CPU
#
# Runs `pytest -m cuda`, then `storm-wm bench --device cuda --json` (training-step phases,
# measured fp32/bf16 peaks, the training loop end to end eager and compiled, 1, 2 and 4
# concurrent runs), then trains Pong, Breakout, Boxing and MsPacman at the paper config, all
# four at once on the one GPU, for the time left, and stops them with SIGINT (each writes a
# checkpoint). OUTDIR gets summary.json (keys tests, bench, training), tests.log, bench.json,
# bench.log, training.log and table.txt; the table is printed last. See docs/performance.md, "GPU".
#
# It uses the machine's own python3 and PyTorch (torch is never installed or upgraded) and runs
# the project from this checkout (PYTHONPATH=src:tools). Packages the machine lacks are installed, with
# --no-deps, into a scratch folder from the wheels in .whl/ (git-ignored), which must hold only
# these and stay under 60 MB (about 3.6 MB). Fill it, on a machine with network access, from the
# checkout's root, with versions pinned as in pyproject.toml (farama-notifications is a
# dependency of gymnasium):
#
#   for wheel in gymnasium==1.4.0 farama-notifications==0.0.6 ale-py==0.12.1 tensorboardX==2.6.5; do
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 -d .whl "$wheel"
#   done
#
# The other dependencies (numpy, opencv, tqdm, psutil, imageio, pillow, matplotlib, pandas,
# scipy, safetensors, protobuf, pytest) come with the GPU image; pygame (`storm-wm play`),
# rliable (`storm-wm report`'s cross-check) and imageio-ffmpeg (mp4 videos) are not needed here.
#
# Environment: PYTHON (default python3), DEVICE_CHECK_SECONDS (the time budget of all stages;
# default 530 with CUDA, 400 for --dry-run). Exit status: 0 when every stage ran and passed,
# 1 when one failed or timed out, 2 on bad usage, 3 without CUDA, 4 with missing packages.
set -euo pipefail

dry_run=""
outdir=""
for argument in "$@"; do
  case "$argument" in
    --dry-run) dry_run="--dry-run" ;;
    -h|--help) sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "device-check: unknown option $argument; usage: $0 [--dry-run] OUTDIR" >&2; exit 2 ;;
    *) if [ -n "$outdir" ]; then echo "device-check: give one OUTDIR; usage: $0 [--dry-run] OUTDIR" >&2; exit 2; fi
       outdir="$argument" ;;
  esac
done
if [ -z "$outdir" ]; then
  echo "device-check: usage: $0 [--dry-run] OUTDIR" >&2
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

budget=()
if [ -n "${DEVICE_CHECK_SECONDS:-}" ]; then budget=(--budget "$DEVICE_CHECK_SECONDS"); fi
exec "$python" -m device_check "$outdir" $dry_run "${budget[@]}"
