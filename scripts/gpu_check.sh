#!/usr/bin/env bash
# Builds and checks the CUDA kernels on a GPU machine: configure + build (eli_gpu_tests,
# bench_kernels), run the gpu tests, the quick gpu tests under compute-sanitizer memcheck and
# the attention tests under racecheck, the kernel benchmarks, and print a summary table last
# (issue 12's targets: fractions of the copy bandwidth measured in the same run).
# Env: SKIP_MEMCHECK=1 skips the sanitizer runs; BENCH_FILTER narrows the benchmarks (regex);
# GTEST_FILTER narrows the gpu tests; PROFILE_ATTENTION="fp16 int4 ..." adds Nsight Compute
# sections of those attention variants.
# Run from the repo root. Assumes torch (pip) with CUDA, nvcc, and extra debs unpacked into
# /tmp/deps (PCRE2 headers etc.). Logs go to $OUT (if set) else build-gpu/logs.
set -uo pipefail

BUILD=${BUILD:-build-gpu}
LOG=${OUT:-$BUILD/logs}
mkdir -p "$LOG"
JOBS=$(nproc)
status=0
t_start=$(date +%s)
stamp() { echo "[gpu_check +$(( $(date +%s) - t_start ))s] $*"; }

# The GPU machine lacks the PCRE2 headers and runtime that eli links; the repo carries them as
# .gpu-debs (docs/TOOLS.md).
if compgen -G ".gpu-debs/*.deb" >/dev/null; then
  mkdir -p /tmp/deps
  for f in .gpu-debs/*.deb; do dpkg -x "$f" /tmp/deps; done
fi
TP=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
extra=()
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  extra+=("-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc")
fi

stamp "configure"
if ! cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    "-DCMAKE_PREFIX_PATH=$TP;/tmp/deps/usr" -DELI_BUILD_EXAMPLES=OFF "${extra[@]}" \
    >"$LOG/configure.log" 2>&1; then
  tail -40 "$LOG/configure.log"; echo "configure FAILED (see $LOG/configure.log)"; exit 1
fi
grep -E "ELI_WITH_CUDA|CUDA" "$BUILD/CMakeCache.txt" | grep -E "^ELI_WITH_CUDA|^CMAKE_CUDA_COMPILER:" || true

stamp "build eli_gpu_tests bench_kernels (-j$JOBS)"
if ! cmake --build "$BUILD" --target eli_gpu_tests bench_kernels -j"$JOBS" >"$LOG/build.log" 2>&1; then
  grep -E "error|FAILED" "$LOG/build.log" | head -40; echo "build FAILED (see $LOG/build.log)"; exit 1
fi

stamp "gpu tests"
export LD_LIBRARY_PATH="/tmp/deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
timeout 240 "$BUILD/tests/eli_gpu_tests" --gtest_filter="${GTEST_FILTER:-*}" --gtest_output="json:$LOG/gpu_tests.json" \
  >"$LOG/gpu_tests.log" 2>&1
rc_tests=$?
[ $rc_tests -ne 0 ] && status=1
grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|worst element" "$LOG/gpu_tests.log" | head -40

SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
rc_san=skipped
if [ -n "${SKIP_MEMCHECK:-}" ]; then
  echo "memcheck skipped (SKIP_MEMCHECK)"
elif [ -x "$SAN" ]; then
  stamp "compute-sanitizer memcheck (quick kernel tests)"
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 ELI_GPU_TEST_QUICK=1 timeout 180 "$SAN" --tool memcheck \
    --leak-check no --error-exitcode 9 "$BUILD/tests/eli_gpu_tests" \
    --gtest_filter='QuantCuda.*:AttentionCuda.*' >"$LOG/memcheck.log" 2>&1
  rc_san=$?
  [ "$rc_san" != 0 ] && status=1
  grep -E "ERROR SUMMARY|Invalid|out of bounds" "$LOG/memcheck.log" | head -10
else
  echo "compute-sanitizer not found: memcheck skipped"
fi
rc_race=skipped
if [ -z "${SKIP_MEMCHECK:-}" ] && [ -x "$SAN" ]; then
  stamp "compute-sanitizer racecheck (quick attention tests: shared-memory hazards)"
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 ELI_GPU_TEST_QUICK=1 timeout 240 "$SAN" --tool racecheck \
    --error-exitcode 9 "$BUILD/tests/eli_gpu_tests" --gtest_filter='AttentionCuda.*' \
    >"$LOG/racecheck.log" 2>&1
  rc_race=$?
  [ "$rc_race" != 0 ] && status=1
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|hazard" "$LOG/racecheck.log" | head -10
fi

stamp "kernel benchmarks"
timeout 200 "$BUILD/bench/bench_kernels" \
  --benchmark_filter="${BENCH_FILTER:-BM_(Copy|Dequant|DecodeAttention|SDPA)/}" --benchmark_min_time=0.05s \
  --benchmark_out="$LOG/bench_kernels.json" --benchmark_out_format=json \
  >"$LOG/bench_kernels.log" 2>&1
rc_bench=$?
[ $rc_bench -ne 0 ] && status=1
cat "$LOG/bench_kernels.log" | grep -E "^BM_" | head -100

if [ -n "${PROFILE_ATTENTION:-}" ]; then
  # Nsight Compute sections of the decode attention kernel at B=32, context 8192, D=64 for each
  # variant named (e.g. PROFILE_ATTENTION="fp16 int8 int4"): occupancy, stalls, throughput.
  NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
  for v in $PROFILE_ATTENTION; do
    timeout 150 "$NCU" --clock-control none --kernel-name regex:decode_attention_kernel \
      --launch-skip 3 --launch-count 1 --section SpeedOfLight --section Occupancy \
      --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis \
      --section SchedulerStats --section InstructionStats --section SourceCounters \
      "$BUILD/bench/bench_kernels" --benchmark_filter="BM_DecodeAttention/$v/B32/L8192/D64" \
      --benchmark_min_time=0.01s >"$LOG/ncu_$v.txt" 2>&1
    echo "== ncu $v rc=$?"
    # Issue-bound or memory-bound (issued warps per scheduler near 1 vs DRAM near 100%), and the
    # executed instructions (the SourceCounters section names the hottest source lines).
    grep -E "Duration|Memory Throughput|DRAM Throughput|Registers Per|Achieved Occupancy|Warp Cycles Per Issued|Issued Warp|No Eligible|Executed Instructions  |Branch Instructions  " "$LOG/ncu_$v.txt" | head -14
  done
fi

stamp "summary"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1
python3 - "$LOG/bench_kernels.json" "$LOG/gpu_tests.json" <<'PY'
import json, sys
def load(p):
    try:
        return json.load(open(p))
    except Exception as e:
        print(f"(no {p}: {e})"); return None
t = load(sys.argv[2])
if t:
    n = t.get("tests", 0); f = t.get("failures", 0); d = t.get("disabled", 0)
    skipped = sum(1 for s in t.get("testsuites", []) for c in s.get("testsuite", [])
                  if c.get("result") == "SKIPPED")
    print(f"gpu tests: {n} run, {f} failed, {skipped} skipped")
b = load(sys.argv[1])
if not b:
    sys.exit(0)
sec = {}
gbs = {}
unit = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
for r in b["benchmarks"]:
    if r.get("error_occurred"):
        print("benchmark error:", r["name"], r.get("error_message")); continue
    name = r["name"].split("/manual_time")[0]
    sec[name] = r["real_time"] * unit[r.get("time_unit", "ns")]
    gbs[name] = r.get("bytes_per_second", 0) / 1e9
rows = []
copy = gbs.get("BM_Copy/Mi/256", 0.0)
def ratio_line(label, num, den, target):
    if num in sec and den in sec:
        r = sec[den] / sec[num]
        rows.append((label, f"{sec[num]*1e6:9.1f} us", f"{sec[den]*1e6:9.1f} us", f"{r:5.2f}x", f">= {target}x", "PASS" if r >= target else "FAIL"))
    else:
        rows.append((label, "-", "-", "-", f">= {target}x", "MISSING"))
def bw_line(label, name, target):
    if name in gbs and copy > 0:
        r = gbs[name] / copy
        rows.append((label, f"{gbs[name]:7.1f} GB/s", f"copy {copy:7.1f}", f"{r*100:5.1f}%", f">= {target*100:.0f}%", "PASS" if r >= target else "FAIL"))
    else:
        rows.append((label, "-", "-", "-", f">= {target*100:.0f}%", "MISSING"))
# Issue 12's targets: effective bytes (codes + scales + minima + q + out) over the copy bandwidth
# of the same run (BM_Copy/Mi/256: read + write).
for D in (64, 128):
    tail = f"/B32/L8192/D{D}"
    fp = "BM_DecodeAttention/fp16" + tail
    for v in ("int4", "int4_g32", "int8", "mixed", "mixed_g32"):
        bw_line(f"{v} D{D} bandwidth", f"BM_DecodeAttention/{v}{tail}", 0.8)
    ratio_line(f"INT4 vs fp16 D{D}", "BM_DecodeAttention/int4" + tail, fp, 3.0)
    ratio_line(f"mixed vs fp16 D{D}", "BM_DecodeAttention/mixed" + tail, fp, 2.3)
    ratio_line(f"paged fp16 vs fp16 D{D}", "BM_DecodeAttention/paged_fp16" + tail, fp, 0.95)
    ratio_line(f"paged int4 vs int4 D{D}", "BM_DecodeAttention/paged_int4" + tail, "BM_DecodeAttention/int4" + tail, 0.95)
    ratio_line(f"fp16 vs SDPA D{D}", fp, "BM_SDPA/fp16" + tail, 1.0)
for v in ("fp16", "int4"):
    bw_line(f"{v} B1 L32768 bandwidth", f"BM_DecodeAttention/{v}/B1/L32768/D64", 0.6)
for m in (64, 256):
    for kind in ("int8_fp16", "int4_fp16", "int8_fp32", "int4_fp32"):
        d = f"BM_Dequant/{kind}/Mi/{m}"; c = f"BM_Copy/Mi/{m}"
        if d in gbs and c in gbs and gbs[c] > 0:
            r = gbs[d] / gbs[c]
            rows.append((f"dequant {kind} {m}Mi", f"{gbs[d]:7.1f} GB/s", f"copy {gbs[c]:7.1f}", f"{r*100:5.1f}%", ">= 80%", "PASS" if r >= 0.8 else "FAIL"))
print()
print(f"{'check':28} {'ours':>14} {'baseline':>14} {'ratio':>7} {'target':>8}  result")
for row in rows:
    print(f"{row[0]:28} {row[1]:>14} {row[2]:>14} {row[3]:>7} {row[4]:>8}  {row[5]}")
print()
print("decode attention time (us), H=12 D=64:")
variants = ["fp16", "int8", "int4", "mixed", "paged_fp16", "paged_int4"]
print(f"{'B/L':>10} {'SDPA':>8} " + " ".join(f"{v:>10}" for v in variants))
for B in (1, 8, 32):
    for L in (512, 2048, 8192):
        tail = f"/B{B}/L{L}/D64"
        cells = [sec.get("BM_SDPA/fp16" + tail)] + [sec.get(f"BM_DecodeAttention/{v}{tail}") for v in variants]
        print(f"{B:>4}/{L:<5} " + " ".join(f"{(c * 1e6 if c else float('nan')):>{8 if i == 0 else 10}.1f}" for i, c in enumerate(cells)))
PY
stamp "done: tests rc=$rc_tests memcheck rc=$rc_san racecheck rc=$rc_race bench rc=$rc_bench"
exit $status
