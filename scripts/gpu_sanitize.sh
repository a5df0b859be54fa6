#!/usr/bin/env bash
# The GPU tests under compute-sanitizer: memcheck (out-of-bounds and misaligned accesses),
# racecheck (shared-memory hazards), initcheck (reads of device memory nothing wrote) and
# synccheck (barriers), with PYTORCH_NO_CUDA_MEMORY_CACHING=1 so that every tensor is its own
# allocation (an overrun is not hidden inside a cached block) except where a CUDA graph is
# captured, and the small shapes of the kernel tests (ELI_GPU_TEST_QUICK=1). The runs go side
# by side on the one GPU.
#   scripts/gpu_sanitize.sh [BUILD]      (BUILD holds tests/eli_gpu_tests; default build-gpu)
# Env: TOOLS (default "memcheck racecheck initcheck synccheck"), FILTER_<tool> and
# FILTER_<tool>_graph (gtest filters), SAN_TIMEOUT (seconds per run, default 1200),
# SAN_SHARDS (each run split into that many gtest shards side by side, default 1: memcheck is
# bound by the host, ~25 s a graph test). Logs: scripts/gpu_env.sh. Exit 1 on a finding or a
# failed test.
set -uo pipefail
BUILD=${1:-build-gpu}
source "$(dirname "$0")/gpu_env.sh"
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
[ -x "$SAN" ] || { echo "compute-sanitizer not found" >&2; exit 1; }
TESTS="$BUILD/tests/eli_gpu_tests"
# The CUDA-graph tests capture the decode step, which needs the caching allocator (a capture
# may not call cudaMalloc / cudaFree; eli runs the steps eagerly when it is off): they run with
# the allocator on, every other test with it off. Left out: the HF parity tests (they need a
# reference directory) and the out-of-memory test (it asks for more than the card holds).
# job = tool|allocator (nocache / cache)|gtest filter. The cache tests and the graph tests run
# every method under memcheck; initcheck and racecheck (10-50x slower) take a few of them.
KERNELS='AttentionCuda.*:LayerFused*:QuantCuda.*'
JOBS=(
  "memcheck|nocache|${FILTER_memcheck:-$KERNELS:*CacheCuda.*}"
  "memcheck|cache|${FILTER_memcheck_graph:-*DecodeGraph*:*RaggedCuda*}"
  "initcheck|nocache|${FILTER_initcheck:-$KERNELS}"
  "initcheck|cache|${FILTER_initcheck_graph:-*DecodeGraph.*/quant_int4:*DecodeGraph.*/chunked_cache:*RaggedCuda.GraphStep*/paged_attention}"
  "racecheck|nocache|${FILTER_racecheck:-AttentionCuda.*:LayerFused*}"
  "racecheck|cache|${FILTER_racecheck_graph:-*DecodeGraph.*/quant_int4:*RaggedCuda.GraphStep*/paged_attention}"
  "synccheck|nocache|${FILTER_synccheck:-$KERNELS}"
)
# A finding counts against eli when it is in one of eli's kernels (eli::cuda::...). Others are
# listed apart: racecheck reports hazards inside cuBLAS's own kernels (nvjet*, the reference
# products of some tests), and initcheck flags torch kernels that read what a cuBLAS product
# wrote (on Hopper, seemingly writes the tool does not track). Leaving cuBLAS's kernels out with
# --kernel-name-exclude made racecheck fail with an internal error (CUDA 13.0).
declare -A ARGS=([memcheck]="--leak-check no" [initcheck]="" [synccheck]=""
                 [racecheck]="--racecheck-report hazard")
TOOLS=${TOOLS:-memcheck racecheck initcheck synccheck}
SHARDS=${SAN_SHARDS:-1}
rm -f "$LOG"/sanitize_*  # the verdicts below read every shard's log found there
status=0
pids=()
names=()
for job in "${JOBS[@]}"; do
  IFS='|' read -r tool alloc filter <<< "$job"
  [[ " $TOOLS " == *" $tool "* ]] || continue
  name="${tool}_$alloc"
  names+=("$name|$filter")
  for ((shard = 0; shard < SHARDS; ++shard)); do
    # shellcheck disable=SC2086
    (if [ "$alloc" = nocache ]; then export PYTORCH_NO_CUDA_MEMORY_CACHING=1; fi
     GTEST_TOTAL_SHARDS=$SHARDS GTEST_SHARD_INDEX=$shard ELI_GPU_TEST_QUICK=1 \
       timeout "${SAN_TIMEOUT:-1200}" "$SAN" --tool "$tool" ${ARGS[$tool]} --print-limit 100000 \
       --error-exitcode 9 "$TESTS" --gtest_filter="$filter" >"$LOG/sanitize_${name}_$shard.log" 2>&1
     echo $? >"$LOG/sanitize_${name}_$shard.rc") &
    pids+=($!)
  done
done
wait "${pids[@]}"
for entry in "${names[@]}"; do
  IFS='|' read -r name filter <<< "$entry"
  f="$LOG/sanitize_$name.log"
  cat "$LOG/sanitize_${name}"_[0-9]*.log > "$f"
  # The shards' exit codes: a timeout (124) first, else the first that is not 0.
  rcs=$(cat "$LOG/sanitize_${name}"_[0-9]*.rc)
  if grep -qx 124 <<< "$rcs"; then rc=124; else rc=$(grep -vx 0 <<< "$rcs" | head -1); fi
  rc=${rc:-0}
  ok=$(grep -cE "^\[       OK \]" "$f")
  failed=$(grep -cE "^\[  FAILED  \] .*\([0-9]+ ms\)$" "$f")
  # The kernel of each finding: the first "at" line after the finding's header.
  sites=$(awk '/^========= (Error|Invalid|Uninitialized|Barrier|Warning)/ {want = 1; next}
               want && /^=========     at / {sub(/^=========     at /, ""); sub(/\+0x[0-9a-f]+/, "");
                                              print; want = 0}' "$f" | sort | uniq -c | sort -rn)
  ours=$(printf '%s\n' "$sites" | grep -c "eli::" || true)
  others=$(printf '%s\n' "$sites" | grep -v "eli::" | grep -c . || true)
  verdict=clean
  [ "$rc" = 124 ] && verdict="timed out after $ok tests"
  [ "$ours" != 0 ] && verdict="FINDINGS in eli kernels"
  [ "$failed" != 0 ] && verdict="FAILED tests"
  grep -q "Internal Sanitizer Error" "$f" && verdict="sanitizer internal error"
  echo "$name: $verdict ($ok tests passed, $failed failed; distinct sites: $ours in eli kernels, $others elsewhere) [$filter]"
  [ "$verdict" = clean ] || status=1
  if [ -n "$sites" ]; then printf '%s\n' "$sites" | head -8 | cut -c1-200 | sed 's/^/    /'; fi
done
exit $status
