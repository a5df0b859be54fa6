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
  # Per-kernel GPU time and DRAM bytes of decode steps under ncu (serialized: durations, not
  # the overlap; GB/s = the kernel's DRAM bytes over its time).
  # PROFILE="batch:prompt:method[:model]" (model random:gpt2 unless given, e.g. random:gpt2-xl);
  # the prefill and the eager warm-up step are skipped by --launch-skip (NCU_SKIP), then
  # NCU_COUNT kernels are captured.
  IFS=':' read -r pb pp pm pm1 pm2 <<< "$PROFILE"
  pmodel="${pm1:-random}:${pm2:-gpt2}"
  NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
  timeout 300 "$NCU" --clock-control none --cache-control none \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum --print-units base \
    --csv --page raw \
    --launch-skip "${NCU_SKIP:-600}" --launch-count "${NCU_COUNT:-500}" \
    build-gpu/decode_speed --model "$pmodel" --batch "$pb" --prompt-len "$pp" --steps 12 --reps 1 \
    --methods "$pm" > "$LOG/ncu.csv" 2> "$LOG/ncu.err"
  echo "ncu rc=$?"; tail -3 "$LOG/ncu.err"
  python3 - "$LOG/ncu.csv" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 5]
hdr = rows[0]; ki = hdr.index("Kernel Name"); ti = hdr.index("gpu__time_duration.sum")
bi = [hdr.index(m) for m in ("dram__bytes_read.sum", "dram__bytes_write.sum") if m in hdr]
# Units are in row 1 (ns; byte, Kbyte, Mbyte...): scale bytes to bytes.
scale = {"byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "KB": 1e3, "MB": 1e6, "GB": 1e9}
def num(r, i, unit=1.0):
    return float(r[i].replace(",", "")) * unit
agg = collections.defaultdict(lambda: [0, 0.0, 0.0])
n = 0; tot = 0.0; tot_b = 0.0
for r in rows[2:]:
    try:
        t = num(r, ti)
        b = sum(num(r, i, scale.get(rows[1][i], 1)) for i in bi)
    except ValueError:
        continue
    name = r[ki][:80]; a = agg[name]; a[0] += 1; a[1] += t; a[2] += b; n += 1; tot += t; tot_b += b
print(f"{n} kernels, {tot/1e3:.1f} us total ({tot/max(n,1):.0f} ns avg), DRAM {tot_b/1e6:.1f} MB")
print(" count   us total  ns each   MB each  GB/s  kernel")
for name, (c, t, b) in sorted(agg.items(), key=lambda kv: -kv[1][1])[:25]:
    print(f"{c:5d} {t/1e3:9.1f} {t/c:9.0f} {b/c/1e6:9.2f} {b/max(t,1):5.0f}  {name}")
PY
fi
stamp "done"
