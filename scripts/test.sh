#!/usr/bin/env bash
# Sets everything up, builds, and runs the tests (the CPU ones; GPU tests skip without a GPU),
# then installs eli and builds a consumer project against the installed package, then runs the
# CPU tests under sanitizers and the fuzzers (scripts/sanitize.sh).
#   scripts/test.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
scripts/setup.sh "$BUILD"
ctest --test-dir "$BUILD" --output-on-failure -j"$(nproc)" -LE gpu
# gpu-labelled tests run too: each skips itself when no GPU is present.
ctest --test-dir "$BUILD" --output-on-failure -L gpu
# Install tree + find_package(eli CONFIG) consumer.
rm -rf "$BUILD/install" "$BUILD/consumer"
cmake --install "$BUILD" --prefix "$PWD/$BUILD/install" >/dev/null
cmake -S tests/consumer -B "$BUILD/consumer" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$PWD/$BUILD/install"
cmake --build "$BUILD/consumer" -j"$(nproc)"
ELI_ASSETS="$PWD/$BUILD/install/share/eli/assets" "$BUILD/consumer/eli_consumer"
# The CPU tests again under ASan + UBSan, and each fuzz target for FUZZ_SECONDS (20 s).
scripts/sanitize.sh "$BUILD-san"
echo "all tests passed"
