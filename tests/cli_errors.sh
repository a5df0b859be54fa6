#!/usr/bin/env bash
# Command lines of the example binaries (docs/ERRORS.md): bad ones must fail with the expected
# exit status (0 ok, 1 an error or a usage error, 2 a method failed: the same in every tool) and a
# message naming the problem; --json - / --csv - write to stdout; several
# prompts (--prompt repeated, --prompts-file) run as given.
#   tests/cli_errors.sh CASE BIN_DIR
set -u
case_name=$1
bin=$(cd "$2" && pwd)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# Every example tool: the same exit statuses (examples/exit_status.h).
tools="basic_benchmark comprehensive_benchmark quantized_cache custom_cache quality_report \
  cache_memory decode_speed generate tokenize quickstart"
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
  methods_with_commas)  # commas inside a spec belong to it
    expect 0 "sliding\(window=16,sinks=2\)\+int4.*" -- "$bin/basic_benchmark" \
      --methods "sliding(window=16,sinks=2)+int4,full_cache;paged+k:int8,v:int4" --prompt-len 8 \
      --max-new-tokens 2 --repetitions 1 --warmup 0 --no-quality
    grep -q "k:int8,v:int4" "$out" || { echo "FAIL: paged+k:int8,v:int4 not run as one spec"; cat "$out"; exit 1; }
    echo "ok: methods_with_commas (both specs)" ;;
  options_out_of_range)  # no method, a batch past the cap, a time budget that is not a time
    expect 1 "names no method" -- "$bin/basic_benchmark" --methods ''
    expect 1 "names no method" -- "$bin/decode_speed" --methods ''
    # An empty item in a list is a typo, not a shorter list (also when --methods is repeated).
    expect 1 "has an empty method name" -- "$bin/decode_speed" --methods ,
    expect 1 "has an empty method name" -- "$bin/basic_benchmark" --methods full_cache,,quant_int8
    expect 1 "has an empty method name" -- "$bin/quantized_cache" --methods , --methods full_cache
    expect 1 "has an empty method name" -- "$bin/quality_report" --methods 'full_cache;' 
    expect 1 "--batch 2147483647 is more than 65536" -- "$bin/decode_speed" --batch 2147483647
    expect 1 "--time-budget must be a positive number of seconds, got nan" -- \
      "$bin/comprehensive_benchmark" --time-budget nan
    expect 1 "--time-budget must be a positive number of seconds, got -1" -- \
      "$bin/comprehensive_benchmark" --time-budget -1
    # An empty value of a numeric option (CLI11 read it as 0).
    expect 1 "--batch: an empty value is not a number" -- "$bin/decode_speed" --batch ''
    expect 1 "an empty value is not a number" -- "$bin/generate" --seed '' --prompt hi
    expect 1 "an empty value is not a number" -- "$bin/comprehensive_benchmark" --time-budget ''
    # An option where a value belongs is not taken as the value (it was: a file named --csv).
    expect 1 "'--csv' is an option of this tool, not a value" -- \
      "$bin/cache_memory" --tokens 16 --markdown --csv
    expect 1 "'--prompt' is an option of this tool, not a value" -- \
      "$bin/generate" --device cpu --json=--prompt --prompt hi ;;
  shared_prefix_bad) expect 1 "shared-prefix '3x'" -- "$bin/comprehensive_benchmark" --shared-prefix 3x ;;
  cache_sweep_bad)  # a bad --cache-sweep is an error before any work
    expect 1 "cache-sweep 'random:tiny,4x': expected MODEL,BATCHxPROMPT" -- \
      "$bin/comprehensive_benchmark" --cache-sweep random:tiny,4x
    expect 1 "cache-sweep 'random:tiny,4x8/a,4': BATCH, each PROMPT and NEW must be integers" -- \
      "$bin/comprehensive_benchmark" --cache-sweep random:tiny,4x8/a,4
    expect 1 "every PROMPT must be >= 1" -- "$bin/comprehensive_benchmark" --cache-sweep random:tiny,4x8/0,4 ;;
  cache_sweep_runs)  # a cache sweep of its own: every cache method (not no_cache) at each prompt
    dir=$(mktemp -d)
    "$bin/comprehensive_benchmark" --methods no_cache,full_cache,quant_int4 --batch 1 \
      --prompt-len 8 --max-new-tokens 2 --repetitions 1 --warmup 0 --no-quality --no-plots \
      --shared-prefix none --cache-sweep "random:L2-E64-H2-P128,3x16/40,3" --out-dir "$dir" \
      --markdown "$dir/r.md" >"$out" 2>&1 || { echo "FAIL: exit $?"; cat "$out"; exit 1; }
    python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
