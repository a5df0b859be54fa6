#!/usr/bin/env bash
# The decode attention's split plan checked on this card: bench_kernels --split_sweep times each
# variant and point at split lengths 64 .. 1024 forced through DecodeAttentionArgs::split_len
# and at the planned length (S0), then a table per point gives the times, the fastest length,
# and the plan's time over the fastest (docs/KERNELS.md: the plan's constants were fitted to
# such a sweep on an H200; a card where "plan/best" grows needs them fitted again, as
# docs/notes/kernels_history.md session 12 did; tools/fit_split_plan.py, run last, scores the
# shipped constants on the sweep and the best of a grid around them).
#   scripts/gpu_split_sweep.sh            (GPU machine, repo root; builds build-gpu/bench_kernels)
# Env: SWEEP_FILTER (regex after BM_DecodeAttentionSplit/; the default, every variant and point,
# is 528 benchmarks, over 10 minutes on an H200: split it, e.g. '(int4|int8)/B32/' and
# '.*/B(1|8)/'), NO_BUILD=1. Logs: scripts/gpu_env.sh.
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
nvidia-smi --query-gpu=name --format=csv,noheader
if [ -z "${NO_BUILD:-}" ]; then
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=$TP;/tmp/deps/usr" \
    -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc -DELI_BUILD_BENCHMARKS=ON \
    > "$LOG/configure.log" 2>&1 &&
  cmake --build build-gpu -j"$(nproc)" --target bench_kernels > "$LOG/build.log" 2>&1 ||
    { grep -E "error|FAILED" -A3 "$LOG/build.log" "$LOG/configure.log" | head -40; exit 1; }
  stamp built
fi
build-gpu/bench/bench_kernels --split_sweep --benchmark_min_time=0.05s --benchmark_format=json \
  --benchmark_filter="BM_DecodeAttentionSplit/${SWEEP_FILTER:-.*}" > "$LOG/sweep.json" \
  2> "$LOG/sweep.err"
echo "bench_kernels rc=$?"
stamp swept
python3 - "$LOG/sweep.json" <<'PY'
import json, re, sys
rows, lens = {}, set()
for b in json.load(open(sys.argv[1])).get("benchmarks", []):
    m = re.match(r"BM_DecodeAttentionSplit/(.+)/S(\d+)", b["name"].replace("/manual_time", ""))
    if not m:
        continue
    rows.setdefault(m.group(1), {})[int(m.group(2))] = b["real_time"]
    lens.add(int(m.group(2)))
lens = sorted(s for s in lens if s > 0)
print(f"{'variant / point (us)':28s}{'plan':>8s}" + "".join(f"{s:>8d}" for s in lens) +
      f"{'best':>6s}{'plan/best':>10s}")
worst = []
for k, v in rows.items():
    forced = {s: t for s, t in v.items() if s > 0}
    if not forced:
        continue
    best = min(forced, key=forced.get)
    ratio = v.get(0, float("nan")) / forced[best]
    worst.append((ratio, k))
    print(f"{k:28s}{v.get(0, float('nan')):8.2f}" +
          "".join(f"{forced.get(s, float('nan')):8.2f}" for s in lens) + f"{best:6d}{ratio:10.3f}")
if worst:
    worst.sort(reverse=True)
    print(f"plan/best: mean {sum(r for r, _ in worst) / len(worst):.3f}, worst {worst[0][0]:.3f} "
          f"({worst[0][1]})")
PY
# The quantized kernels' constants scored on this sweep, and the best of a grid around them.
SMS=$(python3 -c 'import torch; print(torch.cuda.get_device_properties(0).multi_processor_count)')
python3 tools/fit_split_plan.py "$LOG/sweep.json" --sms "$SMS"
stamp end
