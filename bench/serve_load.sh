#!/usr/bin/env bash
# kiln serve under load: single-image x-npy requests (wrk + serve/bench/post_npy.lua) at several
# concurrencies, for one or more kiln binaries measured alternately (round by round, so a shared
# box's load hits them alike), and an optional soak with the server's RSS sampled.
# usage: bench/serve_load.sh [-r ROUNDS] [-d SECONDS] [-c 1,8,64,256] [-b MAX_BATCH] [-t THREADS]
#                            [-s SOAK_SECONDS] KILN_BIN [KILN_BIN...]
# Needs Debian's python3 with torch/torchvision (a ResNet34 with random weights is made once into
# $KILN_BENCH_DIR, default /tmp/kiln_serve_load) and wrk. Prints one line per run, then Markdown.
set -euo pipefail
rounds=3 duration=10 concs=1,8,64,256 max_batch=64 threads=2 soak=0
while getopts "r:d:c:b:t:s:" o; do
  case $o in r) rounds=$OPTARG ;; d) duration=$OPTARG ;; c) concs=$OPTARG ;; b) max_batch=$OPTARG ;;
             t) threads=$OPTARG ;; s) soak=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { sed -n 2,8p "$0"; exit 2; }
here=$(cd "$(dirname "$0")/.." && pwd)
work=${KILN_BENCH_DIR:-/tmp/kiln_serve_load}
mkdir -p "$work/model"
if [ ! -f "$work/model/model.safetensors" ]; then
  (cd "$work" && /usr/bin/python3 - <<'PY'
import json, numpy as np, torch, torchvision
torch.manual_seed(0)
m = torchvision.models.resnet34(num_classes=100).eval()
torch.save(m.state_dict(), 'model/model.pth')
json.dump({"format": "kiln-model", "version": 1, "arch": "resnet34", "num_classes": 100,
           "class_names": ["c%d" % i for i in range(100)], "mean": [0.507, 0.487, 0.441],
           "std": [0.267, 0.256, 0.276], "image_size": 32, "dataset": "synthetic"},
          open('model/config.json', 'w'))
np.save('single.npy', np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32))
PY
  )
  "$1" import "$work/model/model.pth" --output "$work/model/model.safetensors" > /dev/null
fi

metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n { print $2 }'; }
start() {  # bin port -> pid, waits for /ping 200
  "$1" serve --model-dir "$work/model" --host 127.0.0.1 --port "$2" --threads "$threads" \
    --max-batch "$max_batch" --no-access-log > "$work/serve_$2.log" 2>&1 &
  local pid=$!
  for _ in $(seq 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$2/ping")" = 200 ] && { echo $pid; return; }
    sleep 0.1
  done
  echo "kiln serve did not become ready: $work/serve_$2.log" >&2; kill $pid; exit 1
}
results=$work/results.txt
: > "$results"
port=18680
for r in $(seq "$rounds"); do
  for bin in "$@"; do
    port=$((port + 1))
    pid=$(start "$bin" $port)
    for c in ${concs//,/ }; do
      b0=$(metric $port kiln_batch_size_count); n0=$(metric $port kiln_batch_size_sum)
      out=$(KILN_BENCH_BODY=$work/single.npy wrk -t $((c < 2 ? c : 2)) -c "$c" -d "${duration}s" \
              --timeout 30s --latency -s "$here/serve/bench/post_npy.lua" \
              "http://127.0.0.1:$port/invocations")
      b1=$(metric $port kiln_batch_size_count); n1=$(metric $port kiln_batch_size_sum)
      rps=$(awk '/Requests\/sec/ { print $2 }' <<< "$out")
      p50=$(awk '$1 == "50%" { print $2 }' <<< "$out"); p99=$(awk '$1 == "99%" { print $2 }' <<< "$out")
      bad=$(awk '/Non-2xx/ { print $NF }' <<< "$out"); errs=$(grep -c "Socket errors" <<< "$out" || true)
      batch=$(awk -v a="$n0" -v b="$n1" -v c="$b0" -v d="$b1" 'BEGIN { printf "%.1f", (b - a) / ((d - c) > 0 ? d - c : 1) }')
      echo "$bin round=$r c=$c rps=$rps p50=$p50 p99=$p99 batch=$batch non2xx=${bad:-0} socket_error_lines=$errs" | tee -a "$results"
    done
    kill -TERM "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  done
done
echo
echo "| binary | concurrency | requests/s (median, min-max of $rounds) | p50 (median) | p99 (median) | mean batch |"
echo "|---|---|---|---|---|---|"
for bin in "$@"; do
  for c in ${concs//,/ }; do
    grep -F "$bin round=" "$results" | grep " c=$c " | /usr/bin/python3 -c '
import sys, statistics, re
rows = [dict(kv.split("=", 1) for kv in l.split()[1:]) for l in sys.stdin]
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v); x = float(m.group(1))
    return x / 1000 if m.group(2) == "us" else x * 1000 if m.group(2) == "s" else x
r = [float(x["rps"]) for x in rows]
print("| %s | %s | %.0f (%.0f-%.0f) | %.1f ms | %.1f ms | %s |" % (sys.argv[1], sys.argv[2], statistics.median(r), min(r), max(r),
      statistics.median(ms(x["p50"]) for x in rows), statistics.median(ms(x["p99"]) for x in rows), rows[-1]["batch"]))
' "$bin" "$c"
  done
done
if [ "$soak" -gt 0 ]; then
  port=$((port + 1))
  pid=$(start "$1" $port)
  echo; echo "soak: $1, ${soak} s at concurrency 64; RSS (MiB) every 5 s:"
  (for _ in $(seq $((soak / 5))); do sleep 5; awk '/VmRSS/ { printf "%d ", $2 / 1024 }' /proc/$pid/status; done; echo) &
  sampler=$!
  KILN_BENCH_BODY=$work/single.npy wrk -t 2 -c 64 -d "${soak}s" --timeout 30s --latency \
    -s "$here/serve/bench/post_npy.lua" "http://127.0.0.1:$port/invocations" | grep -E "Requests/sec|Non-2xx|Socket|50%|99%|requests in"
  wait $sampler
  kill -TERM "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
fi