rows = [(r["method"], r["batch"], r["prompt_len"], r["new_tokens"]) for r in d["results"]]
want = [(m, 3, p, 3) for m in ("full_cache", "quant_int4") for p in (16, 40)]
assert sorted(rows) == sorted(want), rows
assert d["context"]["model"] == "random:L2-E64-H2-P128" and all(r["error"] == "" for r in d["results"])
assert any("no_cache left out" in n for n in d["context"]["notes"]), d["context"]["notes"]
' "$dir/comprehensive_cache_sweep.json" || { echo "FAIL: cache sweep JSON"; exit 1; }
    for h in "## Main sweep" "## Cache sweep: every cache method as the context grows, speed and memory (batch 3, contexts up to 43 tokens)"; do
      grep -qF "$h" "$dir/r.md" || { echo "FAIL: no '$h' in the Markdown"; cat "$dir/r.md"; exit 1; }
    done
    [ "$(grep -c '^| `quant_int4` |' "$dir/r.md")" -eq 3 ] || { echo "FAIL: Markdown rows"; cat "$dir/r.md"; exit 1; }
    "$bin/comprehensive_benchmark" --methods full_cache --batch 1 --prompt-len 8 --max-new-tokens 2 \
      --repetitions 1 --warmup 0 --no-quality --no-plots --shared-prefix none --out-dir "$dir" >"$out" 2>&1
    grep -q "cache sweep: not run" "$out" || { echo "FAIL: auto ran the cache sweep after a given sweep"; cat "$out"; exit 1; }
    rm -rf "$dir"
    echo "ok: $case_name" ;;
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
    for t in $tools; do
      "$bin/$t" --help >"$out" 2>&1 || { echo "FAIL: $t --help exit $?"; cat "$out"; exit 1; }
      grep -qiE "usage|options" "$out" || { echo "FAIL: $t --help printed no usage"; cat "$out"; exit 1; }
    done
    echo "ok: $case_name" ;;
  unknown_flag_everywhere)  # every tool refuses a flag it does not know, naming it, with status 1
    for t in $tools; do
      "$bin/$t" --no-such-flag >"$out" 2>&1
      rc=$?
      [ $rc -eq 1 ] || { echo "FAIL: $t --no-such-flag exit $rc, expected 1"; cat "$out"; exit 1; }
      grep -qE "no-such-flag|usage" "$out" || { echo "FAIL: $t did not say why"; cat "$out"; exit 1; }
    done
    echo "ok: $case_name" ;;
  usage_error_status_everywhere)  # a flag value the tool refuses, or a flag without its value: 1
    for cmd in "basic_benchmark --batch 0" "comprehensive_benchmark --repetitions 0" \
               "quantized_cache --threads -1" "custom_cache --max-new-tokens -1" \
               "quality_report --segments 0" "cache_memory --tokens 1" "decode_speed --batch x" \
               "generate --max-new-tokens" "tokenize --text"; do
      # shellcheck disable=SC2086
      "$bin/"$cmd >"$out" 2>&1
      rc=$?
      [ $rc -eq 1 ] || { echo "FAIL: $cmd exit $rc, expected 1"; cat "$out"; exit 1; }
      [ -s "$out" ] || { echo "FAIL: $cmd said nothing"; exit 1; }
    done
    echo "ok: $case_name" ;;
  method_fails_status_everywhere)  # a failed method: 2 in every benchmark tool, reports written
    dir=$(mktemp -d)
    for t in basic_benchmark quantized_cache custom_cache comprehensive_benchmark; do
      "$bin/$t" --methods foo,full_cache --batch 1 --prompt-len 8 --max-new-tokens 2 \
        --repetitions 1 --warmup 0 --no-quality --json "$dir/$t.json" \
        $([ $t = comprehensive_benchmark ] && echo "--no-plots --shared-prefix none") \
        >"$out" 2>&1
      rc=$?
      [ $rc -eq 2 ] || { echo "FAIL: $t exit $rc, expected 2"; cat "$out"; exit 1; }
      grep -q "error: foo" "$out" || { echo "FAIL: $t did not name the method"; cat "$out"; exit 1; }
      [ -s "$dir/$t.json" ] || { echo "FAIL: $t wrote no report"; exit 1; }
    done
    rm -rf "$dir"
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
  both_stdout)
    expect 1 "both write to stdout" -- "$bin/basic_benchmark" --json - --csv -
    expect 1 "--csv - and --markdown - both write to stdout" -- "$bin/basic_benchmark" --csv - --markdown - ;;
  markdown_output)  # --markdown: the table as Markdown (stdout with '-'), one row per CSV row
    dir=$(mktemp -d)
    "$bin/basic_benchmark" --methods full_cache,quant_int8,foo --batch 1,2 --prompt-len 8 \
      --max-new-tokens 3 --repetitions 2 --warmup 0 --no-quality --markdown - --csv "$dir/r.csv" \
      >"$out" 2>"$dir/err"
    [ $? -eq 2 ] || { echo "FAIL: expected exit 2 (foo fails)"; cat "$dir/err"; exit 1; }
    grep -q "^| method | batch | prompt |" "$out" || { echo "FAIL: no Markdown header"; cat "$out"; exit 1; }
    grep -q "^|:---|---:|" "$out" || { echo "FAIL: no alignment row"; cat "$out"; exit 1; }
    rows=$(grep -c '^| `' "$out")
    csv_rows=$(($(wc -l <"$dir/r.csv") - 1))
    [ "$rows" -eq "$csv_rows" ] || { echo "FAIL: $rows Markdown rows, $csv_rows CSV rows"; cat "$out"; exit 1; }
    grep -q '^| `foo` | ERROR' "$out" || { echo "FAIL: no ERROR row"; cat "$out"; exit 1; }
    grep -q "^method  *batch" "$dir/err" || { echo "FAIL: the text table is not on stderr"; cat "$dir/err"; exit 1; }
    "$bin/cache_memory" --tokens 64 --markdown "$dir/m.md" >"$out" 2>&1 || { echo "FAIL: cache_memory"; cat "$out"; exit 1; }
    grep -q '^| `quant_int8 (full+int8' "$dir/m.md" && grep -q 'cache_memory --tokens 64' "$dir/m.md" \
      || { echo "FAIL: cache_memory --markdown"; cat "$dir/m.md"; exit 1; }
    rm -rf "$dir"
    echo "ok: $case_name" ;;
  prompts_file_errors)  # --prompts-file: a missing, empty or all-blank file, a bad JSONL line
    dir=$(mktemp -d)
    expect 1 "cannot read prompts file '$dir/none.txt'" -- "$bin/generate" --prompts-file "$dir/none.txt"
    : >"$dir/empty.txt"
    expect 1 "prompts file '$dir/empty.txt' is empty" -- "$bin/basic_benchmark" \
      --prompts-file "$dir/empty.txt" --methods full_cache --max-new-tokens 2 --repetitions 1 --warmup 0
    printf '\n  \r\n' >"$dir/blank.txt"
    expect 1 "its 2 lines are all blank" -- "$bin/comprehensive_benchmark" --prompts-file "$dir/blank.txt" \
      --methods full_cache --no-plots --out-dir "$dir"
    printf '{"prompt": "In the beginning"}\n\n{"text": "no prompt key"}\n' >"$dir/bad.jsonl"
    expect 1 "'$dir/bad.jsonl' line 3: the object has no \"prompt\" key" -- "$bin/generate" \
      --prompts-file "$dir/bad.jsonl"
    printf '{"prompt": "ok"}\n{"prompt": 7}\n' >"$dir/bad.jsonl"
    expect 1 "line 2: \"prompt\" is number" -- "$bin/quantized_cache" --prompts-file "$dir/bad.jsonl"
    printf '{"prompt": "ok"\n' >"$dir/bad.jsonl"
    expect 1 "line 1: not JSON" -- "$bin/basic_benchmark" --prompts-file "$dir/bad.jsonl"
    expect 1 "prompt 2 \\(\"\"\\) is empty" -- "$bin/generate" --prompt a --prompt ""
    expect nonzero "not expected: b" -- "$bin/generate" --prompt a b  # one value per --prompt
    printf 'short\n%s\n' "$(printf 'word %.0s' $(seq 100))" >"$dir/long.txt"
    expect 1 "prompt 2 .* has 101 tokens: with 1000 new tokens it needs 1100 positions" -- \
      "$bin/basic_benchmark" --prompts-file "$dir/long.txt" --max-new-tokens 1000
    rm -rf "$dir" ;;
  generate_several_prompts)  # one line per prompt (prompt + continuation); JSON per prompt
    dir=$(mktemp -d)
    printf 'In the beginning\r\n\r\nAnd God said\r\n' >"$dir/p.txt"
    "$bin/generate" --prompt Amen --prompts-file "$dir/p.txt" --max-new-tokens 5 --no-stop >"$out" \
      2>&1 || { echo "FAIL: exit $?"; cat "$out"; exit 1; }
    [ "$(wc -l <"$out")" -eq 3 ] || { echo "FAIL: expected 3 lines"; cat "$out"; exit 1; }
    if ! { grep -q '^Amen' "$out" && sed -n 2p "$out" | grep -q '^In the beginning.' &&
           sed -n 3p "$out" | grep -q '^And God said.'; }; then
      echo "FAIL: one line per prompt, in order"; cat "$out"; exit 1
    fi
    "$bin/generate" --prompt Amen --prompts-file "$dir/p.txt" --max-new-tokens 5 --no-stop \
      --json - >"$out" 2>/dev/null || { echo "FAIL: --json - exit $?"; exit 1; }
    python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
