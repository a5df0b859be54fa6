#!/usr/bin/env python3
"""HF transformers decode speed for GPT-2 (random weights, fp16, CUDA), the baseline that
eli's decode_speed is compared with in the same GPU run.

    python3 tools/hf_decode_bench.py [--model-shape gpt2] [--points 1x128,32x896]

Per-step time = (T(n2 new tokens) - T(n1 new tokens)) / (n2 - n1) for greedy generate, so
prefill cancels out. Both the default (dynamic) cache in eager mode and the static cache
(which transformers compiles automatically) are measured.
"""
import argparse
import statistics
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

p = argparse.ArgumentParser()
p.add_argument("--points", default="1x128,32x896")
p.add_argument("--n1", type=int, default=16)
p.add_argument("--n2", type=int, default=80)
p.add_argument("--static", type=int, default=1)
args = p.parse_args()

torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config()).half().cuda().eval()


def timed(ids, n, impl):
    kw = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
    if impl == "static":
        kw["cache_implementation"] = "static"
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.no_grad():
        model.generate(ids, **kw)
    torch.cuda.synchronize()
    return time.perf_counter() - t0


print(f"{'impl':10} {'batch':>6} {'prompt':>7} {'ms/step':>10}")
for point in args.points.split(","):
    b, plen = (int(x) for x in point.split("x"))
    ids = torch.randint(0, 50257, (b, plen), device="cuda")
    for impl in (["dynamic", "static"] if args.static else ["dynamic"]):
        try:
            for _ in range(2):
                timed(ids, args.n2, impl)  # warm-up (and compilation for static)
            per = []
            for _ in range(3):
                t1 = timed(ids, args.n1, impl)
                t2 = timed(ids, args.n2, impl)
                per.append((t2 - t1) / (args.n2 - args.n1) * 1e3)
            print(f"{impl:10} {b:6d} {plen:7d} {statistics.median(per):10.3f}", flush=True)
        except Exception as e:  # report and go on with the other points
            print(f"{impl:10} {b:6d} {plen:7d} failed: {type(e).__name__}: {e}", flush=True)
