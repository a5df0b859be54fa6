# Sourced by the GPU-machine scripts (scripts/gpu_*.sh), from the repo root: LOG (= $OUT or
# /tmp/out), the Debian packages carried as .gpu-debs/ (PCRE2: not installed there) unpacked to
# /tmp/deps and on LD_LIBRARY_PATH, TP = the pip torch's CMake prefix, and stamp MESSAGE
# (seconds since sourcing).
LOG=${OUT:-/tmp/out}
mkdir -p "$LOG" /tmp/deps
if compgen -G ".gpu-debs/*.deb" >/dev/null; then
  for f in .gpu-debs/*.deb; do dpkg -x "$f" /tmp/deps; done
fi
export LD_LIBRARY_PATH="/tmp/deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
TP=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
t0=$(date +%s)
stamp() { echo "[+$(( $(date +%s) - t0 ))s] $*"; }
