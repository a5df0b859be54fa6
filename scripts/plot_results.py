#!/usr/bin/env python3
"""Plots from an eli benchmark JSON (comprehensive_benchmark --json): PNG files.

  python3 scripts/plot_results.py results/comprehensive.json [--out results/plots]

Writes, one panel per batch size where it applies:
  throughput_vs_context.png   decode tokens/s vs prompt length, one line per method, error bars
                              from the slowest to the fastest repetition; a ragged batch
                              (prompts of different lengths) is a hollow marker at its mean
                              prompt length with a bar from its shortest to its longest prompt
  cache_memory_vs_context.png exact cache MB (CacheStats::total_bytes) vs context length
  quality_vs_bytes.png        KL(full || method) and top-1 agreement vs cache bytes per token
                              (methods at the same point share one label; no_cache, which
                              caches nothing and recomputes every step, is left out)
Needs python3 and matplotlib (Debian: apt-get install python3-matplotlib).
"""
import argparse
import json
import math
import os
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def finite(x):
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def x_of(r, xkey):
    """(x, x low, x high, ragged) of a result. A ragged batch (prompts of different lengths,
    schema 3's prompt_lens) sits at its mean prompt length (mean context for context_len), with
    a range from its shortest to its longest prompt; a rectangular one at its prompt length."""
    lens = r.get("prompt_lens") or []
    x = r.get(xkey)
    if len(set(lens)) <= 1 or not finite(x):
        return x, x, x, False
    extra = x - max(lens)  # context_len = longest prompt + new tokens; prompt_len: 0
    mean = sum(lens) / len(lens)
    return mean + extra, min(lens) + extra, max(lens) + extra, True


def by_method(results, batch, xkey, ykey):
    """{method: [(x, y, y low, y high, x low, x high, ragged)]} for one batch size, sorted by x,
    finite points only; the y range is ykey + "_min" / "_max" where the results have them, else
    y itself; the x range is x itself except for ragged batches (see x_of)."""
    series = defaultdict(list)
    for r in results:
        if r.get("error") or r["batch"] != batch:
            continue
        x, xlo, xhi, ragged = x_of(r, xkey)
        y = r[ykey]
        if finite(x) and finite(y):
            lo, hi = r.get(ykey + "_min"), r.get(ykey + "_max")
            series[r["method"]].append((x, y, lo if finite(lo) else y, hi if finite(hi) else y,
                                        xlo, xhi, ragged))
    return {m: sorted(pts) for m, pts in series.items()}


def method_order(results):
    seen = []
    for r in results:
        if r["method"] not in seen:
            seen.append(r["method"])
    return seen


def title_of(ctx):
    return "{} ({}) on {} [{}], {},\neli {} ({}), {} threads".format(
        ctx.get("model"), ctx.get("model_shape"), ctx.get("device"), ctx.get("device_name"),
        ctx.get("dtype"), ctx.get("eli_version"), ctx.get("git_revision"), ctx.get("threads"))


