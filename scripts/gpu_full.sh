#!/usr/bin/env bash
# One GPU-machine run over the whole tree: build everything, all GPU tests (with the HF 124M
# parity reference), end-to-end decode vs HF transformers (scripts/peer_compare.sh), and the
# main job on CUDA (comprehensive_benchmark, with its cache sweep: 124M shape, batch 32, contexts
# up to 4096).
#   scripts/gpu_full.sh              (repo root, with .gpu-debs carried; logs: scripts/gpu_env.sh)
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
export PYTHONUNBUFFERED=1
R=$PWD
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=$TP;/tmp/deps/usr" \
  -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc -DELI_BUILD_EXAMPLES=ON > "$LOG/configure.log" 2>&1 || { tail -30 "$LOG/configure.log"; exit 1; }
cmake --build build-gpu -j16 -- -k 0 > "$LOG/build.log" 2>&1 || { grep -E "error|FAILED" "$LOG/build.log" | head -40; }
stamp "build done"
python3 tools/hf_reference.py gpt2 /tmp/hf_gpt2 > "$LOG/hf_reference.log" 2>&1 || tail "$LOG/hf_reference.log"
ELI_HF_GPT2_DIR=/tmp/hf_gpt2 timeout 240 build-gpu/tests/eli_gpu_tests > "$LOG/gpu_tests.log" 2>&1
echo "gpu tests rc=$?"; grep -E "^\[  (FAILED|PASSED|SKIPPED)|parity|Failure" "$LOG/gpu_tests.log" | head -30
stamp "tests done"
SKIP_HF_DEFAULT=${SKIP_HF_DEFAULT:-1} NO_BUILD=1 bash scripts/peer_compare.sh build-gpu "$LOG/peer" 2>&1 | tail -20
stamp "speed done"
mkdir -p /tmp/cb && (cd /tmp/cb && timeout 400 $R/build-gpu/comprehensive_benchmark --time-budget 60 \
  --markdown results/comprehensive.md > "$LOG/comprehensive_cuda.log" 2>&1; echo "comprehensive rc=$?"; tail -30 "$LOG/comprehensive_cuda.log" | cut -c1-170; \
  cp results/comprehensive*.json results/comprehensive*.csv results/comprehensive.md "$LOG/" 2>/dev/null)
stamp "all done"
