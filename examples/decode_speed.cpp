// decode_speed: median milliseconds per decode step of one method at one (batch, prompt length)
// point, on random or real weights. The GPU-machine comparison with HF transformers uses it
// (tools/hf_decode_bench.py measures the HF side in the same run).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>

#include "eli/eli.h"

int main(int argc, char** argv) {
  CLI::App app{"eli decode_speed: ms per decode step for a method at (batch, prompt length)"};
  std::string model = "random:gpt2", device = "auto", methods = "full_cache";
  int batch = 1, prompt_len = 128, steps = 64, reps = 3;
  app.add_option("--model", model, "model dir, 'default' or random:NAME")->capture_default_str();
  app.add_option("--device", device, "cpu | cuda | auto")->capture_default_str();
  app.add_option("--methods", methods, "comma-separated methods")->capture_default_str();
  app.add_option("--batch", batch, "sequences")->capture_default_str();
  app.add_option("--prompt-len", prompt_len, "prompt tokens")->capture_default_str();
  app.add_option("--steps", steps, "decode steps per repetition")->capture_default_str();
  app.add_option("--reps", reps, "repetitions (the first is warm-up)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    ELI_CHECK(batch >= 1 && prompt_len >= 1 && steps >= 2 && reps >= 1,
              "--batch, --prompt-len, --reps must be >= 1 and --steps >= 2");
    const at::Device dev = eli::model::resolve_device(device);
    const auto m = eli::model::GPT2::from_spec(model, dev, eli::model::default_dtype(dev), 1);
    std::vector<std::vector<int64_t>> prompts(batch);
    for (int b = 0; b < batch; ++b) {
      for (int t = 0; t < prompt_len; ++t) {
        prompts[b].push_back((t * 7919 + b * 104729 + 13) % m.config().vocab_size);
      }
    }
    std::printf("%-28s %6s %8s %8s %12s %12s %12s\n", "method", "batch", "prompt", "steps",
                "ms/step p50", "ms/step p90", "prefill ms");
    size_t start = 0;
    while (start <= methods.size()) {
      size_t end = methods.find(',', start);
      if (end == std::string::npos) end = methods.size();
      const std::string method = methods.substr(start, end - start);
      start = end + 1;
      if (method.empty()) continue;
      eli::GenerationConfig cfg;
      cfg.method = method;
      cfg.max_new_tokens = steps;
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
      std::printf("%-28s %6d %8d %8d %12.3f %12.3f %12.2f\n", method.c_str(), batch, prompt_len,
                  steps, pct(0.5), pct(0.9), prefill);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
