// decode_speed: median milliseconds per decode step of one method at one (batch, prompt length)
// point, on random or real weights. The GPU-machine comparison with HF transformers uses it:
// scripts/peer_compare.sh runs it and bench/peers/hf_decode.py on the same card.
// Random models take a shape name or explicit sizes, e.g. random:L12-E768-H12-P4096 for the
// 124M shape with 4096 positions.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "eli/benchmark/report.h"
#include "eli/eli.h"
#include "exit_status.h"
#include "split_methods.h"
#include "threads.h"

namespace {

// Reads the array already in `path` (none or an empty file starts a new one) and writes it back
// with `rec` added, so that one file collects every method of every run of a comparison and a
// later crash keeps what was measured before it.
void append_json(const std::string& path, nlohmann::json rec) {
  nlohmann::json all = nlohmann::json::array();
  {
    std::ifstream in(path);
    if (in && in.peek() != std::ifstream::traits_type::eof()) {
      all = nlohmann::json::parse(in);
      ELI_CHECK(all.is_array(), "--json {}: the file holds something other than a JSON array",
                path);
    }
  }
  all.push_back(std::move(rec));
  std::ofstream out(path);
  out << all.dump(1) << "\n";
  ELI_CHECK(out.good(), "--json {}: cannot write the file", path);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"eli decode_speed: ms per decode step for a method at (batch, prompt length)"};
  std::string model = "random:gpt2", device = "auto", methods = "full_cache", json_path;
  int batch = 1, prompt_len = 128, steps = 64, reps = 3, threads = 0;
  bool no_graph = false;
  app.add_option("--model", model,
                 "model dir, 'default', random:NAME or random:L<n>-E<n>-H<n>[-V<n>][-P<n>]")
      ->capture_default_str();
  app.add_option("--device", device, "auto | cpu | cuda | cuda:N")->capture_default_str();
  examples::add_threads_option(app, threads);
  app.add_option("--methods", methods,
                 "Comma-separated methods or specs (commas inside a spec belong to it)")
      ->capture_default_str();
  app.add_option("--batch", batch, "sequences")->capture_default_str();
  app.add_option("--prompt-len", prompt_len, "prompt tokens")->capture_default_str();
  app.add_option("--steps", steps, "decode steps per repetition")->capture_default_str();
  app.add_option("--repetitions,--reps", reps, "timed repetitions (after one warm-up run)")
      ->capture_default_str();
  app.add_flag("--no-graph", no_graph, "CUDA: run the eager decode step, not the CUDA graph");
  app.add_option("--json", json_path,
                 "Append one record per method (with the run's context) to this JSON array file; "
                 "'-' prints the array to stdout (the table then goes to stderr)");
  if (const auto rc = examples::parse_command_line(app, argc, argv)) return *rc;
  try {
    ELI_CHECK(batch >= 1 && prompt_len >= 1 && steps >= 2 && reps >= 1,
              "--batch, --prompt-len, --repetitions must be >= 1 and --steps >= 2");
    ELI_CHECK(batch <= 65536, "--batch {} is more than 65536 sequences", batch);
    const std::string bad_methods = examples::empty_method_error(methods);
    ELI_CHECK(bad_methods.empty(), "--methods {}", bad_methods);
    ELI_CHECK(!examples::split_methods(methods).empty(), "--methods '{}' names no method", methods);
    examples::apply_threads(threads);
    const at::Device dev = eli::model::resolve_device(device);
    const auto m = eli::model::GPT2::from_spec(model, dev, eli::model::default_dtype(dev), 1);
    std::vector<std::vector<int64_t>> prompts(batch);
    for (int b = 0; b < batch; ++b) {
      for (int t = 0; t < prompt_len; ++t) {
        prompts[b].push_back((int64_t{t} * 7919 + int64_t{b} * 104729 + 13) %
                             m.config().vocab_size);
      }
    }
    eli::benchmark::RunContext ctx = eli::benchmark::RunContext::of(m, model);
    ctx.command = argv[0];
    for (int i = 1; i < argc; ++i) ctx.command += std::string(" ") + argv[i];
    FILE* text = json_path == "-" ? stderr : stdout;
    nlohmann::json to_stdout = nlohmann::json::array();
    std::fprintf(text, "%-28s %6s %8s %8s %12s %12s %12s\n", "method", "batch", "prompt", "steps",
                 "ms/step p50", "ms/step p90", "prefill ms");
    for (const std::string& method : examples::split_methods(methods)) {
      eli::GenerationConfig cfg;
      cfg.method = method;
      cfg.max_new_tokens = steps;
      cfg.cuda_graph = !no_graph;
      std::vector<double> all;
      double prefill = 0;
      for (int r = 0; r < reps + 1; ++r) {
        const auto res = eli::Generator(m).generate(prompts, cfg);
        if (r == 0) continue;  // warm-up
        all.insert(all.end(), res.timing.decode_ms.begin(), res.timing.decode_ms.end());
        prefill += res.timing.prefill_ms / reps;
      }
      std::sort(all.begin(), all.end());
      auto pct = [&](double p) { return all[static_cast<size_t>(p * (all.size() - 1))]; };
      std::fprintf(text, "%-28s %6d %8d %8d %12.3f %12.3f %12.2f\n", method.c_str(), batch,
                   prompt_len, steps, pct(0.5), pct(0.9), prefill);
      std::fflush(text);
      if (!json_path.empty()) {
        ctx.stop_clock();
        // graph: what was asked for; a method the graph cannot express still runs eagerly.
        nlohmann::json rec = {
            {"method", method},
            {"model", model},
            {"batch", batch},
            {"prompt", prompt_len},
            {"steps", steps},
            {"ms_p50", pct(0.5)},
            {"ms_p90", pct(0.9)},
            {"prefill_ms", prefill},
            {"device", dev.str()},
            {"repetitions", reps},
            {"graph", dev.is_cuda() && cfg.cuda_graph},
            {"context", nlohmann::json::parse(eli::benchmark::context_to_json(ctx))}};
        if (json_path == "-") {
          to_stdout.push_back(std::move(rec));
        } else {
          append_json(json_path, std::move(rec));
        }
      }
    }
    if (json_path == "-") std::printf("%s\n", to_stdout.dump(1).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return examples::kExitError;
  }
  return examples::kExitOk;
}
