#pragma once
// Shared by the example tools: the common flags (--model --device --threads --methods
// --max-new-tokens --batch --prompt-len --json --csv --markdown ...), model, tokenizer and
// evaluation-text loading, progress, and writing the reports. Header-only: each example is one
// executable. Same thing, same flag name and default in every tool.
#include <ATen/Parallel.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

#include "eli/benchmark/benchmarker.h"
#include "eli/benchmark/metrics.h"
#include "eli/benchmark/report.h"
#include "eli/eli.h"
#include "prompt_options.h"
#include "split_methods.h"
#include "threads.h"

namespace examples {

struct CommonOptions {
  std::string model = "default";
  std::string device = "auto";
  int threads = 0;        // intra-op threads; 0 = LibTorch's default
  std::string tokenizer;  // directory; default: the model's, else assets/tokenizer
  std::vector<std::string> methods;
  int max_new_tokens = 32;
  std::vector<int64_t> batch{1};
  std::vector<int64_t> prompt_len{128};
  std::string json, csv, markdown;
  int warmup = 1;
  int repetitions = 5;
  bool no_quality = false;
  std::string eval_file;  // default: assets/eval/kjv_heldout.txt
  int eval_prefix = 64;
  int eval_tokens = 256;
  uint64_t seed = 42;
  eli::CacheConfig cache;
  eli::QuantizationConfig quant;
};

// Bounds of the numeric flags: far above any real run, low enough that products of them (batch
// x tokens, prefix + scored tokens) stay inside int and int64 arithmetic.
constexpr int kMaxTokens = 1 << 20;
constexpr int64_t kMaxBatch = 1 << 16;
constexpr int kMaxRuns = 10000;

// --model --device --threads --tokenizer --seed
inline void add_model_options(CLI::App& app, CommonOptions& o) {
  app.add_option("--model", o.model,
                 "Hugging Face GPT-2 directory, 'default' (assets/models), or random:NAME "
                 "(gpt2, tiny, L<l>-E<e>-H<h>[-V<v>][-P<p>])")
      ->capture_default_str();
  app.add_option("--device", o.device, "auto | cpu | cuda | cuda:N")->capture_default_str();
  add_threads_option(app, o.threads);
  app.add_option("--tokenizer", o.tokenizer,
                 "Tokenizer directory (default: the model's, else assets/tokenizer)");
  app.add_option("--seed", o.seed, "Seed (random weights)")
      ->check(
          [](const std::string& v) {
            // CLI11 would wrap "-1" into an unsigned 2^64 - 1.
            return !v.empty() && v[0] == '-' ? "must be >= 0, got " + v : std::string();
          },
          "non-negative")
      ->capture_default_str();
}

// --json --csv --markdown
inline void add_output_options(CLI::App& app, CommonOptions& o) {
  app.add_option("--json", o.json,
                 "Write every number and the run context as JSON to this file ('-' = stdout)");
  app.add_option("--csv", o.csv, "Write one CSV row per result to this file ('-' = stdout)");
  app.add_option("--markdown", o.markdown,
                 "Write the report's tables as Markdown (the same columns and rows as the text "
                 "table), with the run line and command, to this file ('-' = stdout)");
}

// --eval-file --eval-prefix --eval-tokens
inline void add_eval_options(CLI::App& app, CommonOptions& o) {
  app.add_option("--eval-file", o.eval_file,
                 "Held-out text for perplexity and KL (default: assets/eval/kjv_heldout.txt)");
  app.add_option("--eval-prefix", o.eval_prefix, "Tokens prefilled before scoring")
      ->check(CLI::Range(1, kMaxTokens))
      ->capture_default_str();
  app.add_option("--eval-tokens", o.eval_tokens, "Tokens scored one by one through the cache")
      ->check(CLI::Range(1, kMaxTokens))
      ->capture_default_str();
}

// --window --sinks --block-size --chunk-size --keep-last --group-size --residual
inline void add_cache_options(CLI::App& app, CommonOptions& o) {
  app.add_option("--window", o.cache.window_size, "sliding_window: tokens kept")
      ->capture_default_str();
  app.add_option("--sinks", o.cache.sink_tokens, "sliding_window: attention-sink tokens")
      ->capture_default_str();
  app.add_option("--block-size", o.cache.block_size, "paged_attention: tokens per block")
      ->capture_default_str();
  app.add_option("--chunk-size", o.cache.chunk_size, "chunked_cache: tokens per summary")
      ->capture_default_str();
  app.add_option("--keep-last", o.cache.keep_last, "chunked_cache: newest tokens kept exact")
      ->capture_default_str();
  // Scale granularity is part of a method: quant_int8 is per token and head, quant_int4 groups;
  // other choices are specs in --methods, e.g. full+int8/per_tensor or full+int4/group64/zp.
  app.add_option("--group-size", o.quant.group_size,
                 "Group size of group-quantized codecs (quant_int4, quant_mixed's V): 32 or 64")
      ->capture_default_str();
  app.add_option("--residual", o.quant.residual_tokens, "Newest tokens kept unquantized")
      ->capture_default_str();
}

inline void add_methods_option(CLI::App& app, CommonOptions& o) {
  app.add_option_function<std::vector<std::string>>(
      "--methods",
      [&o](const std::vector<std::string>& values) {
        o.methods.clear();
        for (const auto& v : values) {
          const std::string bad = empty_method_error(v);
          if (!bad.empty()) throw CLI::ValidationError("--methods", bad);
          for (auto& m : split_methods(v)) o.methods.push_back(std::move(m));
        }
        if (o.methods.empty()) {
          throw CLI::ValidationError("--methods", "names no method (one or more, comma-separated)");
        }
      },
      "Comma-separated methods or specs (default: all eight): no_cache, full_cache, "
      "sliding_window, quant_int8, quant_int4, quant_mixed, paged_attention, chunked_cache, or "
      "specs such as sliding(window=16,sinks=2)+int4 or paged+k:int8,v:int4 (commas inside a "
      "spec belong to it; docs/CACHES.md)");
}

// Every flag of the benchmark tools.
inline void add_common_options(CLI::App& app, CommonOptions& o) {
  add_model_options(app, o);
  add_methods_option(app, o);
  app.add_option("--max-new-tokens", o.max_new_tokens, "Tokens generated per sequence")
      ->check(CLI::Range(0, kMaxTokens))
      ->capture_default_str();
  app.add_option("--batch", o.batch, "Batch size(s), comma-separated for a sweep")
      ->delimiter(',')
      ->check(CLI::Range(int64_t{1}, kMaxBatch))
      ->capture_default_str();
  app.add_option("--prompt-len", o.prompt_len,
                 "Prompt length(s) in tokens, comma-separated: rows of exactly this many tokens "
                 "cut from the evaluation text")
      ->delimiter(',')
      ->check(CLI::Range(int64_t{1}, int64_t{kMaxTokens}))
      ->capture_default_str();
  add_output_options(app, o);
  app.add_option("--warmup", o.warmup, "Untimed runs per point")
      ->check(CLI::Range(0, kMaxRuns))
      ->capture_default_str();
  app.add_option("--repetitions", o.repetitions, "Timed runs per point")
      ->check(CLI::Range(1, kMaxRuns))
      ->capture_default_str();
  app.add_flag("--no-quality", o.no_quality, "Skip perplexity / KL / top-1 / text similarity");
  add_eval_options(app, o);
  add_cache_options(app, o);
}

struct Setup {
  std::string model_spec;  // what was loaded (after a fallback)
  at::Device device = at::kCPU;
  std::optional<eli::model::GPT2> model;
  std::optional<eli::Tokenizer> tokenizer;  // only when its vocabulary matches the model's
  std::vector<int64_t> text_ids;            // the evaluation text, tokenized (ids < vocab)
  std::vector<std::string> notes;
};

inline bool file_exists(const std::string& p) { return std::filesystem::is_regular_file(p); }

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ELI_CHECK(static_cast<bool>(in), "cannot read '{}'", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Refuses two of --json / --csv / --markdown on stdout ('-'): they cannot share it.
inline void check_stdout_outputs(const std::string& json, const std::string& csv,
                                 const std::string& markdown) {
  const int n = (json == "-") + (csv == "-") + (markdown == "-");
  ELI_CHECK(n <= 1, "{} write to stdout; give all but one of them a file",
            json == "-" && csv == "-" && markdown == "-" ? "--json -, --csv - and --markdown -"
            : json == "-" && csv == "-"                  ? "--json - and --csv - both"
            : json == "-"                                ? "--json - and --markdown - both"
                                                         : "--csv - and --markdown - both");
}

/// Applies --threads; refuses two outputs on stdout.
inline void apply_common(const CommonOptions& o) {
  check_stdout_outputs(o.json, o.csv, o.markdown);
  apply_threads(o.threads);
}

/// Loads model, tokenizer and evaluation text. "default" falls back to a random model with a
/// note when the shipped model is missing.
inline Setup load(const CommonOptions& o, const std::string& fallback_model) {
  Setup s;
  ELI_CHECK(!o.model.empty(), "--model is empty (a directory, 'default' or random:NAME)");
  apply_common(o);
  s.device = eli::model::resolve_device(o.device);
  const at::ScalarType dtype = eli::model::default_dtype(s.device);
  s.model_spec = o.model;
  if (o.model == "default" && !file_exists(eli::model::default_model_dir() + "/config.json")) {
    s.notes.push_back(
        fmt::format("the default model ({}) is missing; using {} (random weights: "
                    "speed and memory are real, quality numbers are not)",
                    eli::model::default_model_dir(), fallback_model));
    s.model_spec = fallback_model;
  }
  s.model.emplace(eli::model::GPT2::from_spec(s.model_spec, s.device, dtype, o.seed));
  const int64_t vocab = s.model->config().vocab_size;

  const std::string tok_dir = eli::model::tokenizer_dir_for(s.model_spec, o.tokenizer);
  std::optional<eli::Tokenizer> tok;
  try {
    tok.emplace(eli::Tokenizer::from_dir(tok_dir));
  } catch (const eli::Error& e) {
    ELI_FAIL("tokenizer in '{}' cannot be loaded: {}", tok_dir, e.what());
  }

  const std::string eval =
      o.eval_file.empty() ? eli::model::assets_dir() + "/eval/kjv_heldout.txt" : o.eval_file;
  s.text_ids = tok->encode(read_file(eval));
  ELI_CHECK(s.text_ids.size() >= 2, "evaluation text '{}' has fewer than 2 tokens", eval);
  if (tok->vocab_size() == vocab) {
    s.tokenizer = std::move(tok);
  } else {
    // A random model with a small vocabulary: fold the ids into it. Speed and memory are
    // unaffected; text and quality then only compare methods with each other.
    for (int64_t& id : s.text_ids) id %= vocab;
    s.notes.push_back(
        fmt::format("model vocabulary ({}) differs from the tokenizer's ({}): token "
                    "ids of the text are folded modulo {}, no decoded text",
                    vocab, tok->vocab_size(), vocab));
  }
  return s;
}

/// The benchmark configuration from the flags; the first eval_prefix + eval_tokens tokens of
/// the evaluation text score quality, the prompts come from the text after them.
inline eli::benchmark::BenchmarkConfig bench_config(const CommonOptions& o, const Setup& s) {
  eli::benchmark::BenchmarkConfig c;
  c.warmup = o.warmup;
  c.repetitions = o.repetitions;
  c.quality = !o.no_quality;
  c.eval_prefix = o.eval_prefix;
  c.eval_tokens = o.eval_tokens;
  c.eval_ids = s.text_ids;
  c.generation.cache = o.cache;
  c.generation.quant = o.quant;
  c.generation.sampling.seed = o.seed;
  return c;
}

/// --prompt / --prompts-file for a tool whose benchmark runs them (after add_common_options):
/// --batch and --prompt-len then say in their help what they do to the prompts.
inline void add_benchmark_prompt_options(CLI::App& app, PromptOptions& p,
                                         const std::string& prompt_help) {
  add_prompt_options(app, p, prompt_help);
  app.get_option("--batch")->description(
      "Batch size(s), comma-separated for a sweep; with --prompt / --prompts-file one row per "
      "prompt unless given, then the rows cycle through the prompts");
  app.get_option("--prompt-len")
      ->description(
          "Prompt length(s) in tokens, comma-separated: rows of exactly this many tokens cut from "
          "the evaluation text; with --prompt / --prompts-file only when given: rows cut from "
          "those prompts joined into one stream (without it they run as given)");
}

/// --prompt / --prompts-file of a benchmark tool, tokenized (empty when neither was given).
/// They need a model whose vocabulary is the tokenizer's.
inline std::vector<std::vector<int64_t>> user_prompts(const PromptOptions& p, const Setup& s,
                                                      int max_new_tokens) {
  if (!prompts_given(p)) return {};
  ELI_CHECK(s.tokenizer.has_value(),
            "--prompt / --prompts-file need a model whose vocabulary matches the tokenizer's");
  return encode_prompts(prompt_texts(p), *s.tokenizer, s.model->config(), max_new_tokens);
}

/// The sweep for prompts of your own: they run as given, unless --batch (rows cycle through
/// them) or --prompt-len (rows of exactly that many tokens, cut from them joined into one
/// stream) is on the command line. `one_point`: only the first value of each list.
inline eli::benchmark::SweepConfig user_prompt_sweep(const CLI::App& app, const CommonOptions& o,
                                                     bool one_point) {
  eli::benchmark::SweepConfig sweep;
  sweep.max_new_tokens = o.max_new_tokens;
  auto pick = [&](const std::vector<int64_t>& v) {
    return one_point ? std::vector<int64_t>{v.front()} : v;
  };
  if (app.count("--batch") > 0) sweep.batch_sizes = pick(o.batch);
  if (app.count("--prompt-len") > 0) sweep.prompt_lens = pick(o.prompt_len);
  return sweep;
}

/// Token stream for prompts: the evaluation text after the part used for quality.
inline std::vector<int64_t> prompt_stream(const CommonOptions& o, const Setup& s) {
  const size_t skip = static_cast<size_t>(o.eval_prefix + o.eval_tokens);
  if (s.text_ids.size() > skip + 16) return {s.text_ids.begin() + skip, s.text_ids.end()};
  return s.text_ids;
}

inline std::string command_line(int argc, char** argv) {
  std::string c;
  for (int i = 0; i < argc; ++i) c += (i ? " " : "") + std::string(argv[i]);
  return c;
}

/// A report whose run context (model, device, command line, notes) and config are filled in.
inline eli::benchmark::Report new_report(const Setup& s, const eli::benchmark::Benchmarker& b,
                                         int argc, char** argv) {
  eli::benchmark::Report rep;
  rep.context = eli::benchmark::RunContext::of(*s.model, s.model_spec);
  rep.context.command = command_line(argc, argv);
  rep.context.notes = s.notes;
  rep.config = b.config();
  return rep;
}

/// Where the human-readable report goes: stdout, unless JSON, CSV or Markdown is written there
/// ('-').
inline std::ostream& text_out(const CommonOptions& o) {
  return o.json == "-" || o.csv == "-" || o.markdown == "-" ? std::cerr : std::cout;
}

/// Progress on stderr: rewritten in place on a terminal, one line per step in a log.
inline eli::benchmark::ProgressLine make_progress() {
  return eli::benchmark::ProgressLine(std::cerr, ::isatty(STDERR_FILENO) == 1);
}

/// Runs `methods` over `prompts` at `sweep` with a progress line on stderr; returns the report
/// with its context, config, sweep and results (emit() prints and writes it).
inline eli::benchmark::Report run_methods(const Setup& s, eli::benchmark::Benchmarker& b,
                                          const std::vector<std::vector<int64_t>>& prompts,
                                          const std::vector<std::string>& methods,
                                          const eli::benchmark::SweepConfig& sweep, int argc,
                                          char** argv) {
  auto progress = make_progress();
  b.set_progress([&](int64_t d, int64_t t, const std::string& w) { progress.update(d, t, w); });
  eli::benchmark::Report rep = new_report(s, b, argc, argv);
  rep.sweep = sweep;
  rep.results = b.compare_ids(prompts, methods, rep.sweep);
  progress.finish();
  b.set_progress({});  // the callback refers to this function's progress line
  return rep;
}

/// Prints the report (table, quality, notes) and writes JSON / CSV / Markdown when paths are
/// given ('-' = stdout; the text then goes to stderr). With `markdown_sections`, the Markdown
/// report is appended there instead (a tool with several reports writes one file of them).
/// Returns the number of rows whose method failed (each names its error in the table; the first
/// also goes to stderr), so that the example can exit with kExitFailed.
inline int emit(eli::benchmark::Report rep, const CommonOptions& o,
                std::string* markdown_sections = nullptr) {
  rep.context.stop_clock();
  std::ostream& out = text_out(o);
  out << eli::benchmark::format_report(rep) << std::flush;
  if (markdown_sections != nullptr) {
    *markdown_sections +=
        eli::benchmark::format_report(rep, eli::benchmark::TableFormat::kMarkdown);
  } else if (!o.markdown.empty()) {
    eli::benchmark::write_text_file(
        o.markdown, eli::benchmark::format_report(rep, eli::benchmark::TableFormat::kMarkdown));
    if (o.markdown != "-") out << "wrote " << o.markdown << "\n";
  }
  if (!o.json.empty()) {
    eli::benchmark::write_text_file(o.json, eli::benchmark::to_json(rep));
    if (o.json != "-") out << "wrote " << o.json << "\n";
  }
  if (!o.csv.empty()) {
    eli::benchmark::write_text_file(o.csv, eli::benchmark::to_csv(rep));
    if (o.csv != "-") out << "wrote " << o.csv << "\n";
  }
  out << std::flush;  // before anything a child process (the plot script) prints
  int failed = 0;
  for (const auto& r : rep.results) {
    if (r.error.empty()) continue;
    if (failed++ == 0) {
      std::fprintf(stderr, "error: %s (B=%lld, P=%s): %s\n", r.method.c_str(),
                   static_cast<long long>(r.batch), eli::benchmark::prompt_lens_label(r).c_str(),
                   r.error.c_str());
    }
  }
  if (failed > 1) std::fprintf(stderr, "error: %d runs failed in all (ERROR rows)\n", failed);
  return failed;
}

}  // namespace examples
