# Sourced by the GPU-machine scripts (scripts/gpu_*.sh), from the repo root: LOG (the folder for
# logs), the Debian packages carried as .gpu-debs/ (PCRE2: not installed there) unpacked to
# /tmp/deps and on LD_LIBRARY_PATH, TP = the pip torch's CMake prefix, and stamp MESSAGE
# (seconds since sourcing).
# The device tool brings back at most 8 files from $OUT: with OUT set, the logs go to a scratch
# folder and are packed into $OUT/logs_<script>.tgz at every stamp and at exit (so a run killed
# at its time limit still returns what it had logged by its last stamp). Without OUT: /tmp/out.
ELI_GPU_SCRIPT=$(basename "$0" .sh)
if [ -n "${OUT:-}" ]; then
  LOG=/tmp/gpu_logs/$ELI_GPU_SCRIPT
  rm -rf "$LOG"  # a warm machine keeps /tmp: no logs of an earlier call in this one's pack
  mkdir -p "$OUT"
else
  LOG=/tmp/out
fi
mkdir -p "$LOG" /tmp/deps
pack_logs() {
  if [ -n "${OUT:-}" ]; then tar -czf "$OUT/logs_$ELI_GPU_SCRIPT.tgz" -C "$LOG" . 2>/dev/null; fi
  return 0
}
trap pack_logs EXIT
if compgen -G ".gpu-debs/*.deb" >/dev/null; then
  for f in .gpu-debs/*.deb; do dpkg -x "$f" /tmp/deps; done
fi
export LD_LIBRARY_PATH="/tmp/deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
TP=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
t0=$(date +%s)
stamp() {
  echo "[+$(( $(date +%s) - t0 ))s] $*"
  pack_logs
}
