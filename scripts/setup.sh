#!/usr/bin/env bash
# Installs everything eli needs on Debian 12 (apt packages; clang and its sanitizer / libFuzzer
# runtime for scripts/sanitize.sh), then configures and builds it.
#   scripts/setup.sh [BUILD_DIR]        (default: build)
# Environment: ELI_SKIP_APT=1 skips apt-get; ELI_CMAKE_ARGS adds CMake arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}

if [ "${ELI_SKIP_APT:-0}" != 1 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends \
    build-essential cmake ninja-build ccache pkg-config \
    libtorch-dev libgtest-dev libgmock-dev libbenchmark-dev libfmt-dev nlohmann-json3-dev \
    libpcre2-dev libcli11-dev libopenblas0-pthread python3 python3-matplotlib \
    clang clang-format libclang-rt-14-dev >/dev/null
fi

ARGS=(-G Ninja -DCMAKE_BUILD_TYPE=Release)
# nvcc (CUDA Toolkit) compiles the torch-free kernels even on machines without a GPU.
if [ -x /usr/local/cuda/bin/nvcc ]; then
  ARGS+=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
fi
# shellcheck disable=SC2206
ARGS+=(${ELI_CMAKE_ARGS:-})
cmake -S . -B "$BUILD" "${ARGS[@]}"
cmake --build "$BUILD" -j"$(nproc)"
