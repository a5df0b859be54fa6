// generate: text generation with any eli model and KV-cache method. One prompt: its tokens are
// printed as they come. Several (--prompt repeated, --prompts-file): one batch of the prompts as
// given (ragged), then one line per prompt, the prompt followed by its continuation.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "eli/benchmark/metrics.h"
#include "eli/benchmark/report.h"
#include "eli/eli.h"
#include "exit_status.h"
#include "prompt_options.h"
#include "threads.h"

namespace {

// Line breaks inside a text written as the two characters "\n" / "\r", so that a sequence
// stays on one line (--json has the exact text).
std::string one_line(const std::string& text) {
  std::string out;
  for (char c : text) out += c == '\n' ? std::string("\\n") : c == '\r' ? "\\r" : std::string(1, c);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"eli generate: GPT-2 text generation through a pluggable KV cache"};
  std::string model = "default", device = "auto";
  examples::PromptOptions prompt_opts;
  prompt_opts.prompts = {"In the beginning"};
  std::string method = "full_cache", tokenizer_dir, json_path;
  int max_new = 64, top_k = 0;
  float temperature = 0.0f, top_p = 1.0f;
  uint64_t seed = 42;
  bool stop_at_eos = true, stats = false;
  int threads = 0;
  app.add_option("--model", model,
                 "Hugging Face GPT-2 directory, 'default' (the shipped model), or random:NAME "
                 "(gpt2, gpt2-medium, gpt2-large, gpt2-xl, L<l>-E<e>-H<h>[-V<v>][-P<p>])")
      ->capture_default_str();
  examples::add_prompt_options(app, prompt_opts, "Prompt text");
  app.add_option("--max-new-tokens", max_new, "Tokens to generate")->capture_default_str();
  app.add_option("--device", device, "auto | cpu | cuda | cuda:N")->capture_default_str();
  examples::add_threads_option(app, threads);
  app.add_option("--method", method,
                 "KV-cache method: no_cache, full_cache, sliding_window, quant_int8, quant_int4, "
                 "quant_mixed, paged_attention, chunked_cache, or a spec (docs/CACHES.md)")
      ->capture_default_str();
  app.add_option("--temperature", temperature, "0 = greedy")->capture_default_str();
  app.add_option("--top-k", top_k, "0 = off")->capture_default_str();
  app.add_option("--top-p", top_p, "1 = off")->capture_default_str();
  app.add_option("--seed", seed, "Sampling / random-weights seed")->capture_default_str();
  app.add_option("--tokenizer", tokenizer_dir,
                 "Tokenizer directory (default: the model's, else assets/tokenizer)");
  app.add_flag("!--no-stop", stop_at_eos, "Do not stop at <|endoftext|>");
  app.add_flag("--stats", stats, "Print timing and cache statistics to stderr");
  app.add_option("--json", json_path,
                 "Write the text, token ids, timing, cache statistics and the run's context as "
                 "JSON to this file ('-' = stdout; the printed text then goes to stderr); "
                 "\"sequences\" holds each prompt with its continuation");
  if (const auto rc = examples::parse_command_line(app, argc, argv)) return *rc;

