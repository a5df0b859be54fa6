#!/usr/bin/env bash
# Command lines of the example binaries (docs/ERRORS.md): bad ones must fail with the expected
# exit status and a message naming the problem; --json - / --csv - write to stdout.
#   tests/cli_errors.sh CASE BIN_DIR
set -u
case_name=$1
bin=$(cd "$2" && pwd)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
expect() {  # expect STATUS REGEX -- command...
  local want=$1 re=$2
  shift 3
  "$@" >"$out" 2>&1
  local rc=$?
  if [ "$want" = nonzero ] && [ $rc -eq 0 ]; then
    echo "FAIL: exit 0, expected an error: $*"; cat "$out"; exit 1
  fi
  if [ "$want" != nonzero ] && [ $rc -ne "$want" ]; then
    echo "FAIL: exit $rc, expected $want: $*"; cat "$out"; exit 1
  fi
  grep -qE -- "$re" "$out" || { echo "FAIL: no '$re' in the output of: $*"; cat "$out"; exit 1; }
  echo "ok: $case_name"
}
case "$case_name" in
  seed_negative) expect nonzero "seed" -- "$bin/basic_benchmark" --seed -1 ;;
  batch_zero) expect nonzero "batch" -- "$bin/comprehensive_benchmark" --batch 0 ;;
  eval_prefix_huge) expect nonzero "eval-prefix" -- "$bin/basic_benchmark" --eval-prefix 2147483647 ;;
  model_empty) expect 1 "--model is empty" -- "$bin/basic_benchmark" --model "" ;;
  method_fails_exit2)
    expect 2 "error: foo" -- "$bin/basic_benchmark" --methods foo,full_cache --prompt-len 8 \
      --max-new-tokens 2 --repetitions 1 --warmup 0 --no-quality ;;
  comprehensive_method_fails_exit2)
    dir=$(mktemp -d)
    expect 2 "error: foo" -- "$bin/comprehensive_benchmark" --methods foo --batch 1 --prompt-len 8 \
      --max-new-tokens 2 --repetitions 1 --warmup 0 --no-quality --no-plots --out-dir "$dir"
    rm -rf "$dir" ;;
  model_tokenizer_broken)  # a model directory's own tokenizer that does not load is an error
    dir=$(mktemp -d)
    src=$(cd "$(dirname "$0")" && pwd)/data/hf_tiny
    cp "$src/config.json" "$src/model.safetensors" "$dir/"
    printf '{"a": 0, "b": ' >"$dir/vocab.json"  # cut short
    printf '#version: 0.2\na b\n' >"$dir/merges.txt"
    expect 1 "vocab.json" -- "$bin/generate" --model "$dir" --prompt hi --max-new-tokens 2
    expect 1 "vocab.json" -- "$bin/basic_benchmark" --model "$dir" --methods full_cache \
      --prompt-len 4 --max-new-tokens 2 --repetitions 1 --warmup 0 --no-quality
    rm -rf "$dir" ;;
  decode_nested_json)
    nested=$(mktemp)
    { head -c 100000 /dev/zero | tr '\0' '['; printf 1; head -c 100000 /dev/zero | tr '\0' ']'; } >"$nested"
    expect 1 "integer token id" -- sh -c "\"$bin/tokenize\" --decode < \"$nested\""
    rm -f "$nested" ;;
  csv_stdout)  # --csv - is stdout (the table goes to stderr), not a file named '-'
    dir=$(mktemp -d)
    (cd "$dir" && "$bin/basic_benchmark" --methods full_cache,quant_int8 --prompt-len 8 \
      --max-new-tokens 3 --repetitions 2 --warmup 0 --no-quality --csv - >"$out" 2>/dev/null) \
      || { echo "FAIL: exit $?"; exit 1; }
    [ ! -e "$dir/-" ] || { echo "FAIL: wrote a file named '-'"; exit 1; }
    rm -rf "$dir"
    head -1 "$out" | grep -q '^method,cache_name,batch' || { echo "FAIL: no CSV header"; cat "$out"; exit 1; }
    [ "$(wc -l <"$out")" -eq 3 ] || { echo "FAIL: expected header + 2 rows"; cat "$out"; exit 1; }
    echo "ok: $case_name" ;;
  json_stdout)  # --json - is one JSON document on stdout, with its provenance
    "$bin/basic_benchmark" --methods full_cache --prompt-len 8 --max-new-tokens 3 \
      --repetitions 2 --warmup 0 --no-quality --json - >"$out" 2>/dev/null || { echo "FAIL: exit $?"; exit 1; }
    python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
c = d["context"]
assert d["schema_version"] >= 2 and c["git_revision"] and c["blas"] and c["wall_s"] > 0, c
assert d["results"][0]["repetitions"] == 2 and len(d["results"][0]["decode_tokens_per_sec_reps"]) == 2
' "$out" || { echo "FAIL: stdout is not the JSON report"; head -c 2000 "$out"; exit 1; }
    echo "ok: $case_name" ;;
  help_everywhere)  # every tool answers --help with exit 0 and a usage text
    for t in basic_benchmark comprehensive_benchmark quantized_cache quality_report cache_memory \
             decode_speed generate tokenize quickstart; do
      "$bin/$t" --help >"$out" 2>&1 || { echo "FAIL: $t --help exit $?"; cat "$out"; exit 1; }
      grep -qiE "usage|options" "$out" || { echo "FAIL: $t --help printed no usage"; cat "$out"; exit 1; }
    done
    echo "ok: $case_name" ;;
  unknown_flag_everywhere)  # every tool refuses a flag it does not know, naming it
    for t in basic_benchmark comprehensive_benchmark quantized_cache quality_report cache_memory \
             decode_speed generate tokenize quickstart; do
      "$bin/$t" --no-such-flag >"$out" 2>&1 && { echo "FAIL: $t accepted --no-such-flag"; exit 1; }
      grep -qE "no-such-flag|usage" "$out" || { echo "FAIL: $t did not say why"; cat "$out"; exit 1; }
    done
    echo "ok: $case_name" ;;
  json_stdout_tools)  # generate, decode_speed, cache_memory: --json - is JSON with the context
    for cmd in "generate --max-new-tokens 3" "decode_speed --model random:L2-E64-H2 --steps 3 --repetitions 1" \
               "cache_memory --tokens 64"; do
      # shellcheck disable=SC2086
      "$bin/"$cmd --json - >"$out" 2>/dev/null || { echo "FAIL: $cmd --json - exit $?"; exit 1; }
      python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
c = (d[0] if isinstance(d, list) else d)["context"]
assert c["schema_version"] >= 2 and c["git_revision"] and c["torch_version"], c
' "$out" || { echo "FAIL: $cmd --json - is not JSON with a context"; head -c 1500 "$out"; exit 1; }
    done
    echo "ok: $case_name" ;;
  both_stdout) expect 1 "both write to stdout" -- "$bin/basic_benchmark" --json - --csv - ;;
  *) echo "unknown case $case_name"; exit 2 ;;
esac
