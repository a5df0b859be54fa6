#!/bin/bash
# GPU-machine run: train the shipped model and make the tiny HF parity reference.
# Expects .train-data/ (train.txt, heldout.txt, encoder.json, vocab.bpe) carried along.
set -eo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/train
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
[ "${SKIP_TINY:-0}" = 1 ] || python3 tools/hf_reference.py tiny /tmp/hf_tiny
[ "${SKIP_TINY:-0}" = 1 ] || tar czf "$OUT/hf_tiny.tgz" -C /tmp hf_tiny
cp assets/eval/kjv_heldout.txt .train-data/heldout.txt
python3 tools/train_small_gpt2.py --data .train-data --out /tmp/train "$@" 2>&1 | tee "$OUT/train.log"
cp /tmp/train/loss_curve.csv /tmp/train/summary.json "$OUT/"
tar cf /tmp/model.tar -C /tmp/train kjv-gpt2-6l
split -b 15M /tmp/model.tar "$OUT/model.tar.part-"
ls -la "$OUT"
