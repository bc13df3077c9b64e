#!/usr/bin/env bash
# The whole agent learning an Atari game on a CPU: trains the `small` preset for each seed,
# evaluates each run's final agent on 20 episodes (the paper's protocol), and writes every curve
# and the eval table into one folder.
#
#   scripts/learning-check.sh GAME [SEEDS] [-- TRAIN_OPTION ...]
#
#   scripts/learning-check.sh Boxing              # seeds 1, 2 and 3, one after another
#   JOBS=3 scripts/learning-check.sh Pong 1-3     # three runs at once (one thread each here)
#   scripts/learning-check.sh Boxing 1 -- --steps 100000   # any `storm-wm train` option
#
# SEEDS: a comma-separated list or a range (default 1,2,3). Environment: OUT (the folder;
# default runs/learning-check/GAME), PRESET (default small), EPISODES (default 20), JOBS (runs
# at once, default 1; PyTorch gets the CPU's cores divided among them), STORM_WM (the command;
# default .venv/bin/storm-wm where it exists, else storm-wm), PYTHON (default: the one beside
# STORM_WM). Runs already in OUT continue from their newest checkpoint (a stopped check picks up
# where it was), and runs already evaluated at their last step are not played again.
#
# OUT gets one run directory per seed (GAME_seedN/) and beside it its logs (GAME_seedN.train.log,
# .eval.log) and training wall time in seconds (GAME_seedN.wall_seconds), curve.png (each seed's episode returns against environment steps,
# with its eval mean), results.json and results.md (the eval table with a 95 % interval over
# seeds, wall time and env steps/s per run, and the reward per 1,000 steps the game paid beside
# the one imagination promised). Exit status: 0 when every run trained and was
# evaluated, 1 when one failed (its log says why), 2 on bad usage. Not part of CI (hours);
# CI runs it at tiny sizes (tests/test_learning_check.py).
set -euo pipefail

usage="usage: $0 GAME [SEEDS] [-- TRAIN_OPTION ...]"
game="" seeds="1,2,3" extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "learning-check: unknown option $1; $usage" >&2; exit 2 ;;
    *) if [ -z "$game" ]; then game="$1"; elif [ "$seeds" = "1,2,3" ]; then seeds="$1"
       else echo "learning-check: too many arguments; $usage" >&2; exit 2; fi ;;
  esac
  shift
done
if [ -z "$game" ]; then echo "learning-check: $usage" >&2; exit 2; fi
if [[ "$seeds" =~ ^([0-9]+)-([0-9]+)$ ]]; then
  seeds="$(seq -s, "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}")"
elif ! [[ "$seeds" =~ ^[0-9]+(,[0-9]+)*$ ]]; then
  echo "learning-check: SEEDS must look like 1,2,3 or 1-3, got '$seeds'" >&2; exit 2
fi
jobs="${JOBS:-1}"
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
  echo "learning-check: JOBS must be a whole number of 1 or more, got '$jobs'" >&2; exit 2
fi

root="$(cd "$(dirname "$0")/.." && pwd)"
if [ -n "${STORM_WM:-}" ]; then storm_wm="$STORM_WM"
elif [ -x "$root/.venv/bin/storm-wm" ]; then storm_wm="$root/.venv/bin/storm-wm"
else storm_wm="storm-wm"; fi
python="${PYTHON:-$(dirname "$(command -v "$storm_wm")")/python}"
preset="${PRESET:-small}"
episodes="${EPISODES:-20}"
out="${OUT:-runs/learning-check/$game}"
# The curves are drawn at the end, hours later: check for their package before training.
if ! "$python" -c "import matplotlib" 2>/dev/null; then
  echo "learning-check: the curves need matplotlib: pip install 'storm-wm[plots]' (make installs it)" >&2
  exit 2
fi
mkdir -p "$out"
threads=$(( $(nproc) / jobs )); [ "$threads" -ge 1 ] || threads=1

# One seed: train (or continue), time it, evaluate; each step's output goes to its log beside
# the run directory.
check_seed() {
  local seed="$1" run="$out/${game//[^A-Za-z0-9_.-]/_}_seed$1"
  local started before=0
  [ -f "$run.wall_seconds" ] && before=$(cat "$run.wall_seconds")
  started=$(date +%s)
  OMP_NUM_THREADS="$threads" "$storm_wm" train --game "$game" --seed "$seed" \
    --preset "$preset" --run-dir "$run" --resume --no-progress "${extra[@]}" \
    >> "$run.train.log" 2>&1 &
  local trainer=$! trained=0
  # A continued run adds its time to what the earlier attempts took; the time so far is on
  # disk every few seconds, so a check killed with its machine keeps it for the next attempt.
  while kill -0 "$trainer" 2>/dev/null; do
    echo $(( before + $(date +%s) - started )) > "$run.wall_seconds"; sleep 2
  done
  wait "$trainer" || trained=$?
  echo $(( before + $(date +%s) - started )) > "$run.wall_seconds"
  if [ "$trained" -ne 0 ]; then
    echo "learning-check: seed $seed: training failed; see $run.train.log" >&2; return 1
  fi
  if [ -f "$run/eval.json" ] && [ -z "$(find "$run/checkpoints" -name '*.ckpt' -newer "$run/eval.json")" ]; then
    echo "learning-check: seed $seed: already evaluated at its newest checkpoint"; return 0
  fi
  if ! OMP_NUM_THREADS="$threads" "$storm_wm" eval "$run" --episodes "$episodes" \
      > "$run.eval.log" 2>&1; then
    echo "learning-check: seed $seed: evaluation failed; see $run.eval.log" >&2; return 1
  fi
  echo "learning-check: seed $seed: trained in $(cat "$run.wall_seconds") s, evaluated"
}

status=0
pids=()
for seed in ${seeds//,/ }; do
  check_seed "$seed" & pids+=($!)
  if [ "${#pids[@]}" -ge "$jobs" ]; then wait "${pids[0]}" || status=1; pids=("${pids[@]:1}"); fi
done
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
if [ "$status" -ne 0 ]; then exit 1; fi
"$python" "$root/scripts/learning_check.py" "$out"
