#!/usr/bin/env python3
"""Trains eli's shipped default model: a small GPT-2 (GPT-2 architecture and tokenizer) on the
King James Bible (Debian package bible-kjv, public domain), with whole books held out.

    python3 tools/prepare_kjv.py DATA            # train.txt / heldout.txt (needs `bible`)
    cp assets/tokenizer/encoder.json assets/tokenizer/vocab.bpe DATA/
    python3 tools/train_small_gpt2.py --data DATA --out OUT_DIR

Needs torch + transformers (run on the GPU machine). Writes OUT_DIR/<name>/ (config.json,
model.safetensors in fp16, vocab.json, merges.txt), OUT_DIR/loss_curve.csv and
OUT_DIR/summary.json (shape, steps, seed, held-out perplexity, sample continuations).
"""
import argparse
import json
import math
import os
import shutil
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

p = argparse.ArgumentParser()
p.add_argument("--data", required=True)
p.add_argument("--out", required=True)
p.add_argument("--name", default="kjv-gpt2-6l")
p.add_argument("--n-layer", type=int, default=6)
p.add_argument("--n-embd", type=int, default=192)
p.add_argument("--n-head", type=int, default=3)
p.add_argument("--steps", type=int, default=2400)
p.add_argument("--batch", type=int, default=16)
p.add_argument("--seq", type=int, default=1024)
p.add_argument("--lr", type=float, default=2e-3)
p.add_argument("--warmup", type=int, default=150)
p.add_argument("--eval-every", type=int, default=200)
p.add_argument("--seed", type=int, default=1234)
args = p.parse_args()

torch.manual_seed(args.seed)
dev = "cuda"
_vocab_path = os.path.join(args.data, "encoder.json")
_merges_path = os.path.join(args.data, "vocab.bpe")
_special = dict(unk_token="<|endoftext|>", bos_token="<|endoftext|>", eos_token="<|endoftext|>")
tok = GPT2TokenizerFast(vocab_file=_vocab_path, merges_file=_merges_path, **_special)
if tok.convert_tokens_to_ids("<|endoftext|>") != 50256:
    # transformers 5: __init__ no longer reads vocab_file/merges_file; pass the data itself.
    _vocab = json.load(open(_vocab_path, encoding="utf-8"))
    with open(_merges_path, encoding="utf-8") as f:
        _merges = [tuple(l.split()) for l in f.read().split("\n")[1:] if l.strip()]
    tok = GPT2TokenizerFast(vocab=_vocab, merges=_merges, **_special)
    _check = tok.encode("In the beginning God")
    _want = [_vocab["In"], _vocab["\u0120the"], _vocab["\u0120beginning"], _vocab["\u0120God"]]
    assert _check == _want, (_check, _want)
eos = tok.convert_tokens_to_ids("<|endoftext|>")
assert eos == 50256, eos


def encode_file(path):
    text = open(path, encoding="utf-8").read()
    # Chapters are separated by a blank line; mark each chapter end with <|endoftext|>.
    ids = []
    for chapter in text.split("\n\n"):
        ids.extend(tok.encode(chapter.strip() + "\n"))
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


t0 = time.time()
train = encode_file(os.path.join(args.data, "train.txt"))
held = encode_file(os.path.join(args.data, "heldout.txt"))
print(f"tokens: train {train.numel()}, heldout {held.numel()} ({time.time() - t0:.1f}s)", flush=True)

cfg = GPT2Config(vocab_size=50257, n_positions=1024, n_embd=args.n_embd, n_layer=args.n_layer,
                 n_head=args.n_head, resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1,
                 bos_token_id=eos, eos_token_id=eos)
model = GPT2LMHeadModel(cfg).to(dev)
n_params = sum(p.numel() for p in model.parameters())
print(f"params {n_params / 1e6:.2f}M", flush=True)

decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                         {"params": no_decay, "weight_decay": 0.0}],
                        lr=args.lr, betas=(0.9, 0.95), fused=True)
gen = torch.Generator().manual_seed(args.seed)
train_dev = train.to(dev)


def lr_at(step):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    frac = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


@torch.no_grad()
def heldout_ppl():
    model.eval()
    nll, n = 0.0, 0
    for s in range(0, held.numel() - 1, args.seq):
        chunk = held[s:s + args.seq + 1].to(dev)
        if chunk.numel() < 2:
            break
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(chunk[None, :-1]).logits.float()
        nll += torch.nn.functional.cross_entropy(logits[0], chunk[1:], reduction="sum").item()
        n += chunk.numel() - 1
    model.train()
    return math.exp(nll / n)


curve = []
best = (float("inf"), None, -1)
model.train()
t0 = time.time()
for step in range(args.steps):
    starts = torch.randint(0, train.numel() - args.seq - 1, (args.batch,), generator=gen)
    idx = starts[:, None] + torch.arange(args.seq + 1)[None, :]
    batch = train_dev[idx.to(dev)]
    for g in opt.param_groups:
        g["lr"] = lr_at(step)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(batch[:, :-1]).logits
    loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                                             batch[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    if step % 50 == 0 or step == args.steps - 1:
        row = {"step": step, "train_loss": loss.item(), "lr": lr_at(step),
               "elapsed_s": time.time() - t0}
        if step % args.eval_every == 0 or step == args.steps - 1:
            row["heldout_ppl"] = heldout_ppl()
            if row["heldout_ppl"] < best[0]:
                best = (row["heldout_ppl"],
                        {k: v.detach().clone() for k, v in model.state_dict().items()}, step)
        curve.append(row)
        print(json.dumps(row), flush=True)

model.load_state_dict(best[1])
final_ppl = heldout_ppl()
out_dir = os.path.join(args.out, args.name)
os.makedirs(out_dir, exist_ok=True)
model.eval()
model.half().save_pretrained(out_dir, safe_serialization=True)
shutil.copy(os.path.join(args.data, "encoder.json"), os.path.join(out_dir, "vocab.json"))
shutil.copy(os.path.join(args.data, "vocab.bpe"), os.path.join(out_dir, "merges.txt"))

samples = []
held_text = open(os.path.join(args.data, "heldout.txt"), encoding="utf-8").read().split("\n\n")
for chapter in held_text[:: max(1, len(held_text) // 4)][:4]:
    opening = " ".join(chapter.split()[:12])
    ids = torch.tensor([tok.encode(opening)], device=dev)
    with torch.no_grad():
        out = model.float().generate(ids, max_new_tokens=40, do_sample=False, pad_token_id=eos)
    samples.append({"prompt": opening, "continuation": tok.decode(out[0, ids.size(1):])})

with open(os.path.join(args.out, "loss_curve.csv"), "w") as f:
    keys = ["step", "train_loss", "lr", "elapsed_s", "heldout_ppl"]
    f.write(",".join(keys) + "\n")
    for r in curve:
        f.write(",".join(str(r.get(k, "")) for k in keys) + "\n")
summary = {"name": args.name, "config": cfg.to_dict(), "params": n_params,
           "train_tokens": train.numel(), "heldout_tokens": held.numel(), "args": vars(args),
           "best_step": best[2], "heldout_ppl_bf16_autocast": best[0],
           "heldout_ppl_final_fp32_weights_then_fp16_saved": final_ppl,
           "train_seconds": time.time() - t0, "torch": torch.__version__,
           "gpu": torch.cuda.get_device_name(), "samples": samples}
json.dump(summary, open(os.path.join(args.out, "summary.json"), "w"), indent=1)
print(json.dumps({k: summary[k] for k in ["best_step", "heldout_ppl_bf16_autocast", "params"]}))
for s in samples:
    print(s)
