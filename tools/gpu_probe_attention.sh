#!/usr/bin/env bash
# Timing probes of the decode attention kernel (GPU machine): builds bench_kernels once per
# variant of CUDA flags (e.g. "-DELI_ATTN_PROBE=1": no V loop; "-DELI_ATTN_PROBE=2": no scores;
# "-DELI_ATTN_IMMA=0": INT4 K on the fp32 path) and times B=32, context 8192.
# Env: VARIANTS ('|'-separated flag sets), FILTER (bench regex), SASS=1 dumps the SASS of the
# fp16 INT4/INT4 D=64 kernels (half2 and mma values) of the first
# variant. Logs to $OUT.
set -uo pipefail
BUILD=${BUILD:-build-probe}
LOG=${OUT:-$BUILD/logs}
mkdir -p "$LOG"
TP=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
export LD_LIBRARY_PATH="/tmp/deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
FILTER=${FILTER:-'BM_DecodeAttention/(fp16|int8|int4|mixed)/B32/L8192/D64'}
IFS='|' read -r -a variants <<<"${VARIANTS:--DELI_ATTN_PROBE=0|-DELI_ATTN_PROBE=1|-DELI_ATTN_PROBE=2}"
n=0
for flags in "${variants[@]}"; do
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=$TP;/tmp/deps/usr" \
    -DELI_BUILD_EXAMPLES=OFF -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc \
    "-DCMAKE_CUDA_FLAGS=$flags" >"$LOG/configure_$n.log" 2>&1 || {
    tail -30 "$LOG/configure_$n.log"; exit 1; }
  cmake --build "$BUILD" --target bench_kernels -j"$(nproc)" >"$LOG/build_$n.log" 2>&1 || {
    grep -E "error|FAILED" "$LOG/build_$n.log" | head -30; exit 1; }
  if [ "$n" = 0 ] && [ -n "${SASS:-}" ]; then
    lib=$(realpath "$(find "$BUILD" -name libeli_kernels.a | head -1)")
    mkdir -p /tmp/sass_o && (cd /tmp/sass_o && ar x "$lib")
    for mma in 0 1; do
      /usr/local/cuda/bin/cuobjdump -sass -fun \
        "_ZN3eli4cuda6detail23decode_attention_kernelI6__halfLi64ELNS0_6FormatE4ELS4_4ELb${mma}EEEvNS0_21DecodeAttentionParamsEiPfS6_" \
        /tmp/sass_o/decode_attention_int4.cu.o >"$LOG/int4_int4_h64_mma$mma.sass" 2>&1
    done
  fi
  echo "== variant $n: $flags"
  "$BUILD/bench/bench_kernels" --benchmark_filter="$FILTER" --benchmark_min_time=0.05s 2>&1 |
    grep -E "^BM_" | sed -E 's/ +[0-9.]+ us +[0-9]+ +bytes/ bytes/'
  n=$((n + 1))
done
