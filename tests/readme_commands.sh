#!/usr/bin/env bash
# Runs README.md's example commands as written (binaries from BIN_DIR instead of build/) and
# checks that they succeed; tokenize's output must be what the README shows. The long runs
# (quality_report, the main job, the Google Benchmark suites) are started with --help or
# --benchmark_list_tests so that their flags and start-up are checked in seconds.
#   tests/readme_commands.sh BIN_DIR README
set -euo pipefail
bin=$(cd "$1" && pwd)
readme=$2
run() { echo "+ $*"; "$@" >/dev/null || { echo "FAIL ($?): $*"; exit 1; }; }

# The README's commands must still be the ones run here.
for line in 'build/generate --prompt "And God said" --max-new-tokens 40 --method quant_int4' \
            'build/basic_benchmark --methods full_cache,quant_int8 --batch 4 --prompt-len 256' \
            'build/quantized_cache --prompt-len 256' \
            'build/decode_speed --model random:L6-E384-H6 --methods full_cache,quant_int4 --batch 4'; do
  grep -qF -- "$line" "$readme" || { echo "FAIL: README no longer shows: $line"; exit 1; }
done
want=$(sed -n 's/^echo "Hello world" | build\/tokenize *# *//p' "$readme")
got=$(echo "Hello world" | "$bin/tokenize")
[ "$got" = "$want" ] || { echo "FAIL: tokenize printed '$got', README shows '$want'"; exit 1; }

run "$bin/generate" --prompt "And God said" --max-new-tokens 40 --method quant_int4
run "$bin/comprehensive_benchmark" --help
run "$bin/basic_benchmark" --methods full_cache,quant_int8 --batch 4 --prompt-len 256
run "$bin/quantized_cache" --prompt-len 256
run "$bin/quality_report" --help
run "$bin/cache_memory"
run "$bin/decode_speed" --model random:L6-E384-H6 --methods full_cache,quant_int4 --batch 4
for suite in bench_decode bench_caches; do
  [ -x "$bin/bench/$suite" ] && run "$bin/bench/$suite" --benchmark_list_tests
done
echo "README commands ok"
