// comprehensive_benchmark: the main job. With no arguments: all eight KV-cache methods on the
// default model (CUDA when present, else CPU), swept over batch size and prompt length, with
// quality against the full cache; writes results/comprehensive.{json,csv} and PNG plots. On
// CUDA a second point follows where the KV cache is most of a step's reads (batch 32, context
// 4096, 124M shape): results/comprehensive_cache_point.{json,csv}. With --prompt /
// --prompts-file the sweep runs those prompts as given instead of cutting the evaluation text.
#include <ATen/Context.h>
#include <fmt/ranges.h>

#include <algorithm>

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

// Seconds the plan should take, from per-token costs measured on this machine: prefill ms per
// token (batched) and decode ms per step and sequence. Decode cost is taken as linear in the
// batch, no_cache as a prefill of the whole sequence at every step.
double estimate_s(const Plan& p, const std::vector<std::string>& methods, int eval_prefix,
                  int warmup, int warmup_tokens, double pre_ms, double dec_ms) {
  double ms = 0;
  const bool has_full = std::find(methods.begin(), methods.end(), "full_cache") != methods.end();
  for (int64_t b : p.batch) {
    for (int64_t len : p.lens) {
      auto gen_ms = [&](const std::string& m, int n) {
        if (m == "no_cache") return n * b * (len + n / 2.0) * pre_ms;
        return b * len * pre_ms + (n - 1) * b * dec_ms;
      };
      for (const auto& m : methods) {
        ms +=
            p.reps * gen_ms(m, p.max_new) + warmup * gen_ms(m, std::min(warmup_tokens, p.max_new));
      }
      if (!has_full) ms += gen_ms("full_cache", p.max_new);
    }
  }
  ms += static_cast<double>(methods.size() + 1) * (eval_prefix * pre_ms + p.eval_tokens * dec_ms);
  return ms / 1000.0;
}

// The cache-heavy point: MODEL,BATCHxPROMPT,NEW (e.g. random:L12-E768-H12-P4096,32x3968,64).
struct CachePoint {
  std::string model;
  int64_t batch = 0, prompt = 0;
  int max_new = 0;
};

CachePoint parse_cache_point(const std::string& spec) {
  CachePoint c;
  const size_t a = spec.find(','), b = spec.rfind(',');
  const size_t x = a == std::string::npos ? a : spec.find('x', a);
  ELI_CHECK(a != std::string::npos && b != a && x != std::string::npos && x < b,
            "--cache-point '{}': expected MODEL,BATCHxPROMPT,NEW (e.g. "
            "random:L12-E768-H12-P4096,32x3968,64) or 'none'",
            spec);
  c.model = spec.substr(0, a);
  try {
    c.batch = std::stoll(spec.substr(a + 1, x - a - 1));
    c.prompt = std::stoll(spec.substr(x + 1, b - x - 1));
    c.max_new = std::stoi(spec.substr(b + 1));
  } catch (const std::exception&) {
    ELI_FAIL("--cache-point '{}': BATCH, PROMPT and NEW must be integers", spec);
  }
  ELI_CHECK(c.batch >= 1 && c.prompt >= 1 && c.max_new >= 2,
            "--cache-point '{}': BATCH and PROMPT must be >= 1, NEW >= 2", spec);
  return c;
}

