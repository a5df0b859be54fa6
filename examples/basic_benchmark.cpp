// basic_benchmark: every KV-cache method (or those given) at one point: throughput, latency,
// memory, exact cache bytes and quality against the full cache. The point is --batch rows of
// --prompt-len tokens of the evaluation text, or the prompts given (--prompt, --prompts-file),
// one sequence each, as given.
#include "bench_common.h"
#include "exit_status.h"

int main(int argc, char** argv) {
  CLI::App app{
      "eli basic_benchmark: compare KV-cache methods at one batch size and prompt length, or on "
      "prompts of your own"};
  examples::CommonOptions o;
  examples::PromptOptions po;
  examples::add_common_options(app, o);
  examples::add_benchmark_prompt_options(
      app, po,
      "Prompt text, one sequence per prompt, run as given (default: --batch rows of --prompt-len "
      "tokens of the evaluation text)");
  if (const auto rc = examples::parse_command_line(app, argc, argv)) return *rc;
  int failed = 0;  // methods that ended in an ERROR row: exit status 2
  try {
    auto s = examples::load(o, "random:L4-E256-H4");
    if (o.methods.empty()) o.methods = eli::method_names();
    eli::benchmark::Benchmarker b(*s.model, examples::bench_config(o, s),
                                  s.tokenizer ? &*s.tokenizer : nullptr);
    std::vector<std::vector<int64_t>> prompts = examples::user_prompts(po, s, o.max_new_tokens);
    eli::benchmark::SweepConfig sweep;
    sweep.max_new_tokens = o.max_new_tokens;
    if (!prompts.empty()) {
      sweep = examples::user_prompt_sweep(app, o, true);
    } else {
      prompts = eli::benchmark::make_prompt_batch(examples::prompt_stream(o, s), o.batch.front(),
                                                  o.prompt_len.front());
    }
    const eli::benchmark::Report rep =
        examples::run_methods(s, b, prompts, o.methods, sweep, argc, argv);
    failed = examples::emit(rep, o);
    if (s.tokenizer) {
      std::ostream& out = examples::text_out(o);
      out << "\nGreedy continuations (sequence 0):\n";
      for (const auto& r : rep.results) {
        if (!r.error.empty()) continue;
        std::string text = r.sample_text;
        for (char& ch : text) ch = ch == '\n' ? ' ' : ch;
        out << fmt::format("  {:<18} {}\n", r.method, text.substr(0, 100));
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return examples::kExitError;
  }
  return failed > 0 ? examples::kExitFailed : examples::kExitOk;
}
