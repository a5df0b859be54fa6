#!/usr/bin/env bash
# Same-run A/B of two source trees on the GPU machine: both are built side by side, the new
# tree's GPU tests run, then kernel benchmarks and decode steps alternate base, new, base, new
# (REPS rounds), and a table gives each benchmark's time in both and new / base. A change is
# kept when its ratio holds across the rounds (docs/TOOLS.md).
#   scripts/gpu_ab.sh BASE_DIR NEW_DIR   (absolute paths of two trees, each a copy of the repo;
#                                         .gpu-debs carried in the current directory)
# Make the trees locally, e.g.:
#   mkdir -p .gpu-ab/base .gpu-ab/new
#   git archive main ':!assets/models' | tar -x -C .gpu-ab/base
#   git archive my-branch ':!assets/models' | tar -x -C .gpu-ab/new
# and run with carry [".gpu-debs", ".gpu-ab"]: scripts/gpu_ab.sh $PWD/.gpu-ab/base $PWD/.gpu-ab/new
# Env: BENCH_FILTER (bench_kernels regex; empty: none), POINTS (decode_speed
# "batch:prompt:steps:model:methods" list, ';'-separated; empty: none), REPS (2), GTEST_FILTER,
# SKIP_TESTS=1. Logs in $OUT (or /tmp/out).
set -uo pipefail
BASE=${1:?base tree}
NEW=${2:?new tree}
source "$(dirname "$0")/gpu_env.sh"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
BENCH_FILTER=${BENCH_FILTER-'BM_(Copy/Mi/256|SDPA/fp16/B32/L8192|DecodeAttention/(fp16|int8|int4|mixed_g32|int4_g32|paged_int4)/(B32/L8192|B1/L32768))'}
POINTS=${POINTS-'32:3968:64:random:L12-E768-H12-P4096:full_cache,quant_int8,quant_int4,quant_mixed'}
REPS=${REPS:-2}
half=$(( $(nproc) / 2 ))
for side in base new; do
  src=$BASE
  [ "$side" = new ] && src=$NEW
  # The shipped model is not in the archives: share this tree's.
  if [ ! -e "$src/assets/models" ] && [ -e assets/models ]; then
    ln -sfn "$PWD/assets/models" "$src/assets/models"
  fi
  cmake -S "$src" -B "/tmp/ab_$side" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    "-DCMAKE_PREFIX_PATH=$TP;/tmp/deps/usr" -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc \
    -DELI_BUILD_EXAMPLES=ON -DELI_BUILD_BENCHMARKS=ON > "$LOG/configure_$side.log" 2>&1 ||
    { tail -30 "$LOG/configure_$side.log"; exit 1; }
done
targets=(bench_kernels decode_speed)
(cmake --build /tmp/ab_base -j"$half" --target "${targets[@]}" > "$LOG/build_base.log" 2>&1
 echo $? > "$LOG/build_base.rc") &
cmake --build /tmp/ab_new -j"$half" --target "${targets[@]}" eli_gpu_tests \
  > "$LOG/build_new.log" 2>&1 || { grep -E "error|FAILED" -A3 "$LOG/build_new.log" | head -60; exit 1; }
stamp "new built"
if [ -z "${SKIP_TESTS:-}" ]; then
  timeout 300 /tmp/ab_new/tests/eli_gpu_tests --gtest_filter="${GTEST_FILTER:-*}" \
    > "$LOG/gpu_tests_new.log" 2>&1
  echo "new tree's gpu tests rc=$?"
  grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure" "$LOG/gpu_tests_new.log" | head -30
  stamp "tests done"
fi
wait
[ "$(cat "$LOG/build_base.rc")" = 0 ] ||
  { grep -E "error|FAILED" -A3 "$LOG/build_base.log" | head -30; exit 1; }
IFS=';' read -ra PTS <<< "$POINTS"
for ((rep = 1; rep <= REPS; ++rep)); do
  for side in base new; do
    if [ -n "$BENCH_FILTER" ]; then
      timeout 200 "/tmp/ab_$side/bench/bench_kernels" --benchmark_filter="$BENCH_FILTER" \
        --benchmark_min_time=0.05s --benchmark_format=json > "$LOG/bench_${side}_$rep.json" \
        2> "$LOG/bench_${side}_$rep.err"
    fi
    : > "$LOG/decode_${side}_$rep.txt"
    for pt in "${PTS[@]}"; do
      IFS=: read -r batch prompt steps kind model methods <<< "$pt"
      timeout 120 "/tmp/ab_$side/decode_speed" --model "$kind:$model" --batch "$batch" \
        --prompt-len "$prompt" --steps "$steps" --reps 3 --methods "$methods" 2>&1 |
        awk -v p="$batch x $prompt $model" 'NF >= 6 && $2 ~ /^[0-9]+$/ {print p, $0}' \
        >> "$LOG/decode_${side}_$rep.txt"
    done
  done
  stamp "round $rep"
done
python3 - "$LOG" "$REPS" <<'PY'
import json, os, sys
log, reps = sys.argv[1], int(sys.argv[2])
def bench(side, rep):
    p = os.path.join(log, f"bench_{side}_{rep}.json")
    if not os.path.exists(p) or os.path.getsize(p) == 0:
        return {}
    out = {}
    for b in json.load(open(p)).get("benchmarks", []):
        name = b["name"].replace("/manual_time", "")
        out[name] = (b["real_time"], b.get("bytes_per_second", 0) / 1e12)
    return out
def decode(side, rep):
    out = {}
    p = os.path.join(log, f"decode_{side}_{rep}.txt")
    for line in open(p) if os.path.exists(p) else []:
        f = line.split()
        # "<batch> x <prompt> <model> <method> <batch> <prompt> <steps> <p50> <mean> ..."
        out[f"{f[0]}x{f[2]} {f[3]} {f[4]}"] = float(f[8])
    return out
rows = {}
for rep in range(1, reps + 1):
    for side in ("base", "new"):
        for k, (t, tb) in bench(side, rep).items():
            rows.setdefault(k, {}).setdefault(side, []).append(t)
        for k, t in decode(side, rep).items():
            rows.setdefault("decode " + k + " (ms p50)", {}).setdefault(side, []).append(t)
print(f"{'benchmark':64s} {'base':>18s} {'new':>18s} {'new/base':>9s}")
for k, v in rows.items():
    b, n = v.get("base", []), v.get("new", [])
    fmt = lambda xs: " / ".join(f"{x:.4g}" for x in xs)
    ratio = f"{(sum(n) / len(n)) / (sum(b) / len(b)):.3f}" if b and n else "-"
    print(f"{k:64s} {fmt(b):>18s} {fmt(n):>18s} {ratio:>9s}")
PY
stamp end
