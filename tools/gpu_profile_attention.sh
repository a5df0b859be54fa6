#!/usr/bin/env bash
# Nsight Compute profile of the decode attention kernels at B=32, context 8192 (GPU machine).
# Usage: tools/gpu_profile_attention.sh [variant regex, default fp16|int8|int4]. Logs to $OUT.
set -uo pipefail
BUILD=${BUILD:-build-gpu}
LOG=${OUT:-$BUILD/logs}
mkdir -p "$LOG"
TP=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=$TP;/tmp/deps/usr" \
  -DELI_BUILD_EXAMPLES=OFF -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc >"$LOG/configure.log" 2>&1 || {
  tail -30 "$LOG/configure.log"; exit 1; }
cmake --build "$BUILD" --target bench_kernels -j"$(nproc)" >"$LOG/build.log" 2>&1 || {
  grep -E "error|FAILED" "$LOG/build.log" | head -30; exit 1; }
export LD_LIBRARY_PATH="/tmp/deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
for v in ${1:-fp16 int8 int4}; do
  timeout 150 "$NCU" --clock-control none --kernel-name regex:decode_attention_kernel \
    --launch-skip 3 --launch-count 1 --section SpeedOfLight --section Occupancy \
    --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis \
    --section SchedulerStats --section InstructionStats --section SourceCounters \
    "$BUILD/bench/bench_kernels" --benchmark_filter="BM_DecodeAttention/$v/B32/L8192/D64" \
    --benchmark_min_time=0.01s >"$LOG/ncu_$v.txt" 2>&1
  echo "== $v rc=$?"
  grep -E "Executed Instructions  |Duration|Memory Throughput|DRAM Throughput|Registers Per|Achieved Occupancy|Theoretical Occupancy|Block Limit|Warp Cycles Per Issued|Issued Warp|No Eligible|Stall|L2 Hit|Mem Busy|Max Bandwidth|Compute \(SM\)" "$LOG/ncu_$v.txt" | head -40
done
# SASS of the fp16-query kernels (K format x V format) for instruction counts.
OBJ=$(find "$BUILD" -name 'libeli_kernels.a' | head -1)
if [ -n "$OBJ" ] && command -v cuobjdump >/dev/null; then
  cuobjdump --dump-sass "$OBJ" >"$LOG/kernels.sass" 2>&1
  echo "sass: $(wc -l <"$LOG/kernels.sass") lines"
fi
