#!/usr/bin/env bash
# eli against Hugging Face transformers on one card, one command on the GPU machine:
#   scripts/peer_compare.sh BUILD_DIR [OUT_DIR]
# Brings BUILD_DIR/decode_speed up to date (configures BUILD_DIR when it has no CMakeCache),
# times eli's decode_speed and bench/peers/hf_decode.py at the same points (124M shape:
# 1x128 for 256 new tokens and 32x896 for 128; 1.5B shape: 1x128 for 128) and prints one table of
# ms per decode step with the eli/HF ratios and, at batch 1, the weight-read floor.
# Every stage runs even when one before it failed; its exit status is printed.
# Env: NO_BUILD=1 uses BUILD_DIR/decode_speed as it is; SKIP_HF_DEFAULT=1 skips HF's eager
# dynamic cache everywhere, =0 times it at the 1.5B shape too (slow; by default only at 124M);
# HF_SHAPES ("gpt2 gpt2-xl"); ELI_REPS (3), HF_REPS (5);
# ELI_ARGS: extra decode_speed flags (e.g. --no-graph). Logs and JSON go to OUT_DIR
# (default $OUT, else BUILD_DIR/peer).
set -u
if [ $# -lt 1 ]; then
  echo "usage: scripts/peer_compare.sh BUILD_DIR [OUT_DIR]" >&2
  exit 2
fi
BUILD=$(realpath -m "$1")
DEST=$(realpath -m "${2:-${OUT:-$BUILD/peer}}")
cd "$(dirname "$0")/.."
mkdir -p "$DEST"
export PYTHONUNBUFFERED=1
# The GPU machine lacks the PCRE2 runtime that eli links; the repo carries it as .gpu-debs.
if compgen -G ".gpu-debs/*.deb" >/dev/null; then
  mkdir -p /tmp/deps
  for f in .gpu-debs/*.deb; do dpkg -x "$f" /tmp/deps; done
fi
export LD_LIBRARY_PATH="/tmp/deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
ELI_REPS=${ELI_REPS:-3}
HF_REPS=${HF_REPS:-5}
t0=$(date +%s)
stage() { echo; echo "== [+$(( $(date +%s) - t0 ))s] $*"; }
report() { echo "-- rc=$1 ($2)"; }

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader | tee "$DEST/gpu.txt"

if [ -z "${NO_BUILD:-}" ]; then
  stage "build decode_speed in $BUILD"
  TP=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
  # Only decode_speed is needed: a fresh tree leaves out the benchmark suites (and their
  # Google Benchmark dependency); an existing tree keeps its settings.
  fresh=()
  [ -f "$BUILD/CMakeCache.txt" ] || fresh=(-G Ninja -DELI_BUILD_BENCHMARKS=OFF)
  nvcc=()
  if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
    nvcc=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
  fi
  rm -f "$DEST/configure.log" "$DEST/build.log"
  # Examples ON even in a tree configured without them (scripts/gpu_check.sh turns them off).
  cmake -S . -B "$BUILD" ${fresh[@]+"${fresh[@]}"} -DCMAKE_BUILD_TYPE=Release \
    "-DCMAKE_PREFIX_PATH=$TP;/tmp/deps/usr" ${nvcc[@]+"${nvcc[@]}"} -DELI_BUILD_EXAMPLES=ON \
    > "$DEST/configure.log" 2>&1 &&
    cmake --build "$BUILD" --target decode_speed -j"$(nproc)" > "$DEST/build.log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && grep -hE "error|FAILED|Error" "$DEST/configure.log" "$DEST/build.log" \
    2>/dev/null | head -40
  report $rc "build"
fi

# eli: one JSON array for every run; the model spec in each record names the shape.
ELI_JSON="$DEST/eli.json"
rm -f "$ELI_JSON" "$DEST/eli.log" "$DEST/hf_gpt2.json" "$DEST/hf_gpt2-xl.json"
eli_point() {  # model batch prompt steps methods
  stage "eli decode_speed $1 batch $2 prompt $3 steps $4 ($5)"
  timeout 300 "$BUILD/decode_speed" --model "$1" --device cuda --batch "$2" --prompt-len "$3" \
    --steps "$4" --reps "$ELI_REPS" --methods "$5" --json "$ELI_JSON" ${ELI_ARGS:-} \
    2>&1 | tee -a "$DEST/eli.log"
  report "${PIPESTATUS[0]}" "eli $1 $2x$3"
}
eli_point random:gpt2 1 128 256 full_cache,no_cache
eli_point random:gpt2 32 896 128 full_cache
eli_point random:gpt2-xl 1 128 128 full_cache

# HF's eager dynamic cache takes ~50-60 ms a step: timed at the 124M points unless
# SKIP_HF_DEFAULT=1, at the 1.5B shape only with SKIP_HF_DEFAULT=0. HF_SHAPES picks the shapes.
for shape in ${HF_SHAPES:-gpt2 gpt2-xl}; do
  points=1x128:256,32x896:128
  skip=()
  if [ "$shape" = gpt2-xl ]; then
    points=1x128:128
    [ "${SKIP_HF_DEFAULT:-}" = 0 ] || skip=(--skip-default)
  elif [ "${SKIP_HF_DEFAULT:-}" = 1 ]; then
    skip=(--skip-default)
  fi
  stage "HF transformers $shape ($points)"
  timeout 420 python3 bench/peers/hf_decode.py --shape "$shape" --points "$points" \
    ${skip[@]+"${skip[@]}"} --reps "$HF_REPS" --json "$DEST/hf_$shape.json" 2>&1 |
    tee "$DEST/hf_$shape.log"
  report "${PIPESTATUS[0]}" "HF $shape"
done

stage "table"
python3 - "$DEST" <<'PY'
import json, os, sys

dest = sys.argv[1]


def load(name):
    path = os.path.join(dest, name)
    try:
        with open(path) as f:
            return json.load(f)
    except Exception as e:
        print(f"(no {path}: {e})")
        return []


eli = load("eli.json")
hf = load("hf_gpt2.json") + load("hf_gpt2-xl.json")
try:
    card = open(os.path.join(dest, "gpu.txt")).read().strip()
except OSError:
    card = ""
print(f"card: {card or next((r['gpu'] for r in hf if r.get('gpu')), '?')}")
hf_ms = {(r["shape"], r["batch"], r["prompt"], r["new_tokens"], r["impl"]): r.get("ms_per_step")
         for r in hf if r["impl"] != "weight_read_floor"}
floor = {r["shape"]: r for r in hf if r["impl"] == "weight_read_floor"}
for shape, r in floor.items():
    print(f"{shape}: {r['weight_bytes'] / 1e6:.0f} MB of fp16 weights, copy bandwidth "
          f"{r['copy_gbps']:.0f} GB/s -> weight-read floor {r['ms_per_step']:.3f} ms/step")


def cell(x, fmt="{:.3f}"):
    return fmt.format(x) if isinstance(x, (int, float)) else "-"


def ratio(a, b):
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0 else None


cols = ["shape", "batch", "prompt", "new", "eli method", "eli ms", "HF static", "HF default",
        "eli/static", "eli/default", "floor ms", "eli/floor"]
widths = [8, 5, 6, 5, 11, 8, 9, 10, 10, 11, 8, 9]
print()
print(" ".join(f"{c:>{w}}" for c, w in zip(cols, widths)))
for r in eli:
    shape = r["model"].split(":", 1)[-1]
    key = (shape, r["batch"], r["prompt"], r["steps"])
    ms = r["ms_p50"]
    st = hf_ms.get(key + ("static",))
    dyn = hf_ms.get(key + ("default",))
    # At batch 1 the weights are nearly all the bytes a step reads, so the floor bounds it;
    # at batch 32 x 896 the KV cache reads outweigh the weights and the floor says little.
    fl = floor[shape]["ms_per_step"] if shape in floor and r["batch"] == 1 else None
    row = [shape, r["batch"], r["prompt"], r["steps"], r["method"], cell(ms), cell(st), cell(dyn),
           cell(ratio(ms, st), "{:.2f}x"), cell(ratio(ms, dyn), "{:.2f}x"), cell(fl),
           cell(ratio(ms, fl), "{:.2f}x")]
    print(" ".join(f"{str(c):>{w}}" for c, w in zip(row, widths)))
for r in hf:
    if r.get("error"):
        point = f"{r['batch']}x{r['prompt']}:{r['new_tokens']}"
        print(f"HF {r['shape']} {point} {r['impl']}: {r['error']}")
print()
print("eli ms: median of the per-step times (decode_speed p50, graph="
      + ("/".join(sorted({str(r.get('graph')) for r in eli})) or "?")
      + "); HF: (T(new) - T(new/8)) / (7 new/8) of generate, median over reps.")
print("ratios below 1 mean eli is faster.")
PY
report $? "table"
stage "done (logs and JSON in $DEST)"
