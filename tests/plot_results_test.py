#!/usr/bin/env python3
"""scripts/plot_results.py on a report with rectangular and ragged batches (schema 3's
prompt_lens): where each point sits, and that every plot is written.

  tests/plot_results_test.py SOURCE_DIR      (exit 77 = skipped: no matplotlib)
"""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

src = sys.argv[1]
try:
    import matplotlib  # noqa: F401
except ImportError:
    # The python3 on PATH may lack it where Debian's has it (comprehensive_benchmark tries both).
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    print("skipped: no matplotlib")
    sys.exit(77)
spec = importlib.util.spec_from_file_location("plot_results",
                                              os.path.join(src, "scripts", "plot_results.py"))
plot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plot)


def row(method, lens, tps, new=4, error=""):
    return {"method": method, "batch": len(lens), "prompt_lens": lens, "prompt_len": max(lens),
            "prompt_tokens": sum(lens), "new_tokens": new, "context_len": max(lens) + new,
            "decode_tokens_per_sec": tps, "decode_tokens_per_sec_min": tps - 1,
            "decode_tokens_per_sec_max": tps + 2, "cache_mb": sum(lens) / 100.0,
            "bytes_per_token": 1000.0, "error": error,
            "quality": {"kl_vs_full": 0.01, "top1_agreement": 0.9, "eval_tokens": 8,
                        "eval_prefix": 4}}


results = [row("full_cache", [8, 8], 100.0), row("full_cache", [16, 16], 90.0),
           row("full_cache", [5, 17], 95.0), row("quant_int8", [8, 8], 110.0),
           row("quant_int8", [5, 17], 105.0), row("bogus", [5, 17], 0.0, error="unknown")]

# A ragged batch sits at its mean prompt (11), its range 5..17; a rectangular one at its length.
assert plot.x_of(results[2], "prompt_len") == (11.0, 5, 17, True), plot.x_of(results[2], "prompt_len")
assert plot.x_of(results[2], "context_len") == (15.0, 9, 21, True)
assert plot.x_of(results[0], "prompt_len") == (8, 8, 8, False)
series = plot.by_method(results, 2, "prompt_len", "decode_tokens_per_sec")
assert [p[0] for p in series["full_cache"]] == [8, 11.0, 16], series["full_cache"]
assert [p[6] for p in series["full_cache"]] == [False, True, False]
assert "bogus" not in series

with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "r.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"schema_version": 3, "context": {"model": "random:tiny"}, "results": results}, f)
    out = os.path.join(d, "plots")
    subprocess.run([sys.executable, os.path.join(src, "scripts", "plot_results.py"), path,
                    "--out", out], check=True)
    for name in ("throughput_vs_context.png", "cache_memory_vs_context.png",
                 "quality_vs_bytes.png"):
        p = os.path.join(out, name)
        assert os.path.getsize(p) > 1000, p
print("ok: plot_results with ragged batches")
