#!/usr/bin/env bash
# Scaling table for a many-core machine (written for a 16-core Sapphire Rapids with PyTorch 2.x
# preinstalled and no apt): kiln bench train at 1, 2, 4, 8, 16 threads against PyTorch at the
# same thread counts, then inference at batch 1, 4 and 128 at all threads. kiln is built
# elsewhere and carried with its shared libraries (libdnnl, libgomp) in a folder:
#   KILN_BIN=./kiln LD_LIBRARY_PATH=./lib bench/device.sh [--max-threads 16] [--quick]
# Few steps at low thread counts keep the whole run under about 6 minutes on 16 cores.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kiln=${KILN_BIN:-$here/../build/tools/kiln}
py=${KILN_PYTHON:-python3}
max=$(nproc); quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    --max-threads) max=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    *) echo "device.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
"$kiln" version >/dev/null || { echo "device.sh: cannot run $kiln (KILN_BIN, LD_LIBRARY_PATH?)" >&2; exit 2; }
"$py" -c "import torch, torchvision" || { echo "device.sh: $py lacks torch/torchvision" >&2; exit 2; }

last() { grep "^$1=" | tail -1 | cut -d= -f2; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
# Training steps per thread count: a step at batch 128 takes ~2 s on one core, ~0.2 s on 16.
steps_for() { if [ "$quick" = 1 ]; then echo 2; elif [ "$1" -le 2 ]; then echo 3; elif [ "$1" -le 4 ]; then echo 4; else echo 8; fi; }

echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs"
echo "# kiln $("$kiln" version | cut -d' ' -f2), PyTorch $("$py" -c 'import torch; print(torch.__version__)')"
printf "%-8s %12s %14s %20s %10s\n" threads "kiln img/s" "PyTorch NCHW" "PyTorch chan_last" "kiln/best"
for t in 1 2 4 8 16; do
  [ "$t" -le "$max" ] || continue
  s=$(steps_for "$t"); w=$([ "$t" -le 2 ] && echo 1 || echo 2)
  export OMP_NUM_THREADS=$t
  k=$("$kiln" bench train --threads "$t" --steps "$s" --warmup "$w" 2>/dev/null | last train_img_per_s)
  p=$("$py" "$here/pytorch_bench.py" train --threads "$t" --steps "$s" --warmup "$w" 2>/dev/null | last train_img_per_s)
  pc=$("$py" "$here/pytorch_bench.py" train --threads "$t" --steps "$s" --warmup "$w" --memory-format channels_last 2>/dev/null | last train_img_per_s)
  best=$(awk -v a="$p" -v b="$pc" 'BEGIN { print (a > b ? a : b) }')
  printf "%-8s %12s %14s %20s %10s\n" "$t" "${k:-fail}" "${p:-fail}" "${pc:-fail}" "$(ratio "${k:-0}" "$best")"
done
export OMP_NUM_THREADS=$max
printf "\n%-8s %14s %14s %20s\n" batch "kiln ms" "PyTorch NCHW ms" "PyTorch chan_last ms"
for b in 1 4 128; do
  n=$([ "$b" = 128 ] && echo 5 || echo 20)
  k=$("$kiln" bench infer --batch-size "$b" --threads "$max" --steps "$n" 2>/dev/null | last infer_ms_median)
  p=$("$py" "$here/pytorch_bench.py" infer --batch-size "$b" --threads "$max" --steps "$n" 2>/dev/null | last infer_ms_median)
  pc=$("$py" "$here/pytorch_bench.py" infer --batch-size "$b" --threads "$max" --steps "$n" --memory-format channels_last 2>/dev/null | last infer_ms_median)
  printf "%-8s %14s %14s %20s\n" "$b" "${k:-fail}" "${p:-fail}" "${pc:-fail}"
done
