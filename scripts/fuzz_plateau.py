#!/usr/bin/env python3
"""Runs one libFuzzer target until its coverage stops growing (docs/ROBUSTNESS.md).

Starts from a copy of the seed corpus (fuzz/corpus/<target>) plus fuzz/<target>.dict when there
is one, on one core, and stops when `cov:` has not grown for --plateau seconds (or after --max
seconds, or at a finding). Logs elapsed seconds, executions, cov, ft and corpus size once a
minute to <work>/progress.csv, and prints one summary line:

  target, seconds, executions, cov, ft, corpus inputs, findings (crash-/leak-/timeout- files)

  scripts/fuzz_plateau.py BUILD_DIR TARGET [--plateau 600] [--max 7200] [--work DIR]
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

LINE = re.compile(r"^#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+)(?: corp: (\d+)/)?")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("target")
    ap.add_argument("--plateau", type=float, default=600)
    ap.add_argument("--max", type=float, default=7200)
    ap.add_argument("--work")
    ap.add_argument("--max-len", type=int, default=65536)
    a = ap.parse_args()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    work = a.work or tempfile.mkdtemp(prefix=f"{a.target}_")
    corpus = os.path.join(work, "corpus")
    if not os.path.isdir(corpus):
        shutil.copytree(os.path.join(repo, "fuzz", "corpus", a.target), corpus)
    cmd = [os.path.join(os.path.abspath(a.build), "fuzz", a.target), "-rss_limit_mb=4096",
           f"-max_len={a.max_len}", "-print_final_stats=1", "-timeout=25",
           f"-artifact_prefix={work}/", corpus]
    d = os.path.join(repo, "fuzz", f"{a.target}.dict")
    if os.path.isfile(d):
        cmd.insert(1, f"-dict={d}")
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1",
               UBSAN_OPTIONS="print_stacktrace=1", OMP_NUM_THREADS="1")
    log = open(os.path.join(work, "fuzz.log"), "w")
    csv = open(os.path.join(work, "progress.csv"), "w")
    csv.write("seconds,execs,cov,ft,corpus\n")
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=log, env=env, text=True,
                         errors="replace", bufsize=1)
    t0 = time.time()
    st = {"cov": 0, "ft": 0, "corp": 0, "execs": 0, "growth": t0}
    stats = {}

    def read():  # libFuzzer's status lines get rare late in a run: read them apart
        for line in p.stderr:
            log.write(line)
            m = LINE.match(line)
            if m:
                st["execs"], c, st["ft"] = int(m.group(1)), int(m.group(3)), int(m.group(4))
                if m.group(5):
                    st["corp"] = int(m.group(5))
                if c > st["cov"]:
                    st["cov"], st["growth"] = c, time.time()
            s = re.match(r"^stat::(\w+):\s+(\d+)", line)
            if s:
                stats[s.group(1)] = int(s.group(2))

    reader = threading.Thread(target=read)
    reader.start()
    stopped = False
    while p.poll() is None:
        time.sleep(min(60.0, a.plateau / 4))
        now = time.time()
        csv.write(f"{now - t0:.0f},{st['execs']},{st['cov']},{st['ft']},{st['corp']}\n")
        csv.flush()
        if not stopped and (now - st["growth"] >= a.plateau or now - t0 >= a.max):
            p.send_signal(signal.SIGINT)  # libFuzzer prints its final stats and exits
            stopped = True
    reader.join()
    cov, ft, corp, last_growth = st["cov"], st["ft"], st["corp"], st["growth"]
    execs = st["execs"]
    p.wait()
    secs = time.time() - t0
    execs = stats.get("number_of_executed_units", execs)
    csv.write(f"{secs:.0f},{execs},{cov},{ft},{corp}\n")
    csv.close()
    found = [f for f in os.listdir(work) if f.split("-")[0] in ("crash", "leak", "timeout", "oom")]
    print(f"{a.target}: {secs:.0f} s, {execs} execs, cov {cov}, ft {ft}, corpus {corp} inputs "
          f"({len(os.listdir(corpus))} files), plateau since {secs - (last_growth - t0):.0f} s, "
          f"findings: {', '.join(found) or 'none'}; rc {p.returncode}; work {work}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
