#!/usr/bin/env bash
# The GPU tests under compute-sanitizer: memcheck (out-of-bounds and misaligned accesses),
# racecheck (shared-memory hazards), initcheck (reads of device memory nothing wrote) and
# synccheck (barriers), with PYTORCH_NO_CUDA_MEMORY_CACHING=1 so that every tensor is its own
# allocation (an overrun is not hidden inside a cached block) except where a CUDA graph is
# captured, and the small shapes of the kernel tests (ELI_GPU_TEST_QUICK=1). The runs go side
# by side on the one GPU.
#   scripts/gpu_sanitize.sh [BUILD]      (BUILD holds tests/eli_gpu_tests; default build-gpu)
# Env: TOOLS (default "memcheck racecheck initcheck synccheck"), FILTER_<tool> and
# FILTER_<tool>_graph (gtest filters), SAN_TIMEOUT (seconds per run, default 420). Logs in $OUT
# (or /tmp/out). Exit 1 on a finding or a failed test.
set -uo pipefail
BUILD=${1:-build-gpu}
LOG=${OUT:-/tmp/out}
mkdir -p "$LOG"
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
[ -x "$SAN" ] || { echo "compute-sanitizer not found" >&2; exit 1; }
TESTS="$BUILD/tests/eli_gpu_tests"
# The CUDA-graph tests capture the decode step, which needs the caching allocator (a capture
# may not call cudaMalloc / cudaFree; eli runs the steps eagerly when it is off): they run with
# the allocator on, every other test with it off. Left out: the HF parity tests (they need a
# reference directory) and the out-of-memory test (it asks for more than the card holds).
GRAPH='DecodeGraph*:RaggedCuda*'
REST="*-$GRAPH:GpuHFParity.*:GpuCacheMemory.*"
# job = tool|allocator (nocache / cache)|gtest filter
JOBS=(
  "memcheck|nocache|${FILTER_memcheck:-$REST}"
  "memcheck|cache|${FILTER_memcheck_graph:-$GRAPH}"
  "initcheck|nocache|${FILTER_initcheck:-$REST}"
  "initcheck|cache|${FILTER_initcheck_graph:-$GRAPH}"
  "racecheck|nocache|${FILTER_racecheck:-AttentionCuda.*:LayerFused*}"
  "racecheck|cache|${FILTER_racecheck_graph:-DecodeGraph*:RaggedCuda*GraphStep*}"
  "synccheck|nocache|${FILTER_synccheck:-AttentionCuda.*:LayerFused*:QuantCuda.*}"
)
declare -A ARGS=([memcheck]="--leak-check no" [racecheck]="--racecheck-report hazard"
                 [initcheck]="" [synccheck]="")
TOOLS=${TOOLS:-memcheck racecheck initcheck synccheck}
status=0
pids=()
names=()
for job in "${JOBS[@]}"; do
  IFS='|' read -r tool alloc filter <<< "$job"
  [[ " $TOOLS " == *" $tool "* ]] || continue
  name="${tool}_$alloc"
  names+=("$name|$filter")
  # shellcheck disable=SC2086
  (if [ "$alloc" = nocache ]; then export PYTORCH_NO_CUDA_MEMORY_CACHING=1; fi
   ELI_GPU_TEST_QUICK=1 timeout "${SAN_TIMEOUT:-420}" "$SAN" --tool "$tool" ${ARGS[$tool]} \
     --error-exitcode 9 "$TESTS" --gtest_filter="$filter" >"$LOG/sanitize_$name.log" 2>&1
   echo $? >"$LOG/sanitize_$name.rc") &
  pids+=($!)
done
wait "${pids[@]}"
for entry in "${names[@]}"; do
  IFS='|' read -r name filter <<< "$entry"
  rc=$(cat "$LOG/sanitize_$name.rc")
  ok=$(grep -cE "^\[       OK \]" "$LOG/sanitize_$name.log")
  failed=$(grep -cE "^\[  FAILED  \] .*\([0-9]+ ms\)$" "$LOG/sanitize_$name.log")
  summary=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$LOG/sanitize_$name.log" | tail -1 |
    sed 's/^========= //')
  echo "$name: rc=$rc, $ok tests passed, $failed failed, ${summary:-no summary} ($filter)"
  if [ "$rc" != 0 ]; then
    status=1
    grep -E "^=========|^\[  FAILED|Failure|terminate" "$LOG/sanitize_$name.log" |
      grep -vE "^========= *$|Host Frame" | head -20
  fi
done
exit $status
