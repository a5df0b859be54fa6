#!/usr/bin/env bash
# Sets everything up, builds, and runs the tests (the CPU ones; GPU tests skip without a GPU),
# then installs eli and builds a consumer project against the installed package, then runs the
# CPU tests under sanitizers and the fuzzers (scripts/sanitize.sh).
#   scripts/test.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
scripts/setup.sh "$BUILD"
# Formatting: every C++ / CUDA source as .clang-format (clang-format 14, installed by setup.sh)
# has it; a difference fails with the file and line.
command -v clang-format >/dev/null || { echo "clang-format not found (scripts/setup.sh)" >&2; exit 1; }
git ls-files -z '*.h' '*.cpp' '*.cu' '*.cuh' | xargs -0 clang-format --dry-run --Werror
# The host C++ only CUDA builds compile (src/**/*_cuda.cpp, the ELI_WITH_CUDA parts), syntax-
# and warning-checked against CUDA's headers (skipped where they are not installed).
python3 scripts/check_cuda_host.py "$BUILD"
ctest --test-dir "$BUILD" --output-on-failure -j"$(nproc)" -LE gpu
# The example tools' command lines as fuzz input: 60 seeded cases (about a minute on 2 cores;
# docs/ROBUSTNESS.md). A crash, an undocumented exit status, a silent failure or bad input
# accepted fails with the command that reproduces it.
python3 scripts/fuzz_cli.py "$BUILD" --cases 60 --seed 1 --timeout 120
# gpu-labelled tests run too: each skips itself when no GPU is present.
ctest --test-dir "$BUILD" --output-on-failure -L gpu
# Install tree + find_package(eli CONFIG) consumer. The tree is moved after installing, so
# neither the source tree nor any prefix known at build time holds the assets the consumer must
# find: it finds them relative to the package (and the installed tools next to themselves).
rm -rf "$BUILD/install" "$BUILD/install-moved" "$BUILD/consumer"
cmake --install "$BUILD" --prefix "$PWD/$BUILD/install" >/dev/null
mv "$BUILD/install" "$BUILD/install-moved"
PREFIX="$PWD/$BUILD/install-moved"
cmake -S tests/consumer -B "$BUILD/consumer" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$PREFIX"
cmake --build "$BUILD/consumer" -j"$(nproc)"
env -u ELI_ASSETS "$BUILD/consumer/eli_consumer" "$PREFIX/share/eli/assets"
ELI_ASSETS="$PWD/assets" "$BUILD/consumer/eli_consumer" "$PWD/assets"  # ELI_ASSETS overrides
"$BUILD/consumer/eli_consumer_custom"  # registers a cache layout of its own
if [ -x "$PREFIX/bin/generate" ]; then
  env -u ELI_ASSETS "$PREFIX/bin/generate" --prompt "In the beginning" --max-new-tokens 4
fi
# The CPU tests again under ASan + UBSan, and each fuzz target for FUZZ_SECONDS (20 s).
scripts/sanitize.sh "$BUILD-san"
echo "all tests passed"
