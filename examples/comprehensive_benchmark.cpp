// comprehensive_benchmark: the main job. With no arguments: all eight KV-cache methods on the
// default model (CUDA when present, else CPU), swept over batch size and prompt length, with
// quality against the full cache; writes results/comprehensive.{json,csv} and PNG plots. Then
// the cache sweep, where the KV cache is most of what a decode step reads: every cache method
// on a random-weight model at long contexts (CUDA: the 124M shape with 4096 positions, batch 32,
// contexts up to 4096; CPU: a smaller shape a 2-core machine runs in a few minutes), speed and
// memory only: results/comprehensive_cache_sweep.{json,csv}. Then the shared-prefix workload.
// With --prompt / --prompts-file the main sweep runs those prompts as given instead of cutting
// the evaluation text.
#include <ATen/Context.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

#include "bench_common.h"
#include "eli/benchmark/shared_prefix.h"
#include "exit_status.h"

namespace {

// The plot script: $ELI_PLOT_SCRIPT, the source tree's scripts/, or ./scripts/.
std::string find_plot_script() {
  if (const char* env = std::getenv("ELI_PLOT_SCRIPT"); env && *env) return env;
  for (const std::string& p : {eli::model::assets_dir() + "/../scripts/plot_results.py",
                               std::string("scripts/plot_results.py")}) {
    if (examples::file_exists(p)) return std::filesystem::weakly_canonical(p).string();
  }
  return "";
}

// A python3 that can import matplotlib: the one on PATH, else Debian's.
std::string find_python() {
  for (const char* py : {"python3", "/usr/bin/python3"}) {
    const std::string cmd = fmt::format("{} -c 'import matplotlib' >/dev/null 2>&1", py);
    if (std::system(cmd.c_str()) == 0) return py;
  }
  return "";
}

// Cost of one sequence on this machine, linear in its context: prefill ms per prompt token =
// pre0 + pre1 * P (attention grows with P), decode ms per step = dec0 + dec1 * context.
struct ContextCost {
  double pre0 = 0, pre1 = 0, dec0 = 0, dec1 = 0;
};

// Fitted to two short full-cache runs of `m` at batch 1, with prompts of short_len and long_len
// tokens inside the range the estimate is for (128 and 512 for the main sweep, 256 and 1024 for
// the CPU's cache sweep). At small widths attention is much of a prefill, so a per-token cost
// measured on a short prompt alone underestimated long ones (and no_cache, which prefills the
// whole sequence every step) 2-4x.
ContextCost calibrate(const eli::model::GPT2& m, const std::vector<int64_t>& ids, int64_t short_len,
                      int64_t long_len) {
  const eli::Generator gen(m);
  eli::GenerationConfig g;
  g.max_new_tokens = 9;
  const int64_t lens[2] = {short_len, long_len};
  double pre[2], dec[2];
  for (int i = 0; i < 2; ++i) {
    const auto prompt = eli::benchmark::make_prompt_batch(ids, 1, lens[i]);
    gen.generate(prompt, g);  // warm-up
    const auto r = gen.generate(prompt, g);
    pre[i] = r.timing.prefill_ms / static_cast<double>(lens[i]);
    dec[i] = eli::benchmark::median(r.timing.decode_ms);
  }
  const double span = static_cast<double>(lens[1] - lens[0]);
  ContextCost c;
  c.pre1 = std::max(0.0, (pre[1] - pre[0]) / span);  // a noisy machine may invert the two
  c.pre0 = std::max(0.0, pre[1] - c.pre1 * static_cast<double>(lens[1]));
  c.dec1 = std::max(0.0, (dec[1] - dec[0]) / span);
  c.dec0 = std::max(0.0, dec[1] - c.dec1 * static_cast<double>(lens[1]));
  return c;
}

std::string describe(const ContextCost& c) {
  return fmt::format(
      "calibration: prefill {:.3f} + {:.2e} x P ms per token, decode {:.3f} + {:.2e} x context ms "
      "per step and sequence",
      c.pre0, c.pre1, c.dec0, c.dec1);
}

// One sweep size; the first that fits the time budget runs (see estimate_s).
struct Plan {
  std::vector<int64_t> batch, lens;
  int max_new, reps, eval_tokens;
};

const std::vector<Plan>& ladder() {
  // Five repetitions everywhere: the spread (cv, min / max) needs them.
  static const std::vector<Plan> plans{{{1, 4, 8}, {128, 512, 896}, 32, 5, 448},
                                       {{1, 4}, {128, 384, 896}, 32, 5, 448},
                                       {{1, 4}, {64, 256, 512}, 32, 5, 320},
                                       {{1, 2}, {64, 256}, 24, 5, 192},
                                       {{1}, {32, 128}, 16, 5, 128}};
  return plans;
}

// Seconds the plan should take, from the costs measured on this machine (calibrate). Decode
// cost is taken as linear in the batch (which overestimates it), no_cache as a prefill of the
// whole sequence at every step; quality scores eval_tokens one by one after eval_prefix.
double estimate_s(const Plan& p, const std::vector<std::string>& methods, int eval_prefix,
                  int warmup, int warmup_tokens, const ContextCost& c) {
  auto prefill = [&](double b, double len) { return b * len * (c.pre0 + c.pre1 * len); };
  auto step = [&](double b, double ctx) { return b * (c.dec0 + c.dec1 * ctx); };
  double ms = 0;
  const bool has_full = std::find(methods.begin(), methods.end(), "full_cache") != methods.end();
  for (int64_t b64 : p.batch) {
    for (int64_t len64 : p.lens) {
      const double b = static_cast<double>(b64), len = static_cast<double>(len64);
      auto gen_ms = [&](const std::string& m, int n) {
        if (m == "no_cache") return n * prefill(b, len + n / 2.0);
        return prefill(b, len) + (n - 1) * step(b, len + n / 2.0);
      };
      for (const auto& m : methods) {
        ms +=
            p.reps * gen_ms(m, p.max_new) + warmup * gen_ms(m, std::min(warmup_tokens, p.max_new));
      }
      if (!has_full) ms += gen_ms("full_cache", p.max_new);
    }
  }
  ms += static_cast<double>(methods.size() + 1) *
        (prefill(1, eval_prefix) + p.eval_tokens * step(1, eval_prefix + p.eval_tokens / 2.0));
  return ms / 1000.0;
}

// The cache sweep: MODEL,BATCHxPROMPT[/PROMPT...],NEW, e.g.
// random:L12-E768-H12-P4096,32x512/1024/2048/4032,64.
struct CacheSweep {
  std::string model;
  int64_t batch = 0;
  std::vector<int64_t> prompts;
  int max_new = 0;
};

// On CUDA: the GPT-2 124M shape with 4096 positions, batch 32, contexts up to 4096 tokens (the
// last prompt + 64 new tokens): the KV cache is ~20x the bytes of the weights (fp16).
constexpr const char* kCudaCacheSweep = "random:L12-E768-H12-P4096,32x512/1024/2048/4032,64";
// On the CPU: GPT-2's head size (64) and vocabulary, 6 layers of width 384, 2048 positions; at
// batch 4 and 2048 tokens the KV cache (144 MiB in fp32) outweighs the weights (117 MiB). The
// largest of the presets whose estimate fits --time-budget runs (see estimate_sweep_s).
constexpr const char* kCpuCacheModel = "random:L6-E384-H6-P2048";

const std::vector<CacheSweep>& cpu_cache_ladder() {
  static const std::vector<CacheSweep> plans{{kCpuCacheModel, 4, {256, 512, 1024, 2032}, 16},
                                             {kCpuCacheModel, 4, {256, 1024, 2032}, 16},
                                             {kCpuCacheModel, 2, {256, 1024, 2032}, 16},
                                             {kCpuCacheModel, 2, {256, 512, 1024}, 16},
                                             {kCpuCacheModel, 2, {128, 512}, 16}};
  return plans;
}

std::string to_spec(const CacheSweep& c) {
  return fmt::format("{},{}x{},{}", c.model, c.batch, fmt::join(c.prompts, "/"), c.max_new);
}

// Seconds a cache sweep should take: per method and prompt, `reps` timed and `warmup` untimed
// runs (4 decode steps), each a prefill of batch x P tokens and the decode steps of batch
// sequences (decode cost taken as linear in the batch, which overestimates it).
double estimate_sweep_s(const CacheSweep& cs, size_t methods, int reps, int warmup,
                        const ContextCost& c) {
  double ms = 0;
  const double b = static_cast<double>(cs.batch);
  for (int64_t p64 : cs.prompts) {
    const double p = static_cast<double>(p64);
    const double prefill = b * p * (c.pre0 + c.pre1 * p);
    auto decode = [&](int n) { return (n - 1) * b * (c.dec0 + c.dec1 * (p + n / 2.0)); };
    ms += static_cast<double>(methods) * (reps * (prefill + decode(cs.max_new)) +
                                          warmup * (prefill + decode(std::min(4, cs.max_new))));
  }
  return ms / 1000.0;
}

CacheSweep parse_cache_sweep(const std::string& spec) {
  CacheSweep c;
  const size_t a = spec.find(','), b = spec.rfind(',');
  const size_t x = a == std::string::npos ? a : spec.find('x', a);
  ELI_CHECK(a != std::string::npos && b != a && x != std::string::npos && x < b,
            "--cache-sweep '{}': expected MODEL,BATCHxPROMPT[/PROMPT...],NEW (e.g. {}), auto or "
            "none",
            spec, kCudaCacheSweep);
  c.model = spec.substr(0, a);
  try {
    size_t used = 0;
    const std::string batch = spec.substr(a + 1, x - a - 1), news = spec.substr(b + 1);
    c.batch = std::stoll(batch, &used);
    ELI_CHECK(used == batch.size(), "");
    c.max_new = std::stoi(news, &used);
    ELI_CHECK(used == news.size(), "");
    std::string lens = spec.substr(x + 1, b - x - 1) + "/";
    for (size_t p = 0, q; (q = lens.find('/', p)) != std::string::npos; p = q + 1) {
      const std::string len = lens.substr(p, q - p);
      c.prompts.push_back(std::stoll(len, &used));
      ELI_CHECK(used == len.size(), "");
    }
  } catch (const std::exception&) {
    ELI_FAIL("--cache-sweep '{}': BATCH, each PROMPT and NEW must be integers", spec);
  }
  ELI_CHECK(c.batch >= 1 && c.max_new >= 2 &&
                std::all_of(c.prompts.begin(), c.prompts.end(), [](int64_t p) { return p >= 1; }),
            "--cache-sweep '{}': BATCH and every PROMPT must be >= 1, NEW >= 2", spec);
  return c;
}

// Speed and memory of every cache method (no_cache, which keeps no cache and recomputes every
// position at every step, is left out) where the KV cache, not the weights, is most of what a
// decode step reads: random weights, so no quality columns. Its own report (the text after the
// main one, <json>_cache_sweep.{json,csv}, a Markdown section). Returns the failed rows.
// With several candidates (the CPU presets, largest first), the largest whose estimate fits
// `budget_s` runs, the smallest when none does; the choice is in the report's notes.
int run_cache_sweep(const std::vector<CacheSweep>& candidates, double budget_s,
                    const examples::CommonOptions& o, const examples::Setup& main,
                    const examples::CommonOptions& out, int argc, char** argv,
                    std::string& markdown) {
  std::vector<std::string> methods;
  for (const auto& m : o.methods) {
    if (eli::method_kind(m) != eli::MethodKind::kRecompute) methods.push_back(m);
  }
  std::ostream& text = examples::text_out(o);
  if (methods.empty()) {
    text << "\nCache sweep skipped: no cache method among --methods\n";
    return 0;
  }
  examples::Setup s;
  s.device = main.device;
  s.model_spec = candidates.front().model;
  s.model.emplace(eli::model::GPT2::from_spec(s.model_spec, s.device,
                                              eli::model::default_dtype(s.device), o.seed));
  const int64_t vocab = s.model->config().vocab_size, n_pos = s.model->config().n_positions;
  for (int64_t id : main.text_ids) s.text_ids.push_back(id % vocab);
  CacheSweep cs = candidates.front();
  if (candidates.size() > 1) {
    const ContextCost cost = calibrate(*s.model, s.text_ids, 256, 1024);
    double est = 0;
    for (const CacheSweep& c : candidates) {
      cs = c;
      est = estimate_sweep_s(c, methods.size(), o.repetitions, o.warmup, cost);
      if (est <= budget_s) break;
    }
    s.notes.push_back(
        fmt::format("cache sweep chosen for a {:.0f} s budget ({}): {}; estimated {:.0f} s",
                    budget_s, describe(cost), to_spec(cs), est));
  }
  for (int64_t p : cs.prompts) {
    ELI_CHECK(p + cs.max_new - 1 <= n_pos,
              "--cache-sweep: prompt {} + {} new tokens exceed the model's n_positions = {}", p,
              cs.max_new, n_pos);
  }
  s.notes.push_back(fmt::format(
      "cache sweep: batch {} x prompts of {} tokens + {} new on {} (random weights: speed and "
      "memory only; the text's token ids folded modulo the vocabulary, {}){}",
      cs.batch, fmt::join(cs.prompts, ", "), cs.max_new, cs.model, vocab,
      methods.size() < o.methods.size() ? "; no_cache left out (it keeps no cache)" : ""));
  examples::CommonOptions po = o;
  po.no_quality = true;
  eli::benchmark::Benchmarker b(*s.model, examples::bench_config(po, s), nullptr);
  eli::benchmark::SweepConfig sweep;
  sweep.batch_sizes = {cs.batch};
  sweep.prompt_lens = cs.prompts;
  sweep.max_new_tokens = cs.max_new;
  const std::string title = fmt::format(
      "Cache sweep: every cache method as the context grows, speed and memory (batch {}, contexts "
      "up to {} tokens)",
      cs.batch, *std::max_element(cs.prompts.begin(), cs.prompts.end()) + cs.max_new);
  text << "\n" << title << "\n";
  const eli::benchmark::Report rep =
      examples::run_methods(s, b, {s.text_ids}, methods, sweep, argc, argv);
  markdown += "\n## " + title + "\n\n";
  return examples::emit(rep, out, &markdown);
}

// "REQUESTSxPREFIX+OWN" (e.g. 32x512+32) -> the shared-prefix workload's sizes.
eli::benchmark::SharedPrefixConfig parse_shared_prefix(const std::string& spec) {
  eli::benchmark::SharedPrefixConfig c;
  const size_t x = spec.find('x'), plus = spec.find('+');
  ELI_CHECK(x != std::string::npos && plus != std::string::npos && x < plus,
            "--shared-prefix '{}': expected REQUESTSxPREFIX+OWN (e.g. 32x512+32), auto or none",
            spec);
  try {
    c.requests = std::stoll(spec.substr(0, x));
    c.prefix_tokens = std::stoll(spec.substr(x + 1, plus - x - 1));
    c.own_tokens = std::stoll(spec.substr(plus + 1));
  } catch (const std::exception&) {
    ELI_FAIL("--shared-prefix '{}': REQUESTS, PREFIX and OWN must be integers", spec);
  }
  return c;
}

// "dir/name.json" -> "dir/name_cache_sweep.json"; stdout ("-") holds the main report only.
std::string with_suffix(const std::string& path, const std::string& suffix) {
  if (path == "-") return "";
  const size_t dot = path.rfind('.');
  const size_t slash = path.rfind('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) {
    return path + suffix;
  }
  return path.substr(0, dot) + suffix + path.substr(dot);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "eli comprehensive_benchmark: every KV-cache method, swept over batch size and prompt "
      "length, with quality against the full cache. No arguments = the README's main job."};
  examples::CommonOptions o;
  o.batch = {1, 4};
  o.prompt_len = {128, 384, 896};
  o.max_new_tokens = 32;
  o.warmup = 1;
  o.repetitions = 5;
  o.eval_prefix = 64;
  o.eval_tokens = 448;  // longer than the window / keep_last so eviction and pooling show
  // Small enough that eviction and pooling happen at the sweep's contexts.
  o.cache.window_size = 128;
  o.cache.chunk_size = 32;
  o.cache.keep_last = 64;
  std::string out_dir = "results", plots_dir;
  bool no_plots = false;
  double budget_s = 200;
  examples::PromptOptions po;
  examples::add_common_options(app, o);
  examples::add_benchmark_prompt_options(
      app, po,
      "Prompt text, one sequence per prompt, run as given at each --batch (default: rows of "
      "--prompt-len tokens of the evaluation text)");
  app.add_option("--time-budget", budget_s,
                 "Seconds the default sweep may take, and again the CPU's cache sweep: the "
                 "largest preset whose estimate (from a short calibration run) fits is chosen; "
                 "the main sweep's is fixed when --batch, --prompt-len, --max-new-tokens, "
                 "--repetitions, --eval-tokens, --prompt or --prompts-file is given")
      ->capture_default_str();
  app.add_option("--out-dir", out_dir,
                 "Directory for comprehensive.json / .csv when --json / --csv are not given")
      ->capture_default_str();
  app.add_option("--plots", plots_dir, "Directory for the PNG plots (default: OUT_DIR/plots)");
  app.add_flag("--no-plots", no_plots, "Do not run scripts/plot_results.py");
  std::string cache_sweep = "auto";
  app.add_option("--cache-sweep,--cache-point", cache_sweep,
                 fmt::format("After the main sweep, speed and memory of every cache method where "
                             "the KV cache is most of what a step reads: "
                             "MODEL,BATCHxPROMPT[/PROMPT...],NEW (random weights), reported to "
                             "<json>_cache_sweep.json/.csv; 'auto' = {} on CUDA, on the CPU the "
                             "largest preset from {} down to {} whose estimate fits "
                             "--time-budget (by default only after the default main sweep: "
                             "not when --batch, --prompt-len, ... choose it); 'none' = off",
                             kCudaCacheSweep, to_spec(cpu_cache_ladder().front()),
                             to_spec(cpu_cache_ladder().back())))
      ->capture_default_str();
  std::string shared_prefix = "auto";
  app.add_option("--shared-prefix", shared_prefix,
                 "The shared-prefix workload after the sweep: REQUESTSxPREFIX+OWN requests "
                 "sharing a PREFIX-token prompt, full_cache against paged(block=16) with prefix "
                 "reuse (prompt positions computed, KV bytes, TTFT, decode tok/s); 'auto' = "
                 "32x512+32 on CUDA, 8x256+16 on the CPU; 'none' = off")
      ->capture_default_str();
  if (const auto rc = examples::parse_command_line(app, argc, argv)) return *rc;
  int failed = 0;  // runs that ended in an ERROR row: exit status 2
  try {
    ELI_CHECK(std::isfinite(budget_s) && budget_s > 0,
              "--time-budget must be a positive number of seconds, got {}", budget_s);
    if (shared_prefix != "auto" && shared_prefix != "none") {
      parse_shared_prefix(shared_prefix);  // a bad value is an error before any work
    }
    if (cache_sweep != "auto" && cache_sweep != "none") parse_cache_sweep(cache_sweep);
    if (o.json.empty()) o.json = out_dir + "/comprehensive.json";
    if (o.csv.empty()) o.csv = out_dir + "/comprehensive.csv";
    if (plots_dir.empty()) plots_dir = out_dir + "/plots";
    auto s = examples::load(o, "random:L4-E256-H4");
    if (o.methods.empty()) o.methods = eli::method_names();
    const std::vector<std::vector<int64_t>> user_prompts =
        examples::user_prompts(po, s, o.max_new_tokens);
    const size_t sweep_flags = app.count("--batch") + app.count("--prompt-len") +
                               app.count("--max-new-tokens") + app.count("--repetitions") +
                               app.count("--eval-tokens");
    const bool explicit_sweep = sweep_flags > 0 || !user_prompts.empty();
    if (!explicit_sweep) {
      // Calibrate: prefill and decode cost of the full cache on this machine.
      const ContextCost cost = calibrate(*s.model, s.text_ids, 128, 512);
      const Plan* chosen = &ladder().back();
      double est = 0;
      for (const Plan& p : ladder()) {
        est = estimate_s(p, o.methods, o.eval_prefix, o.warmup, 4, cost);
        if (est <= budget_s) {
          chosen = &p;
          break;
        }
      }
      o.batch = chosen->batch;
      o.prompt_len = chosen->lens;
      o.max_new_tokens = chosen->max_new;
      o.repetitions = chosen->reps;
      o.eval_tokens = chosen->eval_tokens;
      s.notes.push_back(fmt::format(
          "sweep chosen for a {:.0f} s budget ({}): batch {}, prompt lengths {}, {} new tokens, "
          "{} repetitions, {} scored tokens; estimated {:.0f} s",
          budget_s, describe(cost), fmt::join(o.batch, ","), fmt::join(o.prompt_len, ","),
          o.max_new_tokens, o.repetitions, o.eval_tokens, est));
    }
    const int64_t n_pos = s.model->config().n_positions;
    std::vector<int64_t> lens;
    const bool cut = user_prompts.empty() || app.count("--prompt-len") > 0;
    for (int64_t len : cut ? o.prompt_len : std::vector<int64_t>{}) {
      if (len + o.max_new_tokens - 1 <= n_pos) {
        lens.push_back(len);
      } else {
        s.notes.push_back(
            fmt::format("prompt length {} skipped: with {} new tokens it exceeds "
                        "n_positions = {}",
                        len, o.max_new_tokens, n_pos));
      }
    }
    ELI_CHECK(!cut || !lens.empty(), "no prompt length fits the model's n_positions = {}", n_pos);
    if (o.device == "auto" && !s.device.is_cuda()) {
      s.notes.push_back(at::hasCUDA() ? "running on the CPU"
                                      : "no CUDA device (or a CPU-only build): running on the CPU");
    }

    eli::benchmark::Benchmarker b(*s.model, examples::bench_config(o, s),
                                  s.tokenizer ? &*s.tokenizer : nullptr);
    eli::benchmark::SweepConfig sweep;
    sweep.batch_sizes = o.batch;
    sweep.prompt_lens = lens;
    sweep.max_new_tokens = o.max_new_tokens;
    std::vector<std::vector<int64_t>> prompts{examples::prompt_stream(o, s)};
    if (!user_prompts.empty()) {
      prompts = user_prompts;
      sweep = examples::user_prompt_sweep(app, o, false);
      sweep.prompt_lens = lens;
    }
    eli::benchmark::Report rep = examples::run_methods(s, b, prompts, o.methods, sweep, argc, argv);
    std::string markdown = "## Main sweep\n\n";  // every section, written once to --markdown

    if (!no_plots) {
      const std::string script = find_plot_script();
      const std::string python = find_python();
      if (script.empty()) {
        s.notes.push_back("plots skipped: scripts/plot_results.py not found (set ELI_PLOT_SCRIPT)");
      } else if (python.empty()) {
        s.notes.push_back(fmt::format(
            "plots skipped: python3 with matplotlib is not available (Debian: apt-get install "
            "python3-matplotlib), then run: python3 {} {} --out {}",
            script, o.json, plots_dir));
        no_plots = true;
      }
      rep.context.notes = s.notes;
      failed += examples::emit(rep, o, &markdown);
      if (!script.empty() && !no_plots) {
        const std::string cmd =
            fmt::format("{} '{}' '{}' --out '{}'", python, script, o.json, plots_dir);
        if (std::system(cmd.c_str()) != 0) {
          std::fprintf(stderr, "warning: plotting failed: %s\n", cmd.c_str());
        }
      }
    } else {
      rep.context.notes = s.notes;
      failed += examples::emit(rep, o, &markdown);
    }
    if (cache_sweep == "auto" && explicit_sweep && app.count("--cache-sweep") == 0) {
      // The main sweep was given: a quick run stays quick. The main job runs it.
      examples::text_out(o) << "\ncache sweep: not run ('auto' runs it after the default "
                               "sweep; --cache-sweep auto|SPEC with the flags given)\n";
      cache_sweep = "none";
    }
    if (cache_sweep != "none") {
      std::vector<CacheSweep> candidates = cpu_cache_ladder();
      if (cache_sweep != "auto" || s.device.is_cuda()) {
        candidates = {parse_cache_sweep(cache_sweep == "auto" ? kCudaCacheSweep : cache_sweep)};
      }
      examples::CommonOptions out = o;
      out.json = with_suffix(o.json, "_cache_sweep");
      out.csv = with_suffix(o.csv, "_cache_sweep");
      failed += run_cache_sweep(candidates, budget_s, o, s, out, argc, argv, markdown);
      const std::string script = find_plot_script(), python = find_python();
      if (!no_plots && !out.json.empty() && !script.empty() && !python.empty()) {
        const std::string cmd =
            fmt::format("{} '{}' '{}' --out '{}/cache_sweep'", python, script, out.json, plots_dir);
        if (std::system(cmd.c_str()) != 0) {
          std::fprintf(stderr, "warning: plotting failed: %s\n", cmd.c_str());
        }
      }
    }
    if (shared_prefix == "auto") shared_prefix = s.device.is_cuda() ? "32x512+32" : "8x256+16";
    if (shared_prefix != "none") {
      eli::benchmark::SharedPrefixConfig sp = parse_shared_prefix(shared_prefix);
      sp.generation = examples::bench_config(o, s).generation;
      sp.max_new_tokens = std::min(o.max_new_tokens, 16);
      const std::string table =
          eli::benchmark::format_shared_prefix(eli::benchmark::run_shared_prefix(*s.model, sp), sp);
      examples::text_out(o) << "\n" << table;
      markdown += "\n## Shared prefix\n\n```text\n" + table + "```\n";
    }
    if (!o.markdown.empty()) {
      eli::benchmark::write_text_file(o.markdown, markdown);
      if (o.markdown != "-") examples::text_out(o) << "wrote " << o.markdown << "\n";
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return examples::kExitError;
  }
  return failed > 0 ? examples::kExitFailed : examples::kExitOk;
}
