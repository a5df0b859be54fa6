#!/usr/bin/env bash
# eli decode_speed next to HF transformers' generate, same card, same run (GPT-2 124M, fp16).
BUILD=${BUILD:-build-gpu}
nvidia-smi --query-gpu=name --format=csv,noheader
echo "== eli decode_speed (random:gpt2, fp16) =="
timeout 120 "$BUILD/decode_speed" --model random:gpt2 --device cuda --batch 1 --prompt-len 128 \
  --steps 64 --methods full_cache,quant_int8,quant_int4,quant_mixed,paged_attention,sliding_window,chunked_cache
timeout 120 "$BUILD/decode_speed" --model random:gpt2 --device cuda --batch 32 --prompt-len 896 \
  --steps 64 --methods full_cache,quant_int8,quant_int4,quant_mixed,paged_attention,sliding_window,chunked_cache
echo "== HF transformers (same card, same run) =="
timeout 200 python3 bench/peers/hf_decode.py --points 1x128:80,32x896:80 --n1 16