s = d["sequences"]
assert d["batch"] == 3 and [x["prompt"] for x in s] == ["Amen", "In the beginning", "And God said"], s
assert [x["prompt_tokens"] for x in s] == [2, 3, 3] and all(len(x["tokens"]) == 5 for x in s), s
assert all(isinstance(x["text"], str) and x["text"] for x in s) and "prompt" not in d, d
' "$out" || { echo "FAIL: JSON"; head -c 3000 "$out"; exit 1; }
    "$bin/generate" --max-new-tokens 3 --json - >"$out" 2>/dev/null || { echo "FAIL: exit $?"; exit 1; }
    python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
assert d["prompt"] == "In the beginning" and d["prompt_tokens"] == 3 and len(d["tokens"]) == 3, d
assert d["sequences"][0]["text"] == d["text"], d
' "$out" || { echo "FAIL: single-prompt JSON"; head -c 3000 "$out"; exit 1; }
    rm -rf "$dir"
    echo "ok: $case_name" ;;
  benchmark_prompts_file_ragged)  # prompts of different lengths run as given, lengths reported
    dir=$(mktemp -d)
    printf '{"prompt": "Amen"}\n{"prompt": "In the beginning God created the heaven and the earth."}\n' \
      >"$dir/p.jsonl"
    "$bin/basic_benchmark" --prompts-file "$dir/p.jsonl" --methods full_cache,quant_int8 \
      --max-new-tokens 3 --repetitions 1 --warmup 0 --no-quality --json - >"$out" 2>"$dir/err" \
      || { echo "FAIL: exit $?"; cat "$dir/err"; exit 1; }
    want=$(printf '%s,%s' "$(printf 'Amen' | "$bin/tokenize")" \
      "$(printf 'In the beginning God created the heaven and the earth.' | "$bin/tokenize")")
    python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
lens = [len(x) for x in json.loads("[" + sys.argv[2] + "]")]
for r in d["results"]:
    assert r["error"] == "" and r["prompt_lens"] == lens and r["batch"] == 2, (r, lens)
    assert r["prompt_len"] == max(lens) and r["prompt_tokens"] == sum(lens), r
' "$out" "$want" || { echo "FAIL: prompt lengths"; head -c 3000 "$out"; exit 1; }
    grep -qE "full_cache +2 +2\.\.11 " "$dir/err" || { echo "FAIL: table"; cat "$dir/err"; exit 1; }
    rm -rf "$dir"
    echo "ok: $case_name" ;;
  *) echo "unknown case $case_name"; exit 2 ;;
esac
