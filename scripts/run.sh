#!/usr/bin/env bash
# Sets everything up, builds, and runs the main job: every KV-cache method on the default
# model (CUDA when present, else CPU), writing results/ (JSON, CSV, plots).
#   scripts/run.sh [extra comprehensive_benchmark flags]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
build/comprehensive_benchmark "$@"