def line_panels(results, ctx, xkey, ykey, xlabel, ylabel, path, logy=False):
    batches = sorted({r["batch"] for r in results if not r.get("error")})
    if not batches:
        return False
    order = method_order(results)
    fig, axes = plt.subplots(1, len(batches), figsize=(6 * len(batches), 4.5), squeeze=False)
    for ax, b in zip(axes[0], batches):
        series = by_method(results, b, xkey, ykey)
        any_ragged = False
        for m in order:
            if m not in series:
                continue
            color = None
            # Rectangular batches: one line per method. Ragged batches: the same colour, hollow
            # markers and no line (their x is a mean), a horizontal bar from the shortest to the
            # longest prompt.
            for ragged in (False, True):
                pts = [p for p in series[m] if p[6] == ragged]
                if not pts:
                    continue
                xs, ys, lo, hi, xlo, xhi, _ = zip(*pts)
                yerr = [[y - a for y, a in zip(ys, lo)], [c - y for y, c in zip(ys, hi)]]
                xerr = [[x - a for x, a in zip(xs, xlo)], [c - x for x, c in zip(xs, xhi)]]
                bars = ax.errorbar(
                    xs, ys, yerr=yerr, xerr=xerr if ragged else None, capsize=3, color=color,
                    marker="D" if ragged else "o", linestyle="none" if ragged else "-",
                    markerfacecolor="none" if ragged else None,
                    label=m + (" (ragged)" if ragged else ""))
                color = bars[0].get_color()
                any_ragged = any_ragged or ragged
        ax.set_title("batch {}".format(b))
        ax.set_xlabel(xlabel + ("\nragged batches (hollow): at the mean, bar = shortest..longest"
                                if any_ragged else ""))
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="best")
    fig.suptitle(title_of(ctx), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def quality_panel(results, ctx, path):
    # One point per method: its longest-context, smallest-batch run (most compression).
    best = {}
    for r in results:
        if r.get("error") or not finite(r.get("bytes_per_token")):
            continue
        key = (-r["prompt_len"] - r["new_tokens"], r["batch"])
        if r["method"] not in best or key < best[r["method"]][0]:
            best[r["method"]] = (key, r)
    pts = [(m, r) for m, (_, r) in best.items()
           if m != "no_cache" and finite(r["quality"].get("kl_vs_full"))]
    if not pts:
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))

    def scatter(ax, key):
        # Methods at the same point (full_cache and paged_attention: the same numbers) get one
        # marker and one label instead of labels printed over each other.
        xmax = max(r["bytes_per_token"] for _, r in pts) or 1.0
        groups = []  # [x, y, names]: points within 1% of the x range and 1e-6 in y share one
        for m, r in pts:
            x, y = r["bytes_per_token"], r["quality"].get(key)
            if not finite(y):
                continue
            for g in groups:
                if abs(g[0] - x) <= 0.01 * xmax and abs(g[1] - y) <= 1e-6 + 1e-3 * abs(y):
                    g[2].append(m)
                    break
            else:
                groups.append([x, y, [m]])
        for x, y, names in groups:
            ax.scatter(x, y)
            ax.annotate(" = ".join(names), (x, y), fontsize=8, xytext=(4, 4),
                        textcoords="offset points")

    scatter(ax1, "kl_vs_full")
    scatter(ax2, "top1_agreement")
    ax1.set_yscale("symlog", linthresh=1e-4)
    ax1.set_ylabel("KL(full || method), nats / token")
    ax2.set_ylabel("top-1 agreement with full cache")
    for ax in (ax1, ax2):
        ax.set_xlabel("cache bytes per context token (incl. scales + metadata)")
        ax.grid(True, alpha=0.3)
    q0 = pts[0][1]["quality"]
    fig.suptitle("quality vs memory ({} tokens scored through each cache after a {}-token "
                 "prefix; no_cache, which stores nothing, left out)\n{}".format(
                     q0.get("eval_tokens"), q0.get("eval_prefix"), title_of(ctx)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", help="benchmark JSON written by an eli example (--json)")
    ap.add_argument("--out", default=None, help="output directory (default: <json dir>/plots)")
    args = ap.parse_args()
    with open(args.json, encoding="utf-8") as f:
        data = json.load(f)
    results, ctx = data.get("results", []), data.get("context", {})
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.json)), "plots")
    os.makedirs(out, exist_ok=True)
    made = []
    p = os.path.join(out, "throughput_vs_context.png")
    if line_panels(results, ctx, "prompt_len", "decode_tokens_per_sec", "prompt length (tokens)",
                   "decode tokens / s (all sequences)", p, logy=True):
        made.append(p)
    p = os.path.join(out, "cache_memory_vs_context.png")
    if line_panels(results, ctx, "context_len", "cache_mb", "context length (prompt + new)",
                   "KV cache MB (exact, 2^20 bytes)", p):
        made.append(p)
    p = os.path.join(out, "quality_vs_bytes.png")
    if quality_panel(results, ctx, p):
        made.append(p)
    if not made:
        print("plot_results: no plottable results in " + args.json, file=sys.stderr)
        return 1
    for p in made:
        print("wrote " + p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
