#!/usr/bin/env python3
"""Compiles the host C++ that only CUDA builds see, on a machine without CUDA LibTorch.

A CPU build leaves out src/**/*_cuda.cpp and the ELI_WITH_CUDA parts of the other sources, so
without this a mistake there shows first on the GPU machine. Each such file is compiled with
-fsyntax-only (templates instantiated, no code generated) under the flags of the CPU build
(compile_commands.json), plus ELI_WITH_CUDA=1, the kernels' headers (cuda/) and CUDA's own
headers. Debian's libtorch-dev ships the c10 / ATen CUDA headers but not the generated
c10/cuda/impl/cuda_cmake_macros.h: an empty stand-in takes its place. Warnings are errors.

  scripts/check_cuda_host.py [BUILD]      (default build; exit 1 on a diagnostic)
Skipped (exit 0, a line on stdout) when CUDA's headers are not installed.
"""

import concurrent.futures
import glob
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Files that need more of CUDA LibTorch than the CPU package's headers hold, and why.
SKIP = {
    "src/decode_loop_cuda.cpp": "the caching allocator's graph-pool API of torch 2.x "
                                "(Debian's LibTorch is 1.13)",
}


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
    cuda_inc = os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "include")
    if not os.path.exists(os.path.join(cuda_inc, "cuda_runtime.h")):
        print(f"check_cuda_host: no CUDA headers in {cuda_inc}, skipped")
        return 0
    commands = {os.path.realpath(e["file"]): e
                for e in json.load(open(os.path.join(build, "compile_commands.json")))}
    template = commands.get(os.path.realpath(os.path.join(REPO, "src/ops/ops.cpp")))
    if template is None:
        print("check_cuda_host: src/ops/ops.cpp not in compile_commands.json", file=sys.stderr)
        return 1
    # The files: every *_cuda.cpp (not built on the CPU: they take ops.cpp's flags) and every
    # built source that tests ELI_WITH_CUDA.
    files = sorted(glob.glob(os.path.join(REPO, "src", "**", "*_cuda.cpp"), recursive=True))
    for path in commands:
        if path.startswith(REPO + os.sep) and path.endswith(".cpp"):
            with open(path, encoding="utf-8") as f:
                if "ELI_WITH_CUDA" in f.read():
                    files.append(path)
    for rel, why in SKIP.items():
        path = os.path.join(REPO, rel)
        if path in files:
            files.remove(path)
            print(f"check_cuda_host: {rel}: skipped ({why})")
    stub = tempfile.mkdtemp(prefix="eli_cuda_stub_")
    os.makedirs(os.path.join(stub, "c10", "cuda", "impl"))
    open(os.path.join(stub, "c10", "cuda", "impl", "cuda_cmake_macros.h"), "w").close()

    def command(path):
        e = commands.get(path, template)
        args = shlex.split(e["command"])
        out, skip = [], False
        for a in args[1:]:
            if skip:
                skip = False
                continue
            if a in ("-o", "-c"):  # their operands: the object, and the source (put back last)
                skip = True
                continue
            if re.match(r"-O\d", a):
                continue
            out.append(a)
        return ([args[0], "-fsyntax-only", "-Werror", "-DELI_WITH_CUDA=1",
                 "-I" + os.path.join(REPO, "cuda"), "-I" + os.path.join(REPO, "src"),
                 "-isystem", stub, "-isystem", cuda_inc] + out + [path],
                e.get("directory", build))

    def check(path):
        cmd, cwd = command(path)
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        return path, r.returncode, r.stderr

    failed = 0
    jobs = max(1, min(len(files), os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for path, rc, err in pool.map(check, files):
            rel = os.path.relpath(path, REPO)
            if rc != 0:
                failed += 1
                print(f"check_cuda_host: {rel}: FAILED\n{err}", file=sys.stderr)
            else:
                print(f"check_cuda_host: {rel}: ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
