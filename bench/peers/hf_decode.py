#!/usr/bin/env python3
"""HF transformers decode speed for a GPT-2 shape (random weights, fp16, CUDA): the peer that
eli's decode_speed is compared with on the same card (scripts/peer_compare.sh runs both).

    python3 bench/peers/hf_decode.py --shape gpt2 --points 1x128:256,32x896:128 --json hf.json

A point is BATCHxPROMPT:NEW. Per-step time = (T(NEW tokens) - T(n1 tokens)) / (NEW - n1) for
greedy generate with min_new_tokens = max_new_tokens, so prefill and the fixed cost of a call
cancel; median over --reps. Two caches: the default dynamic cache (eager) and the static cache,
which transformers compiles itself; every timed length is generated twice before timing so
compilation and CUDA-graph capture stay out of the numbers.

Also prints the card, the device-to-device copy bandwidth (1 GiB fp16, read + write bytes) and
the weight-read floor of the shape: the time a decode step needs just to stream the weights
once at that bandwidth.
"""
import argparse
import json
import statistics
import time

import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

SHAPES = {  # n_layer, n_embd, n_head
    "gpt2": (12, 768, 12),
    "gpt2-medium": (24, 1024, 16),
    "gpt2-large": (36, 1280, 20),
    "gpt2-xl": (48, 1600, 25),
}


def parse_points(text):
    points = []
    for item in text.split(","):
        try:
            bp, new = item.split(":")
            b, plen = bp.split("x")
            points.append((int(b), int(plen), int(new)))
        except ValueError:
            raise SystemExit(f"--points: '{item}' is not BATCHxPROMPT:NEW (e.g. 1x128:256)")
    return points


def copy_bandwidth(reps=10):
    """Bytes read + written per second of a plain 1 GiB device-to-device copy: the practical
    streaming limit that the weight-read floor is measured against."""
    n = (1 << 30) // 2
    src = torch.empty(n, dtype=torch.float16, device="cuda").normal_()
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(reps):
        t0 = torch.cuda.Event(enable_timing=True)
        t1 = torch.cuda.Event(enable_timing=True)
        t0.record()
        dst.copy_(src)
        t1.record()
        t1.synchronize()
        times.append(t0.elapsed_time(t1) / 1e3)
    del src, dst
    torch.cuda.empty_cache()
    return 2 * n * 2 / statistics.median(times)


def prompt_ids(batch, plen, vocab):
    # The same ids as eli's decode_speed, so both sides decode the same prompts.
    rows = [[(t * 7919 + b * 104729 + 13) % vocab for t in range(plen)] for b in range(batch)]
    return torch.tensor(rows, dtype=torch.long, device="cuda")


def timed_generate(model, ids, n, impl):
    kw = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0,
              attention_mask=torch.ones_like(ids))
    if impl == "static":
        kw["cache_implementation"] = "static"
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.no_grad():
        model.generate(ids, **kw)
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def ms_per_step(model, ids, n1, n2, impl, reps):
    # n2 first: if the static cache is kept between calls it is then sized for both lengths,
    # and each length is compiled/captured before it is timed either way.
    for n in (n2, n2, n1, n1):
        timed_generate(model, ids, n, impl)
    per = []
    for _ in range(reps):
        t1 = timed_generate(model, ids, n1, impl)
        t2 = timed_generate(model, ids, n2, impl)
        per.append((t2 - t1) / (n2 - n1) * 1e3)
    return statistics.median(per)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", default="gpt2", choices=sorted(SHAPES))
    p.add_argument("--n-positions", type=int, default=1024)
    p.add_argument("--points", default="1x128:256,32x896:128", help="BATCHxPROMPT:NEW,...")
    p.add_argument("--n1", type=int, default=0,
                   help="the shorter generation length (default NEW/8, at least 1)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--skip-default", action="store_true",
                   help="only the static cache (the eager dynamic cache is slow at big shapes)")
    p.add_argument("--json", help="write the records (a JSON list) here")
    args = p.parse_args()

    gpu = torch.cuda.get_device_name()
    print(f"gpu: {gpu}  torch {torch.__version__}  transformers {transformers.__version__}",
          flush=True)
    bw = copy_bandwidth()
    print(f"device-to-device copy: {bw / 1e9:.1f} GB/s (read + write, 1 GiB fp16)", flush=True)

    n_layer, n_embd, n_head = SHAPES[args.shape]
    cfg = GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head,
                     n_positions=args.n_positions)
    torch.manual_seed(0)
    # Initialised on the card: the CPU init of the 1.5B shape alone takes about a minute.
    with torch.device("cuda"):
        model = GPT2LMHeadModel(cfg)
    model = model.half().eval()
    # The position table is only indexed; every other weight (the tied wte in full, through
    # the LM head) is streamed once per decode step.
    weight_bytes = sum(q.numel() * q.element_size() for name, q in model.named_parameters()
                       if "wpe" not in name)
    floor_ms = weight_bytes / bw * 1e3
    attn = getattr(model.config, "_attn_implementation", "?")
    print(f"shape {args.shape}: {weight_bytes / 1e6:.1f} MB of fp16 weights read per step, "
          f"weight-read floor {floor_ms:.3f} ms/step; attention '{attn}'", flush=True)

    records = [dict(shape=args.shape, batch=None, prompt=None, new_tokens=None,
                    impl="weight_read_floor", ms_per_step=floor_ms, weight_bytes=weight_bytes,
                    copy_gbps=bw / 1e9, gpu=gpu)]

    def save():
        if args.json:
            with open(args.json, "w") as f:
                json.dump(records, f, indent=1)

    save()
    impls = ["static"] if args.skip_default else ["default", "static"]
    print(f"{'impl':10} {'batch':>6} {'prompt':>7} {'new':>5} {'ms/step':>10}", flush=True)
    for b, plen, n2 in parse_points(args.points):
        n1 = args.n1 if args.n1 > 0 else max(1, n2 // 8)
        for impl in impls:
            rec = dict(shape=args.shape, batch=b, prompt=plen, new_tokens=n2, impl=impl,
                       ms_per_step=None, n1=n1, reps=args.reps, gpu=gpu)
            try:
                if not n1 < n2:
                    raise ValueError(f"n1 = {n1} must be below the new tokens {n2}")
                if plen + n2 > args.n_positions:
                    raise ValueError(f"prompt + new = {plen + n2} > n_positions {args.n_positions}")
                ids = prompt_ids(b, plen, cfg.vocab_size)
                rec["ms_per_step"] = ms_per_step(model, ids, n1, n2, impl, args.reps)
                print(f"{impl:10} {b:6d} {plen:7d} {n2:5d} {rec['ms_per_step']:10.3f}", flush=True)
            except Exception as e:  # report it and go on with the other points
                rec["error"] = f"{type(e).__name__}: {e}"
                print(f"{impl:10} {b:6d} {plen:7d} {n2:5d} failed: {rec['error']}", flush=True)
            records.append(rec)
            save()
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
