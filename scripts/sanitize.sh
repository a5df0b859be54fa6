#!/usr/bin/env bash
# The CPU test suite under AddressSanitizer + UndefinedBehaviorSanitizer (clang), then every
# libFuzzer target in fuzz/ on its seed corpus and for FUZZ_SECONDS each (default 20).
#   scripts/sanitize.sh [BUILD_DIR]        (default: build-san; scripts/test.sh runs it)
# Needs clang and libclang-rt-14-dev (scripts/setup.sh installs them). Env: FUZZ_SECONDS,
# ELI_SKIP_FUZZ=1 (tests only), ELI_SAN_EXAMPLES=1 (also build the example tools under the
# sanitizers, for scripts/fuzz_cli.py). A finding stops with its report (and the fuzzer's crash
# file).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-san}
# -O1 with line tables only: readable reports at a fraction of a -g build's compile time.
FLAGS="-O1 -gline-tables-only -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer"
FLAGS="$FLAGS -fno-sanitize-recover=undefined"
# Only what is tested: the library, the CPU tests and the fuzz targets (no kernels, benchmarks,
# and no examples unless ELI_SAN_EXAMPLES=1).
EXAMPLES=OFF
[ "${ELI_SAN_EXAMPLES:-0}" = 1 ] && EXAMPLES=ON
CC=clang CXX=clang++ cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE= \
  -DELI_BUILD_CUDA_KERNELS=OFF -DELI_BUILD_EXAMPLES=$EXAMPLES -DELI_BUILD_BENCHMARKS=OFF \
  -DELI_BUILD_FUZZERS=ON "-DCMAKE_CXX_FLAGS=$FLAGS" \
  "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined" >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
ctest --test-dir "$BUILD" --output-on-failure -j"$(nproc)" -LE gpu
[ "${ELI_SKIP_FUZZ:-0}" = 1 ] && exit 0
BIN=$(realpath "$BUILD")
for t in fuzz_safetensors fuzz_config fuzz_tokenizer_files fuzz_tokenize fuzz_spec; do
  work=$(mktemp -d)
  cp fuzz/corpus/$t/* "$work"/
  echo "== $t (${FUZZ_SECONDS:-20} s)"
  dict=()
  [ -f "fuzz/$t.dict" ] && dict=("-dict=$PWD/fuzz/$t.dict")
  (cd "$work" && "$BIN/fuzz/$t" "${dict[@]}" -max_total_time="${FUZZ_SECONDS:-20}" -rss_limit_mb=4096 \
    -max_len=65536 -print_final_stats=1 . 2>&1 | grep -E "^(#[0-9]+ +DONE|stat::number_of_executed|stat::peak|INFO: seed corpus)|ERROR|SUMMARY" || true)
  # libFuzzer exits non-zero and writes crash-*/leak-*/timeout-* on a finding.
  if compgen -G "$work/crash-*" >/dev/null || compgen -G "$work/leak-*" >/dev/null; then
    echo "$t: finding in $work"; exit 1
  fi
  rm -rf "$work"
done
echo "sanitizers and fuzzers clean"
