// quantized_cache: greedy generation through INT8, INT4 and mixed (INT8 K / INT4 V) caches next
// to the full cache: the text each produces, the exact cache bytes, and quality.
#include "bench_common.h"
#include "exit_status.h"

int main(int argc, char** argv) {
  CLI::App app{"eli quantized_cache: what INT8 / INT4 / mixed KV caches cost and save"};
  examples::CommonOptions o;
  o.max_new_tokens = 48;
  examples::PromptOptions po;
  po.prompts = {"And God said unto Moses,"};
  std::vector<std::string> modes{"int8", "int4", "mixed"};
  examples::add_common_options(app, o);
  examples::add_prompt_options(app, po,
                               "Prompt for the side-by-side generations, each prompt on its own");
  app.add_option("--modes", modes, "Quantization modes: int8, int4, mixed")
      ->delimiter(',')
      ->capture_default_str();
  if (const auto rc = examples::parse_command_line(app, argc, argv)) return *rc;
  int failed = 0;  // methods that ended in an ERROR row: exit status 2
  try {
    auto s = examples::load(o, "random:L4-E256-H4");
    const eli::Tokenizer* tok = s.tokenizer ? &*s.tokenizer : nullptr;
    eli::benchmark::Benchmarker b(*s.model, examples::bench_config(o, s), tok);
    std::vector<std::string> texts;
    std::vector<std::vector<int64_t>> prompts;
    if (tok) {
      texts = examples::prompt_texts(po);  // --prompt's default when none is given
      prompts = examples::encode_prompts(texts, *tok, s.model->config(), o.max_new_tokens);
    } else {
      // A random small-vocabulary model: 16 token ids of the evaluation text.
      ELI_CHECK(!examples::prompts_given(po),
                "--prompt / --prompts-file need a model whose vocabulary matches the tokenizer's");
      std::vector<int64_t> ids = examples::prompt_stream(o, s);
      ids.resize(std::min<size_t>(ids.size(), 16));
      texts.push_back(fmt::format("{} ids", ids.size()));
      prompts.push_back(std::move(ids));
    }

    // Side by side: the full cache, then each quantized mode, for each prompt.
    const eli::Generator gen(*s.model);
    eli::GenerationConfig full = b.config().generation;
    full.method = "full_cache";
    full.max_new_tokens = o.max_new_tokens;
    std::ostream& out = examples::text_out(o);
    std::vector<std::string> methods{"full_cache"};
    for (const auto& m : modes) methods.push_back("quant_" + m);
    for (size_t i = 0; i < prompts.size(); ++i) {
      const std::vector<int64_t>& prompt_ids = prompts[i];
      const auto ref = gen.generate({prompt_ids}, full);
      const double full_mb =
          eli::benchmark::to_mb(static_cast<double>(ref.cache_stats.total_bytes()));
      auto show = [&](const std::string& name, const std::vector<int64_t>& ids, double mb) {
        std::string text = tok ? tok->decode(ids) : fmt::format("{} token ids", ids.size());
        for (char& ch : text) ch = ch == '\n' ? ' ' : ch;
        out << fmt::format("{:<12} {:>8.4f} MB  {:>5.2f}x  ROUGE-L {:.3f}\n  {}\n", name, mb,
                           full_mb / mb, eli::benchmark::rouge_l_f1(ref.tokens[0], ids), text);
      };
      std::string shown = texts[i];
      for (char& ch : shown) ch = ch == '\n' ? ' ' : ch;
      out << (i ? "\n" : "") << "prompt: " << shown << " (" << prompt_ids.size() << " tokens) + "
          << o.max_new_tokens << " new tokens\n";
      out << fmt::format(
          "cache        cache size  smaller than full_cache ({}, the model's dtype)   ROUGE-L: "
          "token level, vs full_cache\n",
          s.model->dtype() == at::kHalf ? "float16" : "float32");
      show("full_cache", ref.tokens[0], full_mb);
      for (const auto& m : modes) {
        const auto q = b.generate_with_quantized_kv(prompt_ids, o.max_new_tokens, m);
        show(q.method, q.tokens, q.cache_mb);
      }
    }
    out << "\nThe table below measures the same methods on prompts of --prompt-len tokens:\n";

    eli::benchmark::SweepConfig sweep;
    sweep.batch_sizes = o.batch;
    sweep.prompt_lens = o.prompt_len;
    sweep.max_new_tokens = o.max_new_tokens;
    failed = examples::emit(
        examples::run_methods(s, b, {examples::prompt_stream(o, s)},
                              o.methods.empty() ? methods : o.methods, sweep, argc, argv),
        o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return examples::kExitError;
  }
  return failed > 0 ? examples::kExitFailed : examples::kExitOk;
}
