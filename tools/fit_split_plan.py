#!/usr/bin/env python3
"""Fits the quantized decode attention's split plan (cuda/attention/split_plan.h) to a split
sweep: the sweep.json that scripts/gpu_split_sweep.sh leaves in its logs (bench_kernels
--split_sweep, Google Benchmark JSON).

For each kind of kernel (INT4 V: int4, int4_g32, mixed_g32, paged_int4; INT8 V: int8) it tries
every (blocks per SM, overhead tokens, granule) of a grid, lets the model pick a length at each
swept point from the lengths the plan offers that kind, and scores the pick by its measured time
over the point's fastest measured length (1.0 = always the fastest). It prints the shipped
constants' score and the best few. Picks of a length the sweep did not time are not scored.

  python3 tools/fit_split_plan.py SWEEP_JSON [--sms 132] [--int8-blocks-per-sm 8]

--sms: the card's SM count (H100 SXM and H200: 132). --int8-blocks-per-sm: the INT8-V kernel's
resident blocks per SM (the occupancy calculator's; 8 at D = 64 on Hopper).
"""
import argparse
import json
import math
import os
import re
import sys

HEADER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cuda", "attention",
                      "split_plan.h")


def shipped_constants():
    """The plan's constants and lengths as cuda/attention/split_plan.h has them."""
    text = open(HEADER).read()

    def const(name):
        return int(re.search(rf"constexpr int {name} = (\d+);", text).group(1))

    def lens(name):
        body = re.search(rf"constexpr int {name}\[\] = {{([^}}]*)}};", text).group(1)
        return tuple(int(x) for x in body.split(","))

    overhead, granule = const("kSplitOverheadTokens"), const("kSplitGranule")
    return ({"int4v": (const("kIssueBoundBlocksPerSm"), overhead, granule),
             "int8v": (None, overhead, granule)},  # (blocks per SM, overhead, granule)
            {"int4v": lens("kSplitLensIssueBound"), "int8v": lens("kSplitLensResident")})


SHIPPED, LENS = shipped_constants()
KIND = {"int4": "int4v", "int4_g32": "int4v", "mixed_g32": "int4v", "paged_int4": "int4v",
        "int8": "int8v"}


def load(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"{path}: not a Google Benchmark JSON file ({e})")
    points = {}
    for b in data.get("benchmarks", []) if isinstance(data, dict) else []:
        m = re.match(r"BM_DecodeAttentionSplit/(\w+)/B(\d+)/L(\d+)/D(\d+)/S(\d+)",
                     b["name"].replace("/manual_time", ""))
        if not m or m.group(1) not in KIND or int(m.group(5)) == 0:
            continue
        key = (m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)))
        points.setdefault(key, {})[int(m.group(5))] = b["real_time"]
    return points


def cost(rows, length, s, slots, overhead, granule):
    splits = math.ceil(length / s)
    tokens = min(s, length)
    return math.ceil(rows * splits / slots) * (math.ceil(tokens / granule) * granule + overhead)


def score(points, kind, slots_per_sm, overhead, granule, sms):
    ratios = []
    for (variant, b, length, d), times in points.items():
        if KIND[variant] != kind:
            continue
        rows = b * (12 if d == 64 else 8)  # bench_kernels: H = 12 at D = 64, 8 at D = 128
        pick = min(LENS[kind], key=lambda s: cost(rows, length, s, sms * slots_per_sm, overhead,
                                                 granule))  # min keeps the first: the longest
        if pick in times:
            ratios.append(times[pick] / min(times.values()))
    if not ratios:
        return None
    return sum(ratios) / len(ratios), max(ratios), len(ratios)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sweep_json")
    ap.add_argument("--sms", type=int, default=132)
    ap.add_argument("--int8-blocks-per-sm", type=int, default=8)
    a = ap.parse_args()
    points = load(a.sweep_json)
    if not points:
        sys.exit(f"{a.sweep_json}: no BM_DecodeAttentionSplit times of the quantized variants")
    for kind in ("int4v", "int8v"):
        per_sm, overhead, granule = SHIPPED[kind]
        per_sm = per_sm or a.int8_blocks_per_sm
        shipped = score(points, kind, per_sm, overhead, granule, a.sms)
        if shipped is None:
            print(f"{kind}: no points")
            continue
        grid = []
        for k in (1, 2, 3, 4, 6, 8):
            for o in range(0, 513, 32):
                for g in (64, 128, 256):
                    r = score(points, kind, k, o, g, a.sms)
                    grid.append((r[0], r[1], k, o, g))
        grid.sort()
        print(f"{kind}: shipped (blocks per SM {per_sm}, overhead {overhead}, granule {granule}): "
              f"mean {shipped[0]:.4f}, worst {shipped[1]:.3f} over {shipped[2]} points")
        for mean, worst, k, o, g in grid[:5]:
            print(f"  blocks per SM {k}, overhead {o}, granule {g}: mean {mean:.4f}, "
                  f"worst {worst:.3f}")


if __name__ == "__main__":
    main()
