// generate: text generation with any eli model and KV-cache method; prints tokens as they come.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "eli/bench/metrics.h"
#include "eli/bench/report.h"
#include "eli/eli.h"
#include "threads.h"

int main(int argc, char** argv) {
  CLI::App app{"eli generate: GPT-2 text generation through a pluggable KV cache"};
  std::string model = "default", prompt = "In the beginning", device = "auto";
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
  app.add_option("--prompt", prompt, "Prompt text")->capture_default_str();
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
                 "JSON to this file ('-' = stdout; the streamed text then goes to stderr)");
  CLI11_PARSE(app, argc, argv);

  try {
    examples::apply_threads(threads);
    const at::Device dev = eli::model::resolve_device(device);
    const auto model_obj =
        eli::model::GPT2::from_spec(model, dev, eli::model::default_dtype(dev), seed);
    const auto tok = eli::Tokenizer::from_dir(eli::model::tokenizer_dir_for(model, tokenizer_dir));
    std::vector<int64_t> ids = tok.encode(prompt);
    ELI_CHECK(!ids.empty(), "the prompt is empty");
    for (int64_t& id : ids) {
      ELI_CHECK(id < model_obj.config().vocab_size,
                "prompt token {} is outside the model's vocabulary of {} (random models with a "
                "small vocab need a matching tokenizer)",
                id, model_obj.config().vocab_size);
    }
    eli::GenerationConfig cfg;
    cfg.max_new_tokens = max_new;
    cfg.method = method;
    cfg.sampling.temperature = temperature;
    cfg.sampling.top_k = top_k;
    cfg.sampling.top_p = top_p;
    cfg.sampling.seed = seed;
    if (stop_at_eos) cfg.stop_tokens = {model_obj.config().eos_token_id};

    eli::bench::RunContext ctx = eli::bench::RunContext::of(model_obj, model);
    for (int i = 0; i < argc; ++i) ctx.command += (i ? " " : "") + std::string(argv[i]);
    std::ostream& out = json_path == "-" ? std::cerr : std::cout;
    eli::StreamDecoder stream(tok);
    out << prompt << std::flush;
    const auto t0 = std::chrono::steady_clock::now();
    const auto res = eli::Generator(model_obj).generate(
        {ids}, cfg, [&](int64_t, int64_t t) { out << stream.push(t) << std::flush; });
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    out << stream.flush() << std::endl;
    if (stats) {
      const size_t n = res.tokens[0].size();
      std::fprintf(stderr, "[%zu tokens in %.2f s: %.1f tokens/s, first token %.1f ms, %s, %s]\n",
                   n, secs, n / secs, res.timing.prefill_ms, method.c_str(), dev.str().c_str());
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
      const nlohmann::json j = {
          {"schema_version", ctx.schema_version},
          {"context", nlohmann::json::parse(eli::bench::context_to_json(ctx))},
          {"config",
           {{"method", method},
            {"max_new_tokens", max_new},
            {"temperature", temperature},
            {"top_k", top_k},
            {"top_p", top_p},
            {"seed", seed},
            {"stop_at_eos", stop_at_eos}}},
          {"prompt", prompt},
          {"prompt_tokens", ids.size()},
          {"text", tok.decode(res.tokens[0])},
          {"tokens", res.tokens[0]},
          {"seconds", secs},
          {"tokens_per_sec", static_cast<double>(res.tokens[0].size()) / secs},
          {"ttft_ms", res.timing.prefill_ms},
          {"decode_p50_ms",
           d.empty() ? nlohmann::json() : nlohmann::json(eli::bench::percentile(d, 50))},
          {"decode_p90_ms",
           d.empty() ? nlohmann::json() : nlohmann::json(eli::bench::percentile(d, 90))},
          {"cache",
           {{"tokens_stored", s.tokens_stored},
            {"tokens_evicted", s.tokens_evicted},
            {"total_bytes", s.total_bytes()},
            {"reserved_bytes", s.reserved_bytes}}}};
      eli::bench::write_text_file(
          json_path, j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
