#!/usr/bin/env bash
# kiln vs PyTorch on the same machine, back to back, at the same thread count: ResNet34
# training at batch 128 (img/s, higher is better) and, unless --train-only, inference at
# batch 1, 4 and 128 (median ms, lower is better). Prints each ratio kiln/PyTorch as a speed-up.
# usage: bench/compare.sh [--threads T] [--steps N] [--warmup W] [--train-only]
#        env KILN_BIN (default build/tools/kiln), KILN_PYTHON (default /usr/bin/python3)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kiln=${KILN_BIN:-$here/../build/tools/kiln}
py=${KILN_PYTHON:-/usr/bin/python3}
threads=$(nproc); steps=8; warmup=3; train_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --train-only) train_only=1; shift ;;
    *) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$kiln" ] || { echo "compare.sh: no kiln binary at $kiln (set KILN_BIN)" >&2; exit 2; }
export OMP_NUM_THREADS=$threads

# measure KEY CMD...: runs CMD, shows its output on stderr, prints the value of its last KEY= line.
measure() {
  local key=$1 out; shift
  out=$("$@") || { printf '%s\n' "$out" >&2; echo "compare.sh: failed: $*" >&2; return 0; }
  printf '%s\n' "$out" >&2
  printf '%s\n' "$out" | grep "^$key=" | tail -1 | cut -d= -f2
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), threads $threads"
k=$(measure train_img_per_s "$kiln" bench train --threads "$threads" --steps "$steps" --warmup "$warmup")
p=$(measure train_img_per_s "$py" "$here/pytorch_bench.py" train --threads "$threads" --steps "$steps" --warmup "$warmup")
pc=$(measure train_img_per_s "$py" "$here/pytorch_bench.py" train --threads "$threads" --steps "$steps" --warmup "$warmup" --memory-format channels_last)
echo "train resnet34 b128 threads $threads: kiln $k img/s, PyTorch NCHW $p, channels_last $pc;" \
     "kiln/PyTorch = $(ratio "$k" "$p") (NCHW), $(ratio "$k" "$pc") (channels_last)"
[ "$train_only" = 1 ] && exit 0
for b in 1 4 128; do
  n=$([ "$b" = 128 ] && echo 5 || echo 20)
  k=$(measure infer_ms_median "$kiln" bench infer --batch-size "$b" --threads "$threads" --steps "$n" --warmup "$warmup")
  p=$(measure infer_ms_median "$py" "$here/pytorch_bench.py" infer --batch-size "$b" --threads "$threads" --steps "$n" --warmup "$warmup")
  pc=$(measure infer_ms_median "$py" "$here/pytorch_bench.py" infer --batch-size "$b" --threads "$threads" --steps "$n" --warmup "$warmup" --memory-format channels_last)
  echo "infer resnet34 b$b threads $threads: kiln $k ms, PyTorch NCHW $p ms, channels_last $pc ms;" \
       "speed-up kiln vs PyTorch = $(ratio "$p" "$k") (NCHW), $(ratio "$pc" "$k") (channels_last)"
done
