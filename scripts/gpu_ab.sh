#!/usr/bin/env bash
# Same-run A/B of source trees on the GPU machine: a base and one or more changed trees are
# built side by side, the changed trees' GPU tests run, then kernel benchmarks and decode steps
# alternate base, new, ... (REPS rounds), and a table gives each benchmark's time in every tree
# and each tree / base. A change is kept when its ratio holds across the rounds (docs/TOOLS.md).
#   scripts/gpu_ab.sh BASE_DIR NEW_DIR [NEW_DIR...]   (absolute paths of trees, each a copy of
#                                         the repo, named by their last path component;
#                                         .gpu-debs carried in the current directory)
# Make the trees locally, e.g.:
#   mkdir -p .gpu-ab/base .gpu-ab/new
#   git archive main ':!assets/models' | tar -x -C .gpu-ab/base
#   git archive my-branch ':!assets/models' | tar -x -C .gpu-ab/new
# and run with carry [".gpu-debs", ".gpu-ab"]: scripts/gpu_ab.sh $PWD/.gpu-ab/base $PWD/.gpu-ab/new
# Builds go to /tmp/ab_<name> and are reused by a later call on the same (still warm) machine.
# Env: BENCH_FILTER (bench_kernels regex; empty: none), BENCH_ARGS (more bench_kernels flags,
# e.g. --split_sweep to time BM_DecodeAttentionSplit/... at forced split lengths), POINTS
# (decode_speed "batch:prompt:steps:model:methods" list, ';'-separated; empty: none), REPS (2),
# GTEST_FILTER, SKIP_TESTS=1, TARGETS (extra build targets). Logs: scripts/gpu_env.sh.
# Parameterized suites are named Prefix/Suite.Test/N: filter them as '*Suite*' (the per-method
# DecodeGraph, RaggedCuda, CacheCuda tests), not 'Suite.*'.
set -uo pipefail
[ $# -ge 2 ] || { echo "usage: $0 BASE_DIR NEW_DIR [NEW_DIR...]" >&2; exit 2; }
TREES=("$@")
NAMES=()
for t in "${TREES[@]}"; do NAMES+=("$(basename "$t")"); done
[ "$(printf '%s\n' "${NAMES[@]}" | sort -u | wc -l)" = $# ] ||
  { echo "the trees' names (last path components) must differ: ${NAMES[*]}" >&2; exit 2; }
source "$(dirname "$0")/gpu_env.sh"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
BENCH_FILTER=${BENCH_FILTER-'BM_(Copy/Mi/256|SDPA/fp16/B32/L8192|DecodeAttention/(fp16|int8|int4|mixed_g32|int4_g32|paged_int4)/(B32/L8192|B1/L32768))'}
POINTS=${POINTS-'32:3968:64:random:L12-E768-H12-P4096:full_cache,quant_int8,quant_int4,quant_mixed'}
REPS=${REPS:-2}
jobs=$(( $(nproc) / $# ))
[ "$jobs" -ge 1 ] || jobs=1
pids=()
for i in "${!TREES[@]}"; do
  src=${TREES[$i]} name=${NAMES[$i]}
  # The shipped model is not in the archives: share this tree's.
  if [ ! -e "$src/assets/models" ] && [ -e assets/models ]; then
    ln -sfn "$PWD/assets/models" "$src/assets/models"
  fi
  targets=(bench_kernels decode_speed ${TARGETS:-})
  [ "$i" -gt 0 ] && [ -z "${SKIP_TESTS:-}" ] && targets+=(eli_gpu_tests)
  (cmake -S "$src" -B "/tmp/ab_$name" -G Ninja -DCMAKE_BUILD_TYPE=Release \
     "-DCMAKE_PREFIX_PATH=$TP;/tmp/deps/usr" -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc \
     -DELI_BUILD_EXAMPLES=ON -DELI_BUILD_BENCHMARKS=ON > "$LOG/configure_$name.log" 2>&1 &&
   cmake --build "/tmp/ab_$name" -j"$jobs" --target "${targets[@]}" > "$LOG/build_$name.log" 2>&1
   echo $? > "$LOG/build_$name.rc") &
  pids+=($!)
done
wait "${pids[@]}"
for name in "${NAMES[@]}"; do
  [ "$(cat "$LOG/build_$name.rc" 2>/dev/null)" = 0 ] || {
    echo "build of $name failed"
    grep -E "error|FAILED" -A3 "$LOG/build_$name.log" "$LOG/configure_$name.log" | head -40
    exit 1
  }
done
stamp "built ${NAMES[*]}"
if [ -z "${SKIP_TESTS:-}" ]; then
  # One after the other: processes side by side on one GPU are time-sliced, which the
  # launch-bound tests (thousands of small steps) pay on every kernel. Session 11, four test
  # shards side by side: 30-55 s per CacheCuda.FusedDecodeMatchesCpu method, the suite did not
  # finish in 200 s.
  for name in "${NAMES[@]:1}"; do
    timeout 400 "/tmp/ab_$name/tests/eli_gpu_tests" --gtest_filter="${GTEST_FILTER:-*}" \
      > "$LOG/gpu_tests_$name.log" 2>&1
    echo "$name: gpu tests rc=$?"
    grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure" "$LOG/gpu_tests_$name.log" | head -30
  done
  stamp "tests done"
fi
IFS=';' read -ra PTS <<< "$POINTS"
for ((rep = 1; rep <= REPS; ++rep)); do
  for name in "${NAMES[@]}"; do
    if [ -n "$BENCH_FILTER" ]; then
      # shellcheck disable=SC2086
      timeout 200 "/tmp/ab_$name/bench/bench_kernels" ${BENCH_ARGS:-} --benchmark_filter="$BENCH_FILTER" \
        --benchmark_min_time=0.05s --benchmark_format=json > "$LOG/bench_${name}_$rep.json" \
        2> "$LOG/bench_${name}_$rep.err"
    fi
    : > "$LOG/decode_${name}_$rep.txt"
    for pt in "${PTS[@]}"; do
      IFS=: read -r batch prompt steps kind model methods <<< "$pt"
      timeout 120 "/tmp/ab_$name/decode_speed" --model "$kind:$model" --batch "$batch" \
        --prompt-len "$prompt" --steps "$steps" --reps 3 --methods "$methods" 2>&1 |
        awk -v p="$batch x $prompt $model" 'NF >= 6 && $2 ~ /^[0-9]+$/ {print p, $0}' \
        >> "$LOG/decode_${name}_$rep.txt"
    done
  done
  stamp "round $rep"
done
python3 - "$LOG" "$REPS" "${NAMES[@]}" <<'PY'
import json, os, sys
log, reps, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def bench(side, rep):
    p = os.path.join(log, f"bench_{side}_{rep}.json")
    if not os.path.exists(p) or os.path.getsize(p) == 0:
        return {}
    out = {}
    for b in json.load(open(p)).get("benchmarks", []):
        name = b["name"].replace("/manual_time", "")
        out[name] = b["real_time"]
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
    for side in names:
        for k, t in bench(side, rep).items():
            rows.setdefault(k, {}).setdefault(side, []).append(t)
        for k, t in decode(side, rep).items():
            rows.setdefault("decode " + k + " (ms p50)", {}).setdefault(side, []).append(t)
mean = lambda xs: sum(xs) / len(xs)
fmt = lambda xs: " / ".join(f"{x:.4g}" for x in xs)
print(f"{'benchmark':56s} " + " ".join(f"{n[:18]:>18s}" for n in names) +
      " " + " ".join(f"{(n[:12] + '/base'):>17s}" for n in names[1:]))
for k, v in rows.items():
    base = v.get(names[0], [])
    ratios = [f"{mean(v[n]) / mean(base):.3f}" if base and v.get(n) else "-" for n in names[1:]]
    print(f"{k:56s} " + " ".join(f"{fmt(v.get(n, [])):>18s}" for n in names) + " " +
          " ".join(f"{r:>17s}" for r in ratios))
PY
stamp end
