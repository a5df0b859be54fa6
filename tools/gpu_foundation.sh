#!/usr/bin/env bash
# GPU-machine run for the foundation numbers: parity with HF transformers at the GPT-2 124M
# shape (fp32 and fp16) and decode ms/step at batch 1 and 32, eli next to HF in the same run.
# Assumes build-gpu/ is already built (scripts/gpu_check.sh or a cmake --build of all targets).
set -uo pipefail
BUILD=${BUILD:-build-gpu}
LOG=${OUT:-$BUILD/logs}
mkdir -p "$LOG"
export LD_LIBRARY_PATH="/tmp/deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$LOG/gpu.txt"
python3 tools/hf_reference.py gpt2 /tmp/hf_gpt2 > "$LOG/hf_reference.log" 2>&1 || tail "$LOG/hf_reference.log"
ELI_HF_GPT2_DIR=/tmp/hf_gpt2 timeout 180 "$BUILD/tests/eli_gpu_tests" --gtest_filter='GpuHFParity.*' \
  2>&1 | tee "$LOG/parity.log" | grep -E "parity|OK|FAILED|Failure"
{
  echo "== eli decode_speed (random:gpt2, fp16) =="
  timeout 150 "$BUILD/decode_speed" --model random:gpt2 --device cuda --batch 1 --prompt-len 128 \
    --steps 64 --methods full_cache,quant_int8,quant_int4,quant_mixed,paged_attention,sliding_window,chunked_cache
  timeout 150 "$BUILD/decode_speed" --model random:gpt2 --device cuda --batch 32 --prompt-len 896 \
    --steps 64 --methods full_cache,quant_int8,quant_int4,quant_mixed,paged_attention
  echo "== HF transformers (same card, same run) =="
  timeout 240 python3 bench/peers/hf_decode.py --points 1x128:80,32x896:80 --n1 16
} 2>&1 | tee "$LOG/decode_speed.log"