  try {
    examples::apply_threads(threads);
    const at::Device dev = eli::model::resolve_device(device);
    const auto model_obj =
        eli::model::GPT2::from_spec(model, dev, eli::model::default_dtype(dev), seed);
    const auto tok = eli::Tokenizer::from_dir(eli::model::tokenizer_dir_for(model, tokenizer_dir));
    const std::vector<std::string> prompts = examples::prompt_texts(prompt_opts);
    const std::vector<std::vector<int64_t>> ids =
        examples::encode_prompts(prompts, tok, model_obj.config(), max_new);
    eli::GenerationConfig cfg;
    cfg.max_new_tokens = max_new;
    cfg.method = method;
    cfg.sampling.temperature = temperature;
    cfg.sampling.top_k = top_k;
    cfg.sampling.top_p = top_p;
    cfg.sampling.seed = seed;
    if (stop_at_eos) cfg.stop_tokens = {model_obj.config().eos_token_id};

    eli::benchmark::RunContext ctx = eli::benchmark::RunContext::of(model_obj, model);
    for (int i = 0; i < argc; ++i) ctx.command += (i ? " " : "") + std::string(argv[i]);
    std::ostream& out = json_path == "-" ? std::cerr : std::cout;
    const bool single = prompts.size() == 1;
    eli::StreamDecoder stream(tok);
    if (single) out << prompts[0] << std::flush;
    const auto t0 = std::chrono::steady_clock::now();
    const auto res = eli::Generator(model_obj).generate(ids, cfg, [&](int64_t, int64_t t) {
      if (single) out << stream.push(t) << std::flush;
    });
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::vector<std::string> texts;
    size_t generated = 0;
    for (const auto& t : res.tokens) {
      texts.push_back(tok.decode(t));
      generated += t.size();
    }
    if (single) {
      out << stream.flush() << std::endl;
    } else {
      for (size_t i = 0; i < prompts.size(); ++i) out << one_line(prompts[i] + texts[i]) << "\n";
      out << std::flush;
    }
    if (stats) {
      const std::string batch =
          single ? "" : fmt::format(", {} sequences, all together", prompts.size());
      std::fprintf(stderr, "[%zu tokens in %.2f s: %.1f tokens/s, first token %.1f ms, %s, %s%s]\n",
                   generated, secs, generated / secs, res.timing.prefill_ms, method.c_str(),
                   dev.str().c_str(), batch.c_str());
      const auto& s = res.cache_stats;
      std::fprintf(stderr,
                   "cache: %lld tokens stored, %lld evicted, %.3f MB held (payload %lld, scales "
                   "%lld, residual %lld, metadata %lld bytes), %.3f MB reserved\n",
                   static_cast<long long>(s.tokens_stored),
                   static_cast<long long>(s.tokens_evicted), s.total_bytes() / 1e6,
                   static_cast<long long>(s.payload_bytes), static_cast<long long>(s.scale_bytes),
                   static_cast<long long>(s.residual_bytes),
                   static_cast<long long>(s.metadata_bytes), s.reserved_bytes / 1e6);
    }
    if (!json_path.empty()) {
      ctx.stop_clock();
      const auto& s = res.cache_stats;
      const auto& d = res.timing.decode_ms;
      nlohmann::json sequences = nlohmann::json::array();
      for (size_t i = 0; i < prompts.size(); ++i) {
        sequences.push_back({{"prompt", prompts[i]},
                             {"prompt_tokens", ids[i].size()},
                             {"text", texts[i]},
                             {"tokens", res.tokens[i]}});
      }
      nlohmann::json j = {
          {"schema_version", ctx.schema_version},
          {"context", nlohmann::json::parse(eli::benchmark::context_to_json(ctx))},
          {"config",
           {{"method", method},
            {"max_new_tokens", max_new},
            {"temperature", temperature},
            {"top_k", top_k},
            {"top_p", top_p},
            {"seed", seed},
            {"stop_at_eos", stop_at_eos}}},
          {"batch", prompts.size()},
          {"sequences", sequences},
          {"seconds", secs},
          {"tokens_per_sec", static_cast<double>(generated) / secs},
          {"ttft_ms", res.timing.prefill_ms},
          {"decode_p50_ms",
           d.empty() ? nlohmann::json() : nlohmann::json(eli::benchmark::percentile(d, 50))},
          {"decode_p90_ms",
           d.empty() ? nlohmann::json() : nlohmann::json(eli::benchmark::percentile(d, 90))},
          {"cache",
           {{"tokens_stored", s.tokens_stored},
            {"tokens_evicted", s.tokens_evicted},
            {"total_bytes", s.total_bytes()},
            {"reserved_bytes", s.reserved_bytes}}}};
      if (single) {  // the single-prompt layout of earlier versions
        for (const char* key : {"prompt", "prompt_tokens", "text", "tokens"}) {
          j[key] = sequences[0][key];
        }
      }
      eli::benchmark::write_text_file(
          json_path, j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return examples::kExitError;
  }
  return examples::kExitOk;
}
