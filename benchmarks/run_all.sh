#!/usr/bin/env bash
# The speed benchmarks of the README's table, each alone on the device, one after another, with the GPU tests first:
#
#   bash benchmarks/run_all.sh [OUT]          # logs and JSON under OUT (default runs/benchmarks)
#   TINY=1 bash benchmarks/run_all.sh         # the CPU checks (--tiny), seconds each
#
# Each benchmark has its own time limit (LIMIT_<NAME> in seconds) so that one slow stage cannot take the others'
# time; a benchmark cut by its limit still leaves its log. FRALKIT_GIT_COMMIT, when set, names the commit in every
# record (a copy of the tree without its own git metadata); otherwise git says. Python runs unbuffered, so a cut log
# is complete up to its cut.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/benchmarks}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export FRALKIT_GIT_COMMIT="${FRALKIT_GIT_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
py="${PYTHON:-python3}"
tiny=()
[ "${TINY:-0}" = 1 ] && tiny=(--tiny)
echo "commit $FRALKIT_GIT_COMMIT; logs under $out"
t0=$(date +%s)
step() {  # step NAME LIMIT COMMAND...
    local name=$1 limit=$2
    shift 2
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    local rc=$?
    echo "[$name: rc $rc after $(( $(date +%s) - t0 )) s]"
    tail -n 4 "$out/$name.log"
}
if [ "${TINY:-0}" != 1 ]; then
    step gpu_tests "${LIMIT_TESTS:-240}" "$py" -m pytest -q -m gpu tests/test_inference.py tests/test_train_fast.py tests/test_deepfool.py tests/test_split_tf32.py
fi
step fral_study_cost "${LIMIT_FRAL:-300}" "$py" benchmarks/fral_study_cost.py "${tiny[@]}" --strategies "${STRATEGIES:-jin,rand,fairal}" --verbose --json "$out/fral_study_cost.json"
step trades_throughput "${LIMIT_TRADES:-240}" "$py" benchmarks/trades_throughput.py "${tiny[@]}" --batch-sizes "${TRADES_BATCH_SIZES:-256}" --json "$out/trades_throughput.json"
step deepfool_speed "${LIMIT_DEEPFOOL:-150}" "$py" benchmarks/deepfool_speed.py "${tiny[@]}" --json "$out/deepfool_speed.json"
step bald_speed "${LIMIT_BALD:-60}" "$py" benchmarks/bald_speed.py "${tiny[@]}"
