// quality_report: perplexity, KL divergence and top-1 agreement through each KV cache on
// held-out text, relative to the full cache, as a Markdown table (docs/QUALITY.md).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "eli/bench/metrics.h"
#include "eli/bench/quality.h"
#include "eli/eli.h"

int main(int argc, char** argv) {
  CLI::App app{"eli quality_report: quality of every cache method on held-out text"};
  std::string model = "default", text_path, device = "cpu";
  std::string methods =
      "full_cache,paged_attention,quant_int8,full+int8/per_tensor,quant_mixed,quant_int4,"
      "full+int4/group32/zp,full+int4/group64,full+int4+residual=64,full+int4+rotate,"
      "sliding_window,sliding(window=252,sinks=4),chunked_cache,chunked(bias=0),"
      "sliding_window+int4,paged+int8";
  int windows = 2, window_len = 1024, prefix = 64;
  app.add_option("--model", model, "model dir, 'default' or random:NAME")->capture_default_str();
  app.add_option("--text", text_path, "held-out text (default: assets/eval/kjv_heldout.txt)");
  app.add_option("--device", device, "cpu | cuda | auto")->capture_default_str();
  app.add_option("--methods", methods, "comma-separated methods/specs (';' also separates)");
  app.add_option("--windows", windows, "number of token windows scored")->capture_default_str();
  app.add_option("--window-len", window_len, "tokens per window")->capture_default_str();
  app.add_option("--prefix", prefix, "prefill tokens per window")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    const at::Device dev = eli::model::resolve_device(device);
    const auto m = eli::model::GPT2::from_spec(model, dev, eli::model::default_dtype(dev));
    const std::string dir = model == "default" ? eli::model::default_model_dir() : model;
    const auto tok = eli::Tokenizer::from_dir(dir);
    if (text_path.empty()) text_path = eli::model::assets_dir() + "/eval/kjv_heldout.txt";
    std::ifstream in(text_path);
    ELI_CHECK(in.good(), "cannot open text file '{}'", text_path);
    std::stringstream ss;
    ss << in.rdbuf();
    const auto all = tok.encode(ss.str());
    ELI_CHECK(window_len <= m.config().n_positions, "--window-len {} > n_positions {}", window_len,
              m.config().n_positions);
    ELI_CHECK(static_cast<int64_t>(all.size()) >= int64_t{windows} * window_len,
              "text has {} tokens, fewer than {} windows of {}", all.size(), windows, window_len);
    std::vector<std::string> specs;
    std::string cur;
    int depth = 0;
    for (char c : methods + ",") {
      depth += (c == '(') - (c == ')');
      if ((c == ',' || c == ';') && depth == 0) {
        if (!cur.empty()) specs.push_back(cur);
        cur.clear();
      } else {
        cur += c;
      }
    }
    std::vector<at::Tensor> full(windows);
    std::vector<std::vector<int64_t>> ids(windows);
    double full_nll = 0;
    int64_t n = 0;
    for (int w = 0; w < windows; ++w) {
      ids[w].assign(all.begin() + int64_t{w} * window_len,
                    all.begin() + int64_t{w + 1} * window_len);
      eli::GenerationConfig cfg;
      full[w] = eli::bench::stream_logits(m, ids[w], prefix, cfg);
      for (double x : eli::bench::token_nll(full[w], eli::bench::stream_targets(ids[w], prefix))) {
        full_nll += x, ++n;
      }
    }
    const double full_ppl = std::exp(full_nll / n);
    std::printf(
        "model %s, %s, %d windows x %d tokens (prefill %d, %lld scored tokens), full-cache "
        "perplexity %.3f\n\n",
        dir.c_str(), dev.str().c_str(), windows, window_len, prefix, static_cast<long long>(n),
        full_ppl);
    std::printf(
        "| method | perplexity | vs full | KL (nats/token) | top-1 agreement | cache bytes/token "
        "|\n");
    std::printf("|---|---|---|---|---|---|\n");
    for (const auto& spec : specs) {
      double nll = 0, kl = 0, top1 = 0;
      for (int w = 0; w < windows; ++w) {
        eli::GenerationConfig cfg;
        cfg.method = spec;
        const at::Tensor lg = eli::bench::stream_logits(m, ids[w], prefix, cfg);
        for (double x : eli::bench::token_nll(lg, eli::bench::stream_targets(ids[w], prefix)))
          nll += x;
        kl += eli::bench::kl_divergence(full[w], lg) / windows;
        top1 += eli::bench::top1_agreement(full[w], lg) / windows;
      }
      double bpt = 0;
      if (spec != "no_cache") {
        auto cache = eli::make_cache(spec, m.shape(), 1, {}, {}, m.dtype(), m.device());
        at::Tensor x = at::randn({1, m.config().n_head, window_len, m.config().head_dim()});
        x = x.to(m.device(), m.dtype());
        for (int l = 0; l < m.config().n_layer; ++l) cache->append(l, x, x);
        bpt = static_cast<double>(cache->stats().total_bytes()) / window_len;
      }
      const double ppl = std::exp(nll / n);
      std::printf("| `%s` | %.3f | %+.2f%% | %.5f | %.4f | %.0f |\n", spec.c_str(), ppl,
                  100.0 * (ppl / full_ppl - 1.0), kl, top1, bpt);
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