// Speed and memory of every method where the KV cache, not the weights, is most of what a decode
// step reads (random weights: no quality columns). Its own report: <out>_cache_point.{json,csv}.
int run_cache_point(const CachePoint& cp, const examples::CommonOptions& o,
                    const examples::Setup& main, const std::string& json, const std::string& csv,
                    int argc, char** argv, std::string& markdown) {
  examples::Setup s;
  s.device = main.device;
  s.model_spec = cp.model;
  s.model.emplace(
      eli::model::GPT2::from_spec(cp.model, s.device, eli::model::default_dtype(s.device), o.seed));
  const int64_t vocab = s.model->config().vocab_size;
  ELI_CHECK(cp.prompt + cp.max_new - 1 <= s.model->config().n_positions,
            "--cache-point: prompt {} + {} new tokens exceed the model's n_positions = {}",
            cp.prompt, cp.max_new, s.model->config().n_positions);
  for (int64_t id : main.text_ids) s.text_ids.push_back(id % vocab);
  s.notes.push_back(fmt::format(
      "cache-heavy point: batch {} x {} prompt tokens + {} new on {} (random weights: speed and "
      "memory only); the text's token ids folded modulo the vocabulary ({})",
      cp.batch, cp.prompt, cp.max_new, cp.model, vocab));
  examples::CommonOptions po = o;
  po.no_quality = true;
  eli::benchmark::Benchmarker b(*s.model, examples::bench_config(po, s), nullptr);
  eli::benchmark::SweepConfig sweep;
  sweep.batch_sizes = {cp.batch};
  sweep.prompt_lens = {cp.prompt};
  sweep.max_new_tokens = cp.max_new;
  const eli::benchmark::Report rep =
      examples::run_methods(s, b, {s.text_ids}, o.methods, sweep, argc, argv);
  examples::CommonOptions out = o;
  out.json = json;
  out.csv = csv;
  markdown += "\n## Cache-heavy point\n\n";
  return examples::emit(rep, out, &markdown);
}

// "dir/name.json" -> "dir/name_cache_point.json"; stdout ("-") holds the main report only.
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
                 "Seconds the default sweep may take: the largest preset sweep whose estimate "
                 "(from a short calibration run) fits is chosen; ignored when --batch, "
                 "--prompt-len, --max-new-tokens, --repetitions, --eval-tokens, --prompt or "
                 "--prompts-file is given")
      ->capture_default_str();
  app.add_option("--out-dir", out_dir,
                 "Directory for comprehensive.json / .csv when --json / --csv are not given")
      ->capture_default_str();
  app.add_option("--plots", plots_dir, "Directory for the PNG plots (default: OUT_DIR/plots)");
  app.add_flag("--no-plots", no_plots, "Do not run scripts/plot_results.py");
  std::string cache_point = "auto";
  app.add_option("--cache-point", cache_point,
                 "A second, cache-heavy point after the sweep: MODEL,BATCHxPROMPT,NEW, speed "
                 "and memory of every method, reported to <json>_cache_point.json/.csv; 'auto' = "
                 "random:L12-E768-H12-P4096,32x3968,64 on CUDA, none on the CPU; 'none' = off")
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
    if (shared_prefix != "auto" && shared_prefix != "none") {
      parse_shared_prefix(shared_prefix);  // a bad value is an error before any work
    }
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
      // Calibrate: per-token prefill and decode cost of the full cache on this machine.
      const eli::Generator gen(*s.model);
      eli::GenerationConfig g;
      g.max_new_tokens = 9;
      const auto calib_prompt = eli::benchmark::make_prompt_batch(s.text_ids, 1, 64);
      gen.generate(calib_prompt, g);
      const auto r = gen.generate(calib_prompt, g);
      const double pre_ms = r.timing.prefill_ms / 64.0;
      const double dec_ms = eli::benchmark::mean(r.timing.decode_ms);
      const Plan* chosen = &ladder().back();
      double est = 0;
      for (const Plan& p : ladder()) {
        est = estimate_s(p, o.methods, o.eval_prefix, o.warmup, 4, pre_ms, dec_ms);
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
          "sweep chosen for a {:.0f} s budget (calibration: prefill {:.2f} ms/token, decode "
          "{:.2f} ms/step): batch {}, prompt lengths {}, {} new tokens, {} repetitions, "
          "{} scored tokens; estimated {:.0f} s",
          budget_s, pre_ms, dec_ms, fmt::join(o.batch, ","), fmt::join(o.prompt_len, ","),
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
    if (cache_point == "auto") {
      cache_point = s.device.is_cuda() ? "random:L12-E768-H12-P4096,32x3968,64" : "none";
    }
    if (cache_point != "none") {
      examples::text_out(o) << "\n";
      failed +=
          run_cache_point(parse_cache_point(cache_point), o, s, with_suffix(o.json, "_cache_point"),
                          with_suffix(o.csv, "_cache_point"), argc, argv, markdown);
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
