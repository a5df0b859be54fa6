#!/usr/bin/env bash
# The GPU tests under compute-sanitizer: memcheck (out-of-bounds and misaligned accesses),
# racecheck (shared-memory hazards), initcheck (reads of device memory nothing wrote) and
# synccheck (barriers), with PYTORCH_NO_CUDA_MEMORY_CACHING=1 so that every tensor is its own
# allocation (an overrun is not hidden inside a cached block) and the small shapes of the
# kernel tests (ELI_GPU_TEST_QUICK=1). The tools run side by side on the one GPU.
#   scripts/gpu_sanitize.sh [BUILD]      (BUILD holds tests/eli_gpu_tests; default build-gpu)
# Env: TOOLS (default "memcheck racecheck initcheck synccheck"), FILTER_<tool> (gtest filter),
# SAN_TIMEOUT (seconds per tool, default 420). Logs in $OUT (or /tmp/out). Exit 1 on a finding.
set -uo pipefail
BUILD=${1:-build-gpu}
LOG=${OUT:-/tmp/out}
mkdir -p "$LOG"
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
[ -x "$SAN" ] || { echo "compute-sanitizer not found" >&2; exit 1; }
TESTS="$BUILD/tests/eli_gpu_tests"
# Everything but the HF parity tests (they need a reference directory) and the out-of-memory
# test (it asks the allocator for more than the card holds, on purpose).
ALL='*-GpuHFParity.*:GpuCacheMemory.*'
: "${FILTER_memcheck:=$ALL}"
: "${FILTER_initcheck:=$ALL}"
# The kernels that share memory between threads, and the graph-replayed decode step.
: "${FILTER_racecheck:=AttentionCuda.*:LayerFused*:DecodeGraph*:RaggedCuda*GraphStep*}"
: "${FILTER_synccheck:=AttentionCuda.*:LayerFused*:QuantCuda.*}"
declare -A ARGS=(
  [memcheck]="--leak-check no"
  [racecheck]="--racecheck-report hazard"
  [initcheck]="--track-unused-memory no"
  [synccheck]=""
)
status=0
pids=()
for tool in ${TOOLS:-memcheck racecheck initcheck synccheck}; do
  filter_var="FILTER_$tool"
  # shellcheck disable=SC2086
  (PYTORCH_NO_CUDA_MEMORY_CACHING=1 ELI_GPU_TEST_QUICK=1 timeout "${SAN_TIMEOUT:-420}" \
    "$SAN" --tool "$tool" ${ARGS[$tool]} --error-exitcode 9 "$TESTS" \
    --gtest_filter="${!filter_var}" >"$LOG/sanitize_$tool.log" 2>&1
   echo $? >"$LOG/sanitize_$tool.rc") &
  pids+=($!)
done
wait "${pids[@]}"
for tool in ${TOOLS:-memcheck racecheck initcheck synccheck}; do
  rc=$(cat "$LOG/sanitize_$tool.rc")
  filter_var="FILTER_$tool"
  tests=$(grep -cE "^\[       OK \]" "$LOG/sanitize_$tool.log")
  failed=$(grep -cE "^\[  FAILED  \] [A-Za-z]" "$LOG/sanitize_$tool.log")
  summary=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$LOG/sanitize_$tool.log" | tail -1)
  echo "$tool: rc=$rc, $tests tests passed, $failed failed, ${summary:-no summary} (filter ${!filter_var})"
  if [ "$rc" != 0 ]; then
    status=1
    grep -E "^=========" "$LOG/sanitize_$tool.log" | grep -vE "^========= *$" | head -30
  fi
done
exit $status
