#!/usr/bin/env python3
"""Reference logits from Hugging Face transformers, for eli's parity tests.

    python3 tools/hf_reference.py tiny OUT_DIR     # the committed tests/data/hf_tiny
    python3 tools/hf_reference.py gpt2 OUT_DIR     # GPT-2 124M shape, random init (GPU check)

Saves a random-init GPT2LMHeadModel with save_pretrained (config.json + model.safetensors),
and OUT_DIR/reference.safetensors holding, for each sequence i, `ids_i` (int64 [T]) and
`logits_i` (fp32 [T, vocab]) computed in fp32 (and `logits_fp16_i` in fp16 on CUDA).
"""
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

mode, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
if mode == "tiny":
    cfg = GPT2Config(vocab_size=1000, n_positions=64, n_embd=64, n_layer=2, n_head=2,
                     bos_token_id=999, eos_token_id=999)
    seqs = [[5], [17, 3, 999, 0, 42, 42, 7], list(range(100, 160, 3))]
elif mode == "gpt2":
    cfg = GPT2Config()  # 124M
    g = torch.Generator().manual_seed(1)
    seqs = [[15496, 995], torch.randint(0, 50257, (37,), generator=g).tolist(),
            torch.randint(0, 50257, (300,), generator=g).tolist()]
else:
    raise SystemExit("mode: tiny | gpt2")

model = GPT2LMHeadModel(cfg).eval()
# Random init gives LayerNorm weight 1 / bias 0; perturb them so the test sees their use.
with torch.no_grad():
    for n, p in model.named_parameters():
        if "ln" in n:
            p.add_(torch.randn_like(p) * 0.1)
os.makedirs(out, exist_ok=True)
model.save_pretrained(out, safe_serialization=True)
tensors = {}
dev = "cuda" if torch.cuda.is_available() else "cpu"
m32 = model.to(dev).float()
with torch.no_grad():
    for i, s in enumerate(seqs):
        ids = torch.tensor([s], device=dev)
        tensors[f"ids_{i}"] = ids[0].cpu()
        tensors[f"logits_{i}"] = m32(ids).logits[0].float().cpu().contiguous()
    if dev == "cuda" and mode != "tiny":
        m16 = model.half()
        for i, s in enumerate(seqs):
            ids = torch.tensor([s], device=dev)
            tensors[f"logits_fp16_{i}"] = m16(ids).logits[0].float().cpu().contiguous()
save_file(tensors, os.path.join(out, "reference.safetensors"))
print("saved", out, sorted(tensors))
