#!/usr/bin/env python3
"""Command-line fuzzer for the example tools (issue 16, docs/ROBUSTNESS.md).

Builds random argument vectors for each tool from a grammar: the tool's real flags (read from
its --help) on top of a fast baseline command line (the shipped model, tiny prompts and step
counts), with values drawn from good values, boundary numbers (0, -1, 2^31, 2^63, 1e12, nan),
huge and empty strings, unknown and repeated flags, missing / directory / binary / empty files
and cache specs with odd parameters. Each case runs with a short timeout and must:

  * end without a signal and without a sanitizer report (ASan, UBSan, LSan) or an uncaught
    exception (`terminate called`);
  * exit with a status the tool documents (examples/exit_status.h): 0, 1 (an error, usage
    errors included), 2 (the run finished but a method failed) in the benchmark tools;
  * print a message on stderr when the status is not 0;
  * fail (non-zero) when the case holds input that can only be wrong (an unknown flag, a
    number that is not one, a missing input file, a report to an unwritable path, ...).

  scripts/fuzz_cli.py BIN_DIR [--cases N] [--seed S] [--timeout SEC] [--tools a,b]
                              [--log FILE.jsonl] [--keep DIR]

BIN_DIR holds the example binaries: build (scripts/test.sh runs 60 seeded cases there) or the
sanitizer build (ELI_SAN_EXAMPLES=1 ELI_SKIP_FUZZ=1 scripts/sanitize.sh, then build-san). Cases run one at a time (OMP_NUM_THREADS=1), each in a fresh working
directory. Every finding is printed with the exact command that reproduces it (files it names
are under the fixture directory, kept with --keep). Exit status: 0 no finding, 1 findings.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

TOOLS = [
    "generate", "tokenize", "basic_benchmark", "comprehensive_benchmark", "quality_report",
    "decode_speed", "cache_memory", "quantized_cache", "quickstart", "custom_cache",
]

# A fast, valid command line per tool; options the tool no longer has are dropped.
BASELINE = {
    "generate": ["--prompt", "hi", "--max-new-tokens", "2", "--device", "cpu"],
    "tokenize": ["--text", "hello world"],
    "basic_benchmark": ["--methods", "full_cache", "--prompt-len", "4", "--max-new-tokens", "2",
                        "--repetitions", "1", "--warmup", "0", "--no-quality", "--device", "cpu"],
    "comprehensive_benchmark": ["--methods", "full_cache", "--batch", "1", "--prompt-len", "4",
                                "--max-new-tokens", "2", "--repetitions", "1", "--warmup", "0",
                                "--no-quality", "--no-plots", "--shared-prefix", "none",
                                "--cache-point", "none", "--device", "cpu"],
    "quality_report": ["--methods", "full_cache", "--segments", "1", "--segment-len", "8",
                       "--eval-prefix", "4", "--device", "cpu"],
    "decode_speed": ["--model", "default", "--methods", "full_cache", "--batch", "1",
                     "--prompt-len", "4", "--steps", "2", "--repetitions", "1", "--device", "cpu"],
    "cache_memory": ["--tokens", "16"],
    "quantized_cache": ["--modes", "int8", "--prompt-len", "4", "--max-new-tokens", "2",
                        "--repetitions", "1", "--warmup", "0", "--no-quality", "--device", "cpu"],
    "quickstart": [],
    "custom_cache": ["--methods", "quant_fp8", "--prompt-len", "4", "--max-new-tokens", "2",
                     "--repetitions", "1", "--warmup", "0", "--no-quality", "--device", "cpu",
                     "--model", "random:L1-E16-H2-V300-P64"],
}
# Flags the mutations leave alone: dropping or changing them makes a run slow, not wrong
# (plots need matplotlib; a CUDA cache point or shared-prefix workload is minutes on a CPU).
PROTECTED = {"--no-plots", "--no-quality"}

# Options that take several values in the benchmark tools (CLI11 vectors).
LIST_OPTIONS = {"--methods", "--batch", "--prompt-len", "--modes"}

# Documented exit statuses (examples/exit_status.h, docs/ERRORS.md): 0 success or --help; 1 an
# error, usage errors included; 2 the run finished but a requested method failed (cache_memory: a
# target was missed), only in the tools that run several methods.
EXIT_CODES = {t: {0, 1} for t in TOOLS}
for t in ("basic_benchmark", "comprehensive_benchmark", "quantized_cache", "custom_cache",
          "cache_memory"):
    EXIT_CODES[t] = {0, 1, 2}

SANITIZER_MARKS = ["ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "UndefinedBehaviorSanitizer", "terminate called", "Segmentation fault",
                   "stack-overflow", "AddressSanitizer:DEADLYSIGNAL"]

# Findings reported and not yet fixed (in examples/, owned apart): (tool regex, regex over the
# case's description, note). A matching finding is printed as known and does not fail the run;
# delete the entry with the fix.
KNOWN = [
    # (tool regex, must-fail reason regex, why): findings accepted for now. Empty: none.
]

INT_BOUNDARY = ["0", "-1", "1", "2", "-2147483648", "2147483647", "2147483648", "4294967296",
                "-9223372036854775808", "9223372036854775807", "9223372036854775808",
                "18446744073709551616", "1" + "0" * 40]
NUM_ODD = ["", " ", "nan", "-nan", "inf", "-inf", "1e12", "-1e12", "1e400", "1.5", "0x10",
           "+3", "-0", "007", "3abc", "abc", "1,2", "1,,2", "1 2", "--", "\u0661"]
FLOAT_GOOD = ["0", "0.5", "1", "0.9", "1e-30", "1e-45"]


def huge(n=100000):
    return "x" * n


def make_fixtures(root, repo):
    """Files the values point at; returns name -> path."""
    f = {}
    os.makedirs(root, exist_ok=True)

    def put(name, data):
        p = os.path.join(root, name)
        with open(p, "wb") as fh:
            fh.write(data)
        f[name] = p

    rng = random.Random(1234)
    put("empty.txt", b"")
    put("binary.bin", bytes(rng.randrange(256) for _ in range(4096)))
    put("text.txt", b"In the beginning God created the heaven and the earth.\n" * 20)
    put("blank.txt", b"\n \n\t\n")
    put("one_long_line.txt", b"word " * 50000)
    put("bad_utf8.txt", b"\xff\xfe\xc3( \xed\xa0\x80 hello\n")
    put("nul.txt", b"a\x00b\x00\n")
    put("prompts.txt", b"hello there\nIn the beginning\n")
    put("prompts.jsonl", b'{"prompt": "hello"}\n{"prompt": "world"}\n')
    put("bad.jsonl", b'{"prompt": 3}\n[1,2]\nnot json\n')
    put("ids.json", b"[15496, 995]")
    put("ids_bad.json", b"[-1, 50257, 1e99, \"x\"]")
    put("bad_config.json", b'{"n_layer": -3}')
    d = os.path.join(root, "empty_dir")
    os.makedirs(d, exist_ok=True)
    f["empty_dir"] = d
    # A model directory with a config and a truncated checkpoint.
    m = os.path.join(root, "broken_model")
    os.makedirs(m, exist_ok=True)
    tiny = os.path.join(repo, "tests", "data", "hf_tiny")
    if os.path.isdir(tiny):
        shutil.copy(os.path.join(tiny, "config.json"), m)
        with open(os.path.join(tiny, "model.safetensors"), "rb") as fh:
            data = fh.read()
        with open(os.path.join(m, "model.safetensors"), "wb") as fh:
            fh.write(data[: len(data) // 2])
        f["hf_tiny"] = tiny
    f["broken_model"] = m
    # A tokenizer directory whose vocab.json is not JSON.
    t = os.path.join(root, "broken_tokenizer")
    os.makedirs(t, exist_ok=True)
    with open(os.path.join(t, "vocab.json"), "wb") as fh:
        fh.write(b'{"a": 0, "b": ')
    with open(os.path.join(t, "merges.txt"), "wb") as fh:
        fh.write(b"#version: 0.2\na b\n")
    f["broken_tokenizer"] = t
    f["shipped_tokenizer"] = os.path.join(repo, "assets", "tokenizer")
    f["missing"] = os.path.join(root, "does_not_exist", "nothing.txt")
    return f


# CLI11: "  --batch INT:INT in [1 - 64]=1   help", "  --repetitions,--reps INT=3", "  --no-stop{false}"
HELP_LINE = re.compile(r"^\s+((?:-{1,2}[A-Za-z0-9][\w-]*,?)+)(?: (INT|UINT|FLOAT|TEXT)(?=[ =:{]|$))?")


def read_flags(binary):
    """(name -> type) from `binary --help`; type is None for a flag, else INT, UINT, FLOAT, TEXT."""
    try:
        out = subprocess.run([binary, "--help"], capture_output=True, timeout=60,
                             env=run_env()).stdout.decode(errors="replace")
    except (subprocess.TimeoutExpired, OSError):
        return {}
    flags = {}
    for line in out.splitlines():
        m = HELP_LINE.match(line)
        if not m:
            continue
        names = [n.strip() for n in m.group(1).split(",") if n.strip()]
        for n in names:
            if n not in ("-h", "--help"):
                # "comma-separated" numbers (--batch 1,2,4 in the benchmark tools) are a list
                lst = m.group(2) == "INT" and "comma-separated" in line
                flags[n] = "INTLIST" if lst else m.group(2)
    return flags


def spec_values():
    good = ["full_cache", "sliding_window", "quant_int8", "quant_int4", "quant_mixed",
            "paged_attention", "chunked_cache", "no_cache"]
    odd = ["", ",", ";", ",,", "foo", "full_cache,", ",full_cache", "full_cache,full_cache",
           "full(max=0)", "full(max=1)", "full(max=-1)", "full(max=2147483647)",
           "sliding(window=0)", "sliding(window=1,sinks=1)", "sliding(window=4,sinks=4)",
           "sliding(window=2147483647,sinks=2147483647)", "sliding(sinks=-1)",
           "paged(block=1)", "paged(block=0)", "paged(block=2147483647)", "paged(pool=0)",
           "paged(pool=1)", "paged(pool=2)", "paged(pool=-1)", "paged(pool=99999999999)",
           "chunked(chunk=1,keep=0)", "chunked(chunk=0)", "chunked(keep=-1)",
           "chunked(chunk=2147483647,keep=2147483647,bias=1)",
           "full+int4/group64+residual=2147483647", "full+int8+residual=-1",
           "full+int4/group32/zp+rotate", "full+k:int8,v:int4", "full+k:int4",
           "paged(block=3)+int4/group64", "full+int8/per_tensor/zp", "full+cfg",
           "full(", "full)", "full((", "full()", "full(=)", "full(max=)", "full+", "+",
           "full++int8", "full+int8+int4", "full+int9", "full+k:,v:", "FULL_CACHE",
           "full_cache ", " full_cache", "quant_fp8", "full+fp8", huge(5000)]
    return good, odd


TEXT_VALUES = {
    "--device": (["cpu", "auto"], ["", "cuda", "cuda:0", "cuda:-1", "cuda:99999999999999999999",
                                   "gpu", "CPU", "cpu:0", "cuda:", "cuda:1x", "mps", huge(1000)]),
    "--cache-point": (["none"], ["", "auto", "x", "default,1x4,2", "default,0x4,2",
                                 "default,1x0,2", "default,1x4,-1", "default,1x4",
                                 "random:L1-E8-H2-P32,1x4,2", "default,99999999999x4,2",
                                 "default,1x99999999999,2", "nonexistent,1x4,2"]),
    "--shared-prefix": (["none", "2x4+2"], ["", "auto", "3x", "0x4+2", "2x0+0", "2x4+0",
                                           "-1x4+2", "1x1+1", "99999999999x4+2",
                                           "2x99999999999+2", "2x4+99999999999", "x+",
                                           "2x4+2+2", "2x4x2"]),
    "--modes": (["int8", "int4", "mixed", "int8,int4"], ["", "foo", ",", "int8,,int4",
                                                          "int16", "INT8", huge(2000)]),
}


class Case:
    def __init__(self, tool, args, must_fail, why, stdin=None):
        self.tool, self.args, self.must_fail, self.why = tool, args, must_fail, why
        self.stdin = stdin  # a file fed to stdin (tokenize reads it), else /dev/null


class Grammar:
    def __init__(self, rng, fixtures, flags):
        self.rng, self.fx, self.flags = rng, fixtures, flags

    def files_in(self):
        fx = self.fx
        good = [fx["text.txt"], fx["prompts.txt"]]
        bad = [fx["missing"], fx["empty_dir"], fx["binary.bin"], fx["empty.txt"],
               fx["blank.txt"], fx["bad_utf8.txt"], fx["nul.txt"], fx["one_long_line.txt"],
               fx["bad.jsonl"], "/dev/null", "", "-", "/"]
        return good, bad

    def value(self, tool, flag, typ):
        """(value, must_fail): a value for `flag` and whether the run must then fail."""
        r, fx = self.rng, self.fx
        pick_bad = r.random() < 0.6
        if typ in ("INT", "UINT", "FLOAT", "INTLIST"):
            if not pick_bad:
                if typ == "INTLIST" and r.random() < 0.3:
                    return r.choice(["1,2", "2,1", "1,1"]), False
                return r.choice(["1", "2", "4"] if typ != "FLOAT" else FLOAT_GOOD), False
            v = r.choice(INT_BOUNDARY + NUM_ODD + [huge(r.choice([100, 100000]))])
            return v, not_a_number(v, typ)
        name = flag
        if name in ("--methods", "--method"):
            good, odd = spec_values()
            if not pick_bad:
                return r.choice(good), False
            v = r.choice(odd)
            if r.random() < 0.3:
                v = ",".join(r.choice(good + odd) for _ in range(r.randint(2, 4)))
            return v, v in ("", ",", ";", ",,")  # no method at all
        if name in TEXT_VALUES:
            good, bad = TEXT_VALUES[name]
            return (r.choice(bad), False) if pick_bad else (r.choice(good), False)
        if name == "--model":
            good = ["default", "random:tiny", "random:L1-E8-H2-V300-P32"]
            if "hf_tiny" in fx:
                good.append(fx["hf_tiny"])
            bad_fail = ["", fx["missing"], fx["empty_dir"], fx["binary.bin"], "/dev/null",
                        fx["broken_model"], "random:", "random:foo", "random:L0-E8-H2",
                        "random:L1-E7-H2", "random:L1-E8-H2-V0", "random:L1-E8-H2-P0",
                        "random:L99999999999999999999-E8-H2", "random:L1-E8-H0",
                        "random:L1-E-8-H2", "random:L1-E8-H2-V-1"]
            bad_other = ["random:L1-E8-H2-V70000-P32", "random:L1-E8-H2-V1-P2",
                         "random:L1-E8-H8-V300-P32", "random:L1-E2147483647-H1",
                         "random:L1-E8-H2-V300-P2147483647", "random:L2147483647-E8-H2"]
            if not pick_bad:
                return r.choice(good), False
            if r.random() < 0.6:
                return r.choice(bad_fail), True
            return r.choice(bad_other), False
        if name == "--tokenizer":
            good = [fx["shipped_tokenizer"]]
            bad = [fx["missing"], fx["empty_dir"], fx["binary.bin"], fx["broken_tokenizer"],
                   "/dev/null"]
            if not pick_bad:
                return r.choice(good), False
            v = r.choice(bad + [""])
            return v, v != ""
        if name in ("--eval-file", "--prompts-file"):
            good, bad = self.files_in()
            if not pick_bad:
                return r.choice(good), False
            v = r.choice(bad)
            must = v in (fx["missing"], fx["empty_dir"], "/") or (
                name == "--prompts-file" and v in (fx["empty.txt"], fx["blank.txt"], "/dev/null"))
            return v, must
        if name in ("--json", "--csv", "--out-dir", "--plots"):
            good = ["out.json" if name != "--out-dir" else "outdir", "-"]
            if name in ("--out-dir", "--plots"):
                good = ["outdir", "sub/dir"]
            # the tools create missing parent directories: only an unwritable path must fail
            fail = ["/dev/full", "/proc/nope/x", fx["binary.bin"] + "/x"]
            other = ["", fx["empty_dir"], "/", huge(5000), os.path.join(fx["missing"], "x.json")]
            if not pick_bad:
                return r.choice(good), False
            if r.random() < 0.5 and name in ("--json", "--csv"):
                return r.choice(fail), True
            return r.choice(other + fail), False
        if name in ("--prompt", "--text"):
            good = ["hi", "In the beginning", "<|endoftext|>", "héllo wörld", "a b c"]
            bad = ["", " ", "\n", huge(r.choice([2000, 100000])), "-", "--",
                   "\udcff\udcfe bad utf8", "x\t\r\ny", "\u202e\u0000"[:1], "<|endoftext|>" * 50]
            return (r.choice(bad), False) if pick_bad else (r.choice(good), False)
        # Any other TEXT option: junk.
        return r.choice(["", "x", huge(1000), "-1", "nan", fx["binary.bin"]]), False

    def case(self, tool):
        r = self.rng
        flags = self.flags
        base = list(BASELINE.get(tool, []))
        # drop baseline options the tool does not have (the other engineer may rename them)
        args, i = [], 0
        while i < len(base):
            f = base[i]
            takes = i + 1 < len(base) and not base[i + 1].startswith("--")
            if f in flags:
                args += base[i:i + 2] if takes else [f]
            i += 2 if takes else 1
        must_fail, why = False, []
        replaced = {}  # option -> its current value (set by an op below) must fail
        opts = [f for f in flags if f not in PROTECTED]
        for _ in range(r.choice([1, 1, 1, 1, 2, 2, 3])):
            op = r.random()
            if op < 0.7 and opts:  # set an option (replacing its baseline value if any)
                f = r.choice(opts)
                typ = flags[f]
                if typ is None:
                    if r.random() < 0.2:
                        args.append(f + "=" + r.choice(["maybe", "", "1", "0", "true"]))
                        why.append(f"{f}=value")
                    else:
                        args.append(f)
                        why.append(f)
                    continue
                v, mf = self.value(tool, f, typ)
                if f in args and r.random() < 0.8:
                    j = args.index(f)
                    if j + 1 < len(args):
                        args[j + 1] = v
                    else:
                        args.append(v)
                    # the value set before (by an earlier op) is gone: so is its reason to fail
                    if replaced.pop(f, False):
                        why.append(f"{f} set again")
                else:
                    if r.random() < 0.15:
                        args.append(f + "=" + v)
                    else:
                        args += [f, v]
                if mf:
                    replaced[f] = True
                why.append(f"{f}={short(v)}" + (" (must fail)" if mf else ""))
            elif op < 0.77:  # an unknown flag, or a stray argument
                u = r.choice(["--no-such-flag", "-x", "---", "--=", "--prompt-lenx", "-",
                              "extra", "--" + huge(300), "--help-me", "-v"])
                args.insert(r.randrange(len(args) + 1), u)
                if u != "-" or tool not in ("tokenize",):
                    must_fail = True
                why.append(f"unknown {short(u)} (must fail)")
            elif op < 0.85 and opts:  # a flag repeated
                f = r.choice(opts)
                typ = flags[f]
                if typ is None:
                    args += [f, f]
                    why.append(f"repeated {f}")
                else:
                    v1, m1 = self.value(tool, f, typ)
                    v2, m2 = self.value(tool, f, typ)
                    args += [f, v1, f, v2]
                    must_fail |= m1 or m2
                    why.append(f"repeated {f}={short(v1)}, {f}={short(v2)}"
                               + (" (must fail)" if m1 or m2 else ""))
            elif op < 0.92 and opts:  # an option without its value (at the end)
                f = r.choice([o for o in opts if flags[o] is not None] or opts)
                args.append(f)  # must fail if it stays last (checked below)
                why.append(f"{f} without a value")
            else:  # a stray positional argument (no tool takes one)
                v = r.choice(["extra", "1", "", "full_cache", self.fx["text.txt"]])
                args.insert(r.randrange(len(args) + 1) if r.random() < 0.5 else len(args), v)
                # after an option that takes a value it may be that value instead
                j = args.index(v)
                is_value = j > 0 and args[j - 1] in flags and flags[args[j - 1]] is not None
                # list options (--methods a b, --prompt-len 4 8) take several values
                is_value |= j > 1 and args[j - 2] in LIST_OPTIONS
                if not is_value and tool != "quickstart":
                    must_fail = True
                why.append(f"stray {short(v)}" + ("" if is_value else " (must fail)"))
        must_fail |= any(replaced.values())
        if args and args[-1] in flags and flags[args[-1]] is not None:
            must_fail = True  # an option without its value
            why.append(f"{args[-1]} last, without a value (must fail)")
        stdin = None
        if tool == "tokenize" and r.random() < 0.5:  # the text (or ids) on stdin instead
            if "--text" in args:
                j = args.index("--text")
                del args[j:j + 2]
            stdin = r.choice([self.fx[k] for k in ("ids.json", "ids_bad.json", "binary.bin",
                                                   "empty.txt", "bad_utf8.txt", "text.txt",
                                                   "one_long_line.txt", "nul.txt")])
            why.append(f"stdin {os.path.basename(stdin)}")
        return Case(tool, args, must_fail, "; ".join(why), stdin)


def not_a_number(v, typ):
    """True when v can only be refused for an option of type typ. CLI11 reads more than
    decimal ("0x10", "1e3" may be integers to it), so only text that is no number at all counts,
    and nan for a FLOAT (no option of the tools means anything by it)."""
    if v.strip() in ("", "abc", "3abc", "--"):
        return True
    return typ == "FLOAT" and v in ("nan", "-nan")


def is_known(tool, probs, why):
    """A finding that KNOWN lists: only a bad input accepted, and every must-fail reason known."""
    if probs != ["bad input accepted (exit 0)"]:
        return False
    reasons = [w for w in why.split("; ") if "(must fail)" in w]
    if not reasons:  # a case that must fail for a reason it does not name is a finding
        return False
    return all(any(re.fullmatch(t, tool) and re.search(w, r) for t, w, _ in KNOWN)
               for r in reasons)


def signature(probs, why):
    """Findings with the same problems and the same must-fail reasons count as one."""
    if probs == ["bad input accepted (exit 0)"]:
        parts = [w for w in why.split("; ") if "(must fail)" in w]
        parts = [re.sub(r"^--[\w-]+=", "--FLAG=", p) for p in parts]
        return "accepted: " + " / ".join(sorted(set(parts)))
    return ", ".join(re.sub(r"\d+", "N", p) for p in probs)


def short(v, n=40):
    v = repr(v)
    return v if len(v) <= n else v[:n] + f"...({len(v)} chars)"


def shell_quote(a):
    if a and re.fullmatch(r"[A-Za-z0-9_./:=+,@%-]+", a):
        return a
    b = os.fsencode(a)
    if all(32 <= c < 127 and c != 39 for c in b):
        return "'" + a + "'"
    if len(b) > 200 and len(set(b)) == 1:
        return f"\"$(printf '%{len(b)}s' | tr ' ' '{chr(b[0])}')\""
    return "$'" + "".join(chr(c) if 32 <= c < 127 and c not in (39, 92) else f"\\x{c:02x}"
                          for c in b) + "'"


def run_env():
    env = dict(os.environ)
    env.update({
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        # hard_rss_limit_mb: an accepted huge shape stops the run instead of the machine.
        "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1:allocator_may_return_null=1:"
                        "max_allocation_size_mb=3072:hard_rss_limit_mb=4096",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        "MPLBACKEND": "Agg",
    })
    return env


def check(case, rc, err, timed_out):
    """A list of problems with one run (empty: as documented)."""
    probs = []
    if timed_out:
        return ["timeout"]
    for mark in SANITIZER_MARKS:
        if mark in err:
            probs.append(f"sanitizer / abort: '{mark}'")
            break
    if rc < 0:
        probs.append(f"killed by signal {-rc} ({signal.Signals(-rc).name})")
    elif rc not in EXIT_CODES.get(case.tool, {0, 1, 2}):
        probs.append(f"exit status {rc} not documented")
    if rc != 0 and not err.strip():
        probs.append("non-zero exit without a message on stderr")
    if rc == 0 and case.must_fail:
        probs.append("bad input accepted (exit 0)")
    return probs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bin_dir")
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--log", help="append one JSON line per case to this file")
    ap.add_argument("--keep", help="fixture directory to create and keep (default: a temp dir)")
    a = ap.parse_args()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    fixtures_dir = a.keep or tempfile.mkdtemp(prefix="eli_fuzz_cli_")
    fx = make_fixtures(fixtures_dir, repo)
    rng = random.Random(a.seed)
    tools = [t for t in a.tools.split(",") if os.access(os.path.join(a.bin_dir, t), os.X_OK)]
    if not tools:
        print(f"no tools found in {a.bin_dir}", file=sys.stderr)
        return 2
    flags = {t: read_flags(os.path.join(a.bin_dir, t)) for t in tools}
    for t in tools:
        if not flags[t] and t != "quickstart":
            print(f"warning: no flags read from {t} --help", file=sys.stderr)
    log = open(a.log, "a") if a.log else None
    findings, timeouts, counts = [], [], {}
    signatures, sig_count, known = {}, {}, []
    t0 = time.time()
    env = run_env()
    for n in range(a.cases):
        tool = tools[n % len(tools)]
        case = Grammar(rng, fx, flags[tool]).case(tool)
        work = tempfile.mkdtemp(prefix="case_", dir=fixtures_dir)
        cmd = [os.path.join(os.path.abspath(a.bin_dir), tool)] + case.args
        start = time.time()
        timed_out = False
        try:
            with open(case.stdin or os.devnull, "rb") as stdin:
                p = subprocess.run(cmd, cwd=work, capture_output=True, timeout=a.timeout,
                                   env=env, stdin=stdin)
            rc, err = p.returncode, p.stderr.decode(errors="replace")
        except subprocess.TimeoutExpired as e:
            rc, err, timed_out = None, (e.stderr or b"").decode(errors="replace"), True
        secs = time.time() - start
        shutil.rmtree(work, ignore_errors=True)
        probs = check(case, rc if rc is not None else 0, err, timed_out)
        counts[rc] = counts.get(rc, 0) + 1
        line = "cd $(mktemp -d) && " + " ".join(shell_quote(x) for x in cmd)
        if case.stdin:
            line += " < " + shell_quote(case.stdin)
        if log:
            log.write(json.dumps({"n": n, "tool": tool, "rc": rc, "secs": round(secs, 2),
                                  "problems": probs, "why": case.why,
                                  "cmd": line[:2000]}) + "\n")
            log.flush()
        if probs == ["timeout"]:
            timeouts.append((line, case.why))
            print(f"[{n}] {tool}: timeout after {a.timeout:.0f} s ({case.why})", flush=True)
        elif probs and is_known(tool, probs, case.why):
            known.append((tool, probs, case.why, line))
            print(f"[{n}] known {tool}: {', '.join(probs)} ({case.why})", flush=True)
        elif probs:
            findings.append((tool, probs, case.why, line, err))
            sig = signature(probs, case.why)
            if sig not in signatures:
                signatures[sig] = (tool, line)
            sig_count[sig] = sig_count.get(sig, 0) + 1
            print(f"[{n}] FINDING {tool}: {', '.join(probs)}\n  why: {case.why}\n  {line}\n"
                  + "\n".join("  | " + l for l in err.strip().splitlines()[-15:]), flush=True)
        elif n % 25 == 0:
            print(f"[{n}] {time.time() - t0:.0f} s, {len(findings)} findings", flush=True)
    elapsed = time.time() - t0
    print(f"\n{a.cases} cases over {', '.join(tools)} in {elapsed:.0f} s (seed {a.seed}); "
          f"exit statuses: {dict(sorted(counts.items(), key=lambda kv: str(kv[0])))}; "
          f"{len(timeouts)} timeouts; {len(known)} known; {len(findings)} findings")
    for sig, (tool, line) in signatures.items():
        print(f"finding x{sig_count[sig]}: {sig}\n  first: {line[:600]}")
    print(f"fixtures: {fixtures_dir}")
    if not a.keep and not findings:
        shutil.rmtree(fixtures_dir, ignore_errors=True)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
