// quality_report: perplexity, KL divergence and top-1 agreement through each KV cache on
// held-out text, relative to the full cache, as a Markdown table (docs/QUALITY.md), with JSON /
// CSV through the same fields.
#include "bench_common.h"
#include "eli/benchmark/quality.h"
#include "exit_status.h"
#include "row_report.h"

int main(int argc, char** argv) {
  CLI::App app{
      "eli quality_report: perplexity, KL and top-1 agreement of every cache method on held-out "
      "text, against the full cache (docs/QUALITY.md)"};
  examples::CommonOptions o;
  std::string methods =
      "full_cache,paged_attention,quant_int8,full+int8/per_tensor,quant_mixed,quant_int4,"
      "full+int4/group32/zp,full+int4/group64,full+int4+residual=64,full+int4+rotate,"
      "sliding_window,sliding(window=252,sinks=4),chunked_cache,chunked(bias=0),"
      "sliding_window+int4,paged+int8";
  int segments = 2, segment_len = 1024;
  examples::add_model_options(app, o);
  examples::add_output_options(app, o);
  app.add_option("--methods", methods,
                 "Comma-separated methods or specs (commas inside parentheses belong to the spec)")
      ->capture_default_str();
  app.add_option("--eval-file", o.eval_file,
                 "Held-out text (default: assets/eval/kjv_heldout.txt)");
  app.add_option("--eval-prefix", o.eval_prefix, "Tokens prefilled at the start of each segment")
      ->check(CLI::Range(1, examples::kMaxTokens))
      ->capture_default_str();
  app.add_option("--segments", segments, "Consecutive segments of the text scored")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  app.add_option("--segment-len", segment_len,
                 "Tokens per segment (prefix + scored; at most the model's n_positions)")
      ->check(CLI::Range(2, examples::kMaxTokens))
      ->capture_default_str();
  if (const auto rc = examples::parse_command_line(app, argc, argv)) return *rc;
  try {
    auto s = examples::load(o, "random:L4-E256-H4");
    const eli::model::GPT2& m = *s.model;
    const std::string bad_methods = examples::empty_method_error(methods);
    ELI_CHECK(bad_methods.empty(), "--methods {}", bad_methods);
    const std::vector<std::string> specs = examples::split_methods(methods);
    ELI_CHECK(!specs.empty(), "--methods is empty");
    ELI_CHECK(segment_len <= m.config().n_positions,
              "--segment-len {} > the model's n_positions {}", segment_len, m.config().n_positions);
    ELI_CHECK(o.eval_prefix < segment_len, "--eval-prefix {} must be below --segment-len {}",
              o.eval_prefix, segment_len);
    ELI_CHECK(static_cast<int64_t>(s.text_ids.size()) >= int64_t{segments} * segment_len,
              "the text has {} tokens, fewer than {} segments of {}", s.text_ids.size(), segments,
              segment_len);

    examples::RowReport rep;
    rep.context = eli::benchmark::RunContext::of(m, s.model_spec);
    rep.context.command = examples::command_line(argc, argv);
    rep.context.notes = s.notes;
    rep.config = {{"segments", segments},
                  {"segment_len", segment_len},
                  {"eval_prefix", o.eval_prefix},
                  {"eval_file", o.eval_file.empty() ? "assets/eval/kjv_heldout.txt" : o.eval_file},
                  {"methods", specs}};
    rep.fields = {{"method", "method", 0},
                  {"perplexity", "perplexity", 3},
                  {"ppl_delta_pct", "vs full %", 2},
                  {"kl_vs_full", "KL (nats/token)", 5},
                  {"top1_agreement", "top-1 agreement", 4},
                  {"bytes_per_token", "cache bytes/token", 0}};

    auto progress = examples::make_progress();
    const int64_t total = int64_t{segments} * static_cast<int64_t>(specs.size() + 1);
    int64_t done = 0;
    std::vector<at::Tensor> full(segments);
    std::vector<std::vector<int64_t>> ids(segments);
    double full_nll = 0;
    int64_t n = 0;
    for (int w = 0; w < segments; ++w) {
      progress.update(done++, total, fmt::format("full_cache segment {}/{}", w + 1, segments));
      ids[w].assign(s.text_ids.begin() + int64_t{w} * segment_len,
                    s.text_ids.begin() + int64_t{w + 1} * segment_len);
      full[w] = eli::benchmark::stream_logits(m, ids[w], o.eval_prefix, eli::GenerationConfig{});
      for (double x : eli::benchmark::token_nll(
               full[w], eli::benchmark::stream_targets(ids[w], o.eval_prefix))) {
        full_nll += x, ++n;
      }
    }
    const double full_ppl = std::exp(full_nll / static_cast<double>(n));
    rep.config["full_perplexity"] = full_ppl;
    rep.config["scored_tokens"] = n;
    for (const auto& spec : specs) {
      double nll = 0, kl = 0, top1 = 0;
      for (int w = 0; w < segments; ++w) {
        progress.update(done++, total, fmt::format("{} segment {}/{}", spec, w + 1, segments));
        eli::GenerationConfig cfg;
        cfg.method = spec;
        const at::Tensor lg = spec == "full_cache"
                                  ? full[w]
                                  : eli::benchmark::stream_logits(m, ids[w], o.eval_prefix, cfg);
        for (double x :
             eli::benchmark::token_nll(lg, eli::benchmark::stream_targets(ids[w], o.eval_prefix))) {
          nll += x;
        }
        kl += eli::benchmark::kl_divergence(full[w], lg) / segments;
        top1 += eli::benchmark::top1_agreement(full[w], lg) / segments;
      }
      // Bytes the cache holds after segment_len tokens (bounded layouts hold fewer).
      double bpt = 0;
      if (spec != "no_cache") {
        auto cache = eli::make_cache(spec, m.shape(), 1, {}, {}, m.dtype(), m.device());
        at::Tensor x = at::randn({1, m.config().n_head, segment_len, m.config().head_dim()});
        x = x.to(m.device(), m.dtype());
        for (int l = 0; l < m.config().n_layer; ++l) cache->append(l, x, x);
        bpt = static_cast<double>(cache->stats().total_bytes()) / segment_len;
      }
      const double ppl = std::exp(nll / static_cast<double>(n));
      rep.rows.push_back({spec, ppl, 100.0 * (ppl / full_ppl - 1.0), kl, top1, bpt});
    }
    progress.update(total, total, "done");
    progress.finish();

    std::ostream& out = examples::text_out(o);
    const std::string head = fmt::format(
        "model {} ({}), {} ({}), {} threads: {} segments x {} tokens (prefill {}, {} scored "
        "tokens), full-cache perplexity {:.3f}\n\n",
        s.model_spec, rep.context.model_shape, rep.context.device, rep.context.dtype,
        rep.context.threads, segments, segment_len, o.eval_prefix, n, full_ppl);
    std::string notes;
    for (const auto& note : s.notes) notes += "note: " + note + "\n";
    out << head << notes << examples::markdown_table(rep) << std::flush;
    examples::write_rows(rep, o.json, o.csv, o.markdown,
                         examples::markdown_provenance(rep.context) + head + notes, out);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return examples::kExitError;
  }
  return examples::kExitOk;
}
