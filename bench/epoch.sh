#!/usr/bin/env bash
# The whole-run figure users feel: one epoch of 45,000 training images (plus the 5,000-image
# validation pass) with `kiln train` and with the same loop in PyTorch (bench/torch_epoch.py), on
# the same synthetic CIFAR-100-layout data, back to back, wall clock.
# usage: bench/epoch.sh [--threads T] [--rounds R]; env KILN_BIN, KILN_PYTHON, KILN_BENCH_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kiln=${KILN_BIN:-$here/../build/tools/kiln}
py=${KILN_PYTHON:-/usr/bin/python3}
dir=${KILN_BENCH_DIR:-/tmp/kiln_epoch}
threads=$(nproc); rounds=1
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "epoch.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
export OMP_NUM_THREADS=$threads
[ -f "$dir/data/train.bin" ] || "$kiln" synth --dir "$dir/data" --train 50000 --test 100 >/dev/null
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), threads $threads"
for r in $(seq "$rounds"); do
  rm -rf "$dir/run"
  t0=$(date +%s.%N)
  "$kiln" train --data "$dir/data" --epochs 1 --val-size 5000 --test-size 0 --threads "$threads" \
    --plain --model-dir "$dir/run/model" --checkpoint-dir "$dir/run/ckpt" >"$dir/kiln.log" 2>&1 \
    || { cat "$dir/kiln.log" >&2; exit 1; }
  k=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  p=$("$py" "$here/torch_epoch.py" "$dir/data" --threads "$threads" | grep '^epoch_s=' | cut -d= -f2)
  echo "round $r: kiln train ${k} s, PyTorch ${p} s, kiln speed-up $(awk -v a="$p" -v b="$k" 'BEGIN { printf "%.2f", a / b }')x"
done
