#!/usr/bin/env bash
# GPU-machine run for the decode step: build the GPU tests and decode_speed, run the tests
# (GTEST_FILTER narrows them), then ms per decode step of each method at the given points, and
# optionally the per-kernel GPU time of a few steps under Nsight Compute (PROFILE).
#   scripts/gpu_decode.sh            (repo root, with .gpu-debs carried; logs: scripts/gpu_env.sh)
# Env: GTEST_FILTER, SKIP_TESTS=1, POINTS ("batch:prompt:steps:model:methods" list, ';'-separated)
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=$TP;/tmp/deps/usr" \
  -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc -DELI_BUILD_EXAMPLES=ON \
  -DELI_BUILD_BENCHMARKS=OFF > "$LOG/configure.log" 2>&1 || { tail -30 "$LOG/configure.log"; exit 1; }
cmake --build build-gpu -j"$(nproc)" --target eli_gpu_tests decode_speed ${EXTRA_TARGETS:-} \
  > "$LOG/build.log" 2>&1 || { grep -E "error|FAILED" -A3 "$LOG/build.log" | head -60; exit 1; }
stamp "built"
if [ -z "${SKIP_TESTS:-}" ]; then
  timeout 400 build-gpu/tests/eli_gpu_tests --gtest_filter="${GTEST_FILTER:-*}" > "$LOG/gpu_tests.log" 2>&1
  echo "gpu tests rc=$?"
  grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|differs|Expected|Which is|error" "$LOG/gpu_tests.log" | head -40
  stamp "tests done"
fi
POINTS=${POINTS:-"1:128:256:random:gpt2:full_cache,no_cache,quant_int4;32:896:128:random:gpt2:full_cache,quant_int8,quant_int4"}
IFS=';' read -ra PTS <<< "$POINTS"
for pt in "${PTS[@]}"; do
  IFS=':' read -r b p s m1 m2 methods <<< "$pt"
  timeout 200 build-gpu/decode_speed --model "$m1:$m2" --batch "$b" --prompt-len "$p" --steps "$s" \
    --reps 3 --methods "$methods" ${SPEED_ARGS:-} 2>&1 | tee -a "$LOG/decode_speed.log"
done
if [ -n "${PROFILE:-}" ]; then
  # Per-kernel GPU time of decode steps under ncu (serialized: durations, not the overlap).
  # PROFILE="batch:prompt:method[:model]" (model random:gpt2 unless given, e.g. random:gpt2-xl);
  # the prefill and the eager warm-up step are skipped by --launch-skip (NCU_SKIP), then
  # NCU_COUNT kernels are captured.
  IFS=':' read -r pb pp pm pm1 pm2 <<< "$PROFILE"
  pmodel="${pm1:-random}:${pm2:-gpt2}"
  NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
  timeout 300 "$NCU" --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv --page raw \
    --launch-skip "${NCU_SKIP:-600}" --launch-count "${NCU_COUNT:-500}" \
    build-gpu/decode_speed --model "$pmodel" --batch "$pb" --prompt-len "$pp" --steps 12 --reps 1 \
    --methods "$pm" > "$LOG/ncu.csv" 2> "$LOG/ncu.err"
  echo "ncu rc=$?"; tail -3 "$LOG/ncu.err"
  python3 - "$LOG/ncu.csv" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 5]
hdr = rows[0]; ki = hdr.index("Kernel Name"); ti = hdr.index("gpu__time_duration.sum")
agg = collections.defaultdict(lambda: [0, 0.0])
n = 0; tot = 0.0
for r in rows[2:]:
    try: t = float(r[ti].replace(",", ""))
    except ValueError: continue
    name = r[ki][:90]; agg[name][0] += 1; agg[name][1] += t; n += 1; tot += t
print(f"{n} kernels, {tot/1e3:.1f} us total ({tot/max(n,1):.0f} ns avg)")
for name, (c, t) in sorted(agg.items(), key=lambda kv: -kv[1][1])[:25]:
    print(f"{c:5d} {t/1e3:9.1f} us {t/c:8.0f} ns  {name}")
PY
fi
stamp "done"
