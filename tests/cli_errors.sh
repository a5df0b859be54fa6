#!/usr/bin/env bash
# Bad command lines of the example binaries (docs/ERRORS.md): each case must fail with the
# expected exit status and a message naming the problem.   tests/cli_errors.sh CASE BIN_DIR
set -u
case_name=$1
bin=$2
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
  decode_nested_json)
    nested=$(mktemp)
    { head -c 100000 /dev/zero | tr '\0' '['; printf 1; head -c 100000 /dev/zero | tr '\0' ']'; } >"$nested"
    expect 1 "integer token id" -- sh -c "\"$bin/tokenize\" --decode < \"$nested\""
    rm -f "$nested" ;;
  *) echo "unknown case $case_name"; exit 2 ;;
esac
