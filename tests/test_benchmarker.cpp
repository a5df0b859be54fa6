// The Benchmarker over every method on a tiny random model: consistent, checkable numbers.
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "benchmark_test_util.h"
#include "eli/benchmark/benchmarker.h"
#include "eli/benchmark/memory.h"
#include "eli/benchmark/metrics.h"
#include "eli/benchmark/quality.h"
#include "eli/benchmark/report.h"
#include "eli/error.h"
#include "eli/tokenizer.h"

using namespace eli;
using namespace eli::benchmark;

namespace {

const model::GPT2& tiny_model() {
  static const model::GPT2 m =
      model::GPT2::random(GPT2Config::named("L2-E64-H2-V1000"), 7, at::kCPU, at::kFloat);
  return m;
}

using eli::benchmark::testing::random_ids;

BenchmarkConfig small_config() {
  BenchmarkConfig c;
  c.warmup = 0;
  c.repetitions = 2;
  c.eval_ids = random_ids(70, 5);
  c.eval_prefix = 17;
  c.eval_tokens = 53;
  c.generation.cache.window_size = 16;
  c.generation.cache.chunk_size = 8;
  c.generation.cache.keep_last = 8;
  c.generation.cache.block_size = 8;
  return c;
}

}  // namespace

TEST(Benchmarker, EveryMethodGivesConsistentNumbers) {
  Benchmarker b(tiny_model(), small_config());
  const auto prompts = make_prompt_batch(random_ids(200, 1), 2, 23);
  for (const std::string& m : method_names()) {
    SCOPED_TRACE(m);
    MethodResult r = b.benchmark_ids(prompts, m, 9);
    EXPECT_TRUE(r.error.empty()) << r.error;
    EXPECT_EQ(r.batch, 2);
    EXPECT_EQ(r.prompt_len, 23);
    EXPECT_EQ(r.new_tokens, 9);
    ASSERT_EQ(r.output_ids.size(), 2u);
    EXPECT_EQ(r.total_ms_reps.size(), 2u);
    EXPECT_GT(r.tokens_per_sec, 0.0);
    EXPECT_GT(r.decode_tokens_per_sec, 0.0);
    EXPECT_GT(r.ttft_ms, 0.0);
    // Decode and prefill apart: decode tok/s per repetition, the median and its spread.
    ASSERT_EQ(r.decode_tokens_per_sec_reps.size(), 2u);
    EXPECT_DOUBLE_EQ(r.decode_tokens_per_sec, median(r.decode_tokens_per_sec_reps));
    EXPECT_DOUBLE_EQ(r.decode_tokens_per_sec_stddev, stddev(r.decode_tokens_per_sec_reps));
    EXPECT_LE(r.decode_tokens_per_sec_min, r.decode_tokens_per_sec);
    EXPECT_GE(r.decode_tokens_per_sec_max, r.decode_tokens_per_sec);
    EXPECT_NEAR(r.decode_tokens_per_sec_cv,
                r.decode_tokens_per_sec_stddev / mean(r.decode_tokens_per_sec_reps), 1e-12);
    ASSERT_EQ(r.ttft_ms_reps.size(), 2u);
    EXPECT_DOUBLE_EQ(r.prefill_tokens_per_sec, 2.0 * 23.0 / (r.ttft_ms / 1000.0));
    EXPECT_LE(r.decode_p50_ms, r.decode_p90_ms);
    EXPECT_LE(r.decode_p90_ms, r.decode_p99_ms);
    EXPECT_GT(r.cpu_peak_mb, 0.0);
    EXPECT_GE(r.cpu_peak_mb, r.cpu_start_mb - 1e-9);
    EXPECT_TRUE(std::isnan(r.gpu_peak_mb));  // CPU model
    EXPECT_FALSE(r.cache_name.empty());
    // Quality: stream metrics and text similarity are in range.
    const Quality& q = r.quality;
    EXPECT_EQ(q.eval_prefix, 17);
    EXPECT_EQ(q.eval_tokens, 53);
    EXPECT_NEAR(q.ppl_delta_pct, 100.0 * (q.perplexity / q.full_perplexity - 1.0), 1e-9);
    EXPECT_GT(q.perplexity, 1.0);
    EXPECT_GE(q.kl_vs_full, 0.0);
    EXPECT_GE(q.top1_agreement, 0.0);
    EXPECT_LE(q.top1_agreement, 1.0);
    EXPECT_GE(q.rouge_l, 0.0);
    EXPECT_LE(q.rouge_l, 1.0);
    EXPECT_GE(q.edit_similarity, 0.0);
    EXPECT_LE(q.edit_similarity, 1.0);
    if (m == "no_cache") {
      EXPECT_EQ(r.cache.total_bytes(), 0);
      EXPECT_EQ(r.cache_mb, 0.0);
    } else {
      EXPECT_EQ(r.cache.tokens_seen, 23 + 9 - 1);  // the last token is never fed back
      EXPECT_GT(r.cache.total_bytes(), 0);
      EXPECT_DOUBLE_EQ(r.bytes_per_token, static_cast<double>(r.cache.total_bytes()) /
                                              (2.0 * static_cast<double>(r.cache.tokens_seen)));
    }
    if (m == "full_cache" || m == "no_cache" || m == "paged_attention") {
      // Exact methods: same distributions and the same greedy text as the full cache.
      EXPECT_NEAR(q.kl_vs_full, 0.0, 1e-6);
      EXPECT_DOUBLE_EQ(q.top1_agreement, 1.0);
      EXPECT_NEAR(q.perplexity, q.full_perplexity, 1e-4 * q.full_perplexity);
      EXPECT_EQ(q.first_divergence, -1);
      EXPECT_DOUBLE_EQ(q.rouge_l, 1.0);
    }
  }
}

TEST(Benchmarker, QuantizedCachesAreSmallerForTheSameTokens) {
  BenchmarkConfig c = small_config();
  c.quality = false;
  c.repetitions = 1;
  Benchmarker b(tiny_model(), c);
  const auto prompts = make_prompt_batch(random_ids(100, 2), 3, 31);
  const MethodResult full = b.benchmark_ids(prompts, "full_cache", 5);
  const MethodResult i8 = b.benchmark_ids(prompts, "quant_int8", 5);
  const MethodResult i4 = b.benchmark_ids(prompts, "quant_int4", 5);
  const MethodResult mixed = b.benchmark_ids(prompts, "quant_mixed", 5);
  EXPECT_EQ(full.cache.tokens_seen, i4.cache.tokens_seen);
  EXPECT_LT(i4.cache_mb, i8.cache_mb);
  EXPECT_LT(i8.cache_mb, full.cache_mb);
  EXPECT_LT(i4.cache_mb, mixed.cache_mb);
  EXPECT_LT(mixed.cache_mb, i8.cache_mb);
  EXPECT_LT(i4.bytes_per_token, i8.bytes_per_token);
  EXPECT_TRUE(std::isnan(full.quality.kl_vs_full));  // quality off
}

TEST(Benchmarker, SlidingWindowBytesStopGrowingAtTheWindow) {
  BenchmarkConfig c = small_config();  // window 16
  c.quality = false;
  c.repetitions = 1;
  Benchmarker b(tiny_model(), c);
  const auto stream = random_ids(100, 3);
  std::vector<int64_t> bytes;
  for (int64_t len : {6, 11, 16, 23, 40}) {
    const MethodResult r = b.benchmark_ids(make_prompt_batch(stream, 1, len), "sliding_window", 1);
    ASSERT_TRUE(r.error.empty()) << r.error;
    EXPECT_EQ(r.cache.tokens_seen, len);
    EXPECT_LE(r.cache.tokens_stored, 16);
    bytes.push_back(r.cache.total_bytes());
  }
  EXPECT_LT(bytes[0], bytes[1]);
  EXPECT_LT(bytes[1], bytes[2]);
  EXPECT_EQ(bytes[2], bytes[3]);
  EXPECT_EQ(bytes[3], bytes[4]);
}

TEST(Benchmarker, GenerateWithQuantizedKv) {
  Benchmarker b(tiny_model(), small_config());
  const auto prompt = random_ids(19, 4);
  const QuantizedGeneration i8 = b.generate_with_quantized_kv(prompt, 7, "int8");
  const QuantizedGeneration i4 = b.generate_with_quantized_kv(prompt, 7, "int4");
  const QuantizedGeneration mx = b.generate_with_quantized_kv(prompt, 7, "mixed");
  EXPECT_EQ(i8.method, "quant_int8");
  EXPECT_EQ(mx.method, "quant_mixed");
  EXPECT_EQ(i8.n_tokens, 7);
  EXPECT_EQ(i8.tokens.size(), 7u);
  EXPECT_TRUE(i8.text.empty());  // no tokenizer
  EXPECT_LT(i4.cache_mb, mx.cache_mb);
  EXPECT_LT(mx.cache_mb, i8.cache_mb);
  EXPECT_THROW(b.generate_with_quantized_kv(prompt, 7, "int3"), Error);
  EXPECT_THROW(b.generate_with_quantized_kv(std::string("hello"), 7, "int8"), Error);  // no tok
}

TEST(Benchmarker, CompareSweepsBatchAndPromptLength) {
  BenchmarkConfig c = small_config();
  c.repetitions = 1;
  Benchmarker b(tiny_model(), c);
  std::vector<std::string> seen;
  b.set_progress([&](int64_t done, int64_t total, const std::string& what) {
    EXPECT_LE(done, total);
    seen.push_back(what);
  });
  SweepConfig sweep;
  sweep.batch_sizes = {1, 3};
  sweep.prompt_lens = {5, 12};
  sweep.max_new_tokens = 4;
  const std::vector<std::string> methods{"full_cache", "quant_int4", "no_such_method"};
  const auto results = b.compare_ids({random_ids(13, 8), random_ids(9, 9)}, methods, sweep);
  ASSERT_EQ(results.size(), 12u);
  EXPECT_EQ(seen.size(), 13u);  // one per point + "done"
  size_t i = 0;
  for (int64_t batch : {1, 3}) {
    for (int64_t len : {5, 12}) {
      for (const auto& m : methods) {
        const MethodResult& r = results[i++];
        EXPECT_EQ(r.method, m);
        EXPECT_EQ(r.batch, batch);
        EXPECT_EQ(r.prompt_len, len);
        if (m == "no_such_method") {
          EXPECT_FALSE(r.error.empty());
        } else {
          EXPECT_TRUE(r.error.empty()) << r.error;
          EXPECT_EQ(r.new_tokens, 4);
        }
      }
    }
  }
  // Ratios against full_cache of the same point; the full cache itself is 1.
  for (size_t k = 0; k < results.size(); k += 3) {
    EXPECT_DOUBLE_EQ(results[k].memory_vs_full, 1.0);
    EXPECT_DOUBLE_EQ(results[k].speed_vs_full, 1.0);
    EXPECT_DOUBLE_EQ(results[k + 1].memory_vs_full,
                     static_cast<double>(results[k + 1].cache.total_bytes()) /
                         static_cast<double>(results[k].cache.total_bytes()));
    EXPECT_LT(results[k + 1].memory_vs_full, 0.5);  // INT4 codes + scales vs fp32
    EXPECT_DOUBLE_EQ(results[k + 1].speed_vs_full,
                     results[k + 1].decode_tokens_per_sec / results[k].decode_tokens_per_sec);
    EXPECT_TRUE(std::isnan(results[k + 2].memory_vs_full));  // the failed method
  }
  // More tokens in the cache -> more bytes.
  EXPECT_LT(results[0].cache.total_bytes(), results[3].cache.total_bytes());
  EXPECT_LT(results[3].cache.total_bytes(), results[9].cache.total_bytes());
}

// A ragged prompt set is benchmarked as given: nothing is cut, every count reads the real
// lengths, and each sequence's greedy output is what it gets alone.
TEST(Benchmarker, RaggedPromptsRunAsGiven) {
  Benchmarker b(tiny_model(), small_config());
  const std::vector<std::vector<int64_t>> prompts{random_ids(5, 21), random_ids(23, 22),
                                                  random_ids(11, 23)};
  const int new_tokens = 6;
  Generator gen(tiny_model());
  GenerationConfig solo_cfg = b.config().generation;
  solo_cfg.max_new_tokens = new_tokens;
  for (const std::string& m : method_names()) {
    SCOPED_TRACE(m);
    const MethodResult r = b.benchmark_ids(prompts, m, new_tokens);
    ASSERT_TRUE(r.error.empty()) << r.error;
    EXPECT_EQ(r.batch, 3);
    EXPECT_EQ(r.prompt_lens, (std::vector<int64_t>{5, 23, 11}));
    EXPECT_EQ(r.prompt_len, 23);
    EXPECT_EQ(r.prompt_tokens, 39);
    EXPECT_EQ(prompt_lens_label(r), "5..23");
    EXPECT_EQ(r.new_tokens, new_tokens);
    ASSERT_EQ(r.output_ids.size(), 3u);
    EXPECT_DOUBLE_EQ(r.prefill_tokens_per_sec, 39.0 / (r.ttft_ms / 1000.0));
    EXPECT_DOUBLE_EQ(r.tokens_per_sec, 3.0 * new_tokens / (r.total_ms / 1000.0));
    // Bytes per position each sequence saw (prompt + new - 1), summed over the batch.
    EXPECT_DOUBLE_EQ(r.bytes_per_token,
                     static_cast<double>(r.cache.total_bytes()) / (39.0 + 3.0 * (new_tokens - 1)));
    EXPECT_TRUE(std::isnan(r.bytes_per_stored_token));
    for (const auto& out : r.output_ids) EXPECT_EQ(out.size(), static_cast<size_t>(new_tokens));
    if (method_kind(m) != MethodKind::kCache || m == "paged_attention") {
      // Exact methods: each sequence's output is its solo run's (which a cut prompt would not
      // give) and the full cache's.
      solo_cfg.method = m;
      for (size_t i = 0; i < prompts.size(); ++i) {
        EXPECT_EQ(r.output_ids[i], gen.generate({prompts[i]}, solo_cfg).tokens[0])
            << "sequence " << i << " differs from its solo run";
      }
      EXPECT_EQ(r.quality.first_divergence, -1);
      EXPECT_DOUBLE_EQ(r.quality.rouge_l, 1.0);
    }
  }
}

// Text prompts of different lengths: one sequence each, the tokenized lengths kept.
TEST(Benchmarker, TextPromptsAreNotCut) {
  static const model::GPT2 m =
      model::GPT2::random(GPT2Config::named("L2-E64-H2"), 7, at::kCPU, at::kFloat);
  const Tokenizer tok = Tokenizer::from_dir(model::assets_dir() + "/tokenizer");
  BenchmarkConfig c = small_config();
  c.quality = false;
  c.repetitions = 1;
  Benchmarker b(m, c, &tok);
  const std::vector<std::string> texts{
      "In the beginning", "And God said, Let there be light: and there was light.", "Amen"};
  std::vector<int64_t> want;
  for (const auto& t : texts) want.push_back(static_cast<int64_t>(tok.encode(t).size()));
  ASSERT_NE(want[0], want[1]);
  const MethodResult r = b.benchmark_method(texts, "full_cache", 3);
  ASSERT_TRUE(r.error.empty()) << r.error;
  EXPECT_EQ(r.prompt_lens, want);
  const auto all = b.compare(texts, {"quant_int8"}, SweepConfig{{}, {}, 3});
  ASSERT_EQ(all.size(), 1u);
  EXPECT_TRUE(all[0].error.empty()) << all[0].error;
  EXPECT_EQ(all[0].prompt_lens, want);
}

// A batch sweep without prompt lengths cycles through the prompts as given; a prompt-length
// sweep (asked for) cuts rows of exactly that length.
TEST(Benchmarker, BatchSweepCyclesThePromptsAsGiven) {
  BenchmarkConfig c = small_config();
  c.quality = false;
  c.repetitions = 1;
  Benchmarker b(tiny_model(), c);
  const std::vector<std::vector<int64_t>> prompts{random_ids(7, 31), random_ids(12, 32),
                                                  random_ids(9, 33)};
  SweepConfig sweep{{}, {1, 4}, 2};
  auto rs = b.compare_ids(prompts, {"full_cache"}, sweep);
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[0].prompt_lens, (std::vector<int64_t>{7}));
  EXPECT_EQ(rs[1].prompt_lens, (std::vector<int64_t>{7, 12, 9, 7}));
  EXPECT_TRUE(rs[1].error.empty()) << rs[1].error;
  sweep.prompt_lens = {5};
  rs = b.compare_ids(prompts, {"full_cache"}, sweep);
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[1].prompt_lens, (std::vector<int64_t>(4, 5)));
  EXPECT_THROW(b.compare_ids({prompts[0], {}}, {"full_cache"}, SweepConfig{}), Error);
}

TEST(Benchmarker, RelativeToFullNeedsTheSamePoint) {
  std::vector<MethodResult> rs(4);
  rs[0].method = "full_cache";
  rs[0].batch = 2;
  rs[0].prompt_len = 8;
  rs[0].cache.payload_bytes = 1000;
  rs[0].decode_tokens_per_sec = 200;
  rs[1] = rs[0];
  rs[1].method = "quant_int8";
  rs[1].cache.payload_bytes = 250;
  rs[1].cache.scale_bytes = 30;
  rs[1].decode_tokens_per_sec = 150;
  rs[2] = rs[1];
  rs[2].prompt_len = 16;  // no full_cache at this prompt length
  rs[3] = rs[1];
  rs[3].error = "failed";
  rs.push_back(rs[1]);  // same batch and longest prompt, other lengths: not the same point
  rs[4].prompt_lens = {8, 3};
  relative_to_full(rs);
  EXPECT_TRUE(std::isnan(rs[4].memory_vs_full));
  EXPECT_DOUBLE_EQ(rs[1].memory_vs_full, 0.28);
  EXPECT_DOUBLE_EQ(rs[1].speed_vs_full, 0.75);
  EXPECT_TRUE(std::isnan(rs[2].memory_vs_full));
  EXPECT_TRUE(std::isnan(rs[2].speed_vs_full));
  EXPECT_TRUE(std::isnan(rs[3].speed_vs_full));
}

TEST(Quality, FullCacheStreamEqualsOneForwardPass) {
  const auto& m = tiny_model();
  const auto ids = random_ids(41, 6);
  GenerationConfig g;
  g.method = "full_cache";
  const at::Tensor stream = stream_logits(m, ids, 10, g);
  ASSERT_EQ(stream.size(0), 31);
  at::Tensor ref;
  {
    c10::InferenceMode guard;
    ref = m.forward(at::tensor(ids, at::kLong).view({1, 41}), 0, nullptr)[0].narrow(0, 9, 31).to(
        at::kFloat);
  }
  const double worst = (stream - ref).abs().max().item<double>();
  EXPECT_LT(worst, 1e-4) << "worst |stream - forward| = " << worst;
  g.method = "no_cache";
  EXPECT_LT((stream_logits(m, ids, 10, g) - ref).abs().max().item<double>(), 1e-4);
  EXPECT_EQ(stream_targets(ids, 10).front(), ids[10]);
  EXPECT_THROW(stream_logits(m, ids, 0, g), Error);
  EXPECT_THROW(stream_logits(m, ids, 41, g), Error);
}

TEST(Memory, CpuPeakSeesAnAllocationInsideTheRegion) {
  CpuPeakMeter meter;
  meter.start();
  std::vector<char> block(96 << 20, 1);
  for (size_t i = 0; i < block.size(); i += 4096) block[i] = static_cast<char>(i);
  const CpuPeak p = meter.stop();
  EXPECT_TRUE(p.source == "vmhwm" || p.source == "vmrss_sampled") << p.source;
  EXPECT_GE(p.delta_mb(), 80.0) << "source " << p.source << " start " << p.start_mb;
  EXPECT_EQ(block[4096 * 3 + 1], 1);
  EXPECT_GT(current_rss_mb(), 0.0);
  EXPECT_FALSE(device_name(at::kCPU).empty());
}

TEST(Report, JsonAndCsvHoldEveryPoint) {
  BenchmarkConfig c = small_config();
  c.repetitions = 1;
  Benchmarker b(tiny_model(), c);
  Report rep;
  rep.context = RunContext::of(tiny_model(), "random:L2-E64-H2-V1000");
  rep.config = c;
  rep.sweep.max_new_tokens = 3;
  rep.results = b.compare_ids(make_prompt_batch(random_ids(30, 1), 2, 7),
                              {"no_cache", "quant_int8", "bogus"}, rep.sweep);
  const auto j = nlohmann::json::parse(to_json(rep));
  EXPECT_EQ(j["context"]["eli_version"], version());
  EXPECT_EQ(j["context"]["dtype"], "float32");
  EXPECT_EQ(j["context"]["model_shape"], "L2-E64-H2-V1000-P1024");
  EXPECT_EQ(j["config"]["cache"]["window_size"], 16);
  ASSERT_EQ(j["results"].size(), 3u);
  EXPECT_TRUE(j["results"][0]["gpu_peak_mb"].is_null());  // NaN -> null
  EXPECT_EQ(j["results"][1]["cache"]["total_bytes"], rep.results[1].cache.total_bytes());
  EXPECT_FALSE(j["results"][2]["error"].get<std::string>().empty());
  const std::string csv = to_csv(rep);
  std::istringstream lines(csv);
  std::string header, line;
  std::getline(lines, header);
  // Separators outside double quotes (fields with commas are quoted).
  auto fields = [](const std::string& s) {
    int n = 1;
    bool quoted = false;
    for (char ch : s) {
      if (ch == '"') quoted = !quoted;
      if (ch == ',' && !quoted) ++n;
    }
    return n;
  };
  int rows = 0;
  while (std::getline(lines, line)) {
    ++rows;
    EXPECT_EQ(fields(line), fields(header)) << line;
  }
  EXPECT_EQ(rows, 3);
  const std::string table = format_table(rep.results);
  EXPECT_NE(table.find("quant_int8"), std::string::npos);
  EXPECT_NE(table.find("ERROR"), std::string::npos);
}

// JSON rows, CSV columns and the table read one column list: every column is in both outputs,
// under the same name, with the same value.
TEST(Report, JsonCsvAndColumnsAgree) {
  BenchmarkConfig c = small_config();
  c.repetitions = 3;
  Benchmarker b(tiny_model(), c);
  Report rep;
  rep.context = RunContext::of(tiny_model(), "random:L2-E64-H2-V1000");
  rep.context.command = "test, with a comma";
  rep.config = c;
  rep.sweep.max_new_tokens = 4;
  rep.results = b.compare_ids(make_prompt_batch(random_ids(30, 1), 1, 9),
                              {"full_cache", "quant_int4"}, rep.sweep);
  rep.context.stop_clock();
  const auto j = nlohmann::json::parse(to_json(rep));
  EXPECT_EQ(j["schema_version"], kSchemaVersion);
  const auto& ctx = j["context"];
  EXPECT_EQ(ctx["schema_version"], kSchemaVersion);
  EXPECT_FALSE(ctx["git_revision"].get<std::string>().empty());
  EXPECT_FALSE(ctx["blas"].get<std::string>().empty());
  EXPECT_FALSE(ctx["torch_version"].get<std::string>().empty());
  EXPECT_GE(ctx["threads"].get<int>(), 1);
  EXPECT_GE(ctx["wall_s"].get<double>(), 0.0);
  EXPECT_EQ(ctx["command"], "test, with a comma");
  EXPECT_EQ(j["config"]["repetitions"], 3);

  std::istringstream lines(to_csv(rep));
  std::string header, row;
  std::getline(lines, header);
  std::getline(lines, row);  // full_cache
  auto split = [](const std::string& s) {
    std::vector<std::string> out(1);
    bool quoted = false;
    for (char ch : s) {
      if (ch == '"') quoted = !quoted;
      if (ch == ',' && !quoted) {
        out.emplace_back();
      } else {
        out.back() += ch;
      }
    }
    return out;
  };
  const auto names = split(header);
  const auto cells = split(row);
  ASSERT_EQ(names.size(), cells.size());
  const auto cols = result_columns();
  ASSERT_LT(cols.size(), names.size());
  const auto& r0 = j["results"][0];
  for (size_t i = 0; i < cols.size(); ++i) {
    SCOPED_TRACE(cols[i].name);
    EXPECT_EQ(names[i], cols[i].name);
    const auto& v = cols[i].group.empty() ? r0 : r0[cols[i].group];
    ASSERT_TRUE(v.contains(cols[i].name));
    const auto& x = v[cols[i].name];
    if (x.is_number_float()) {
      EXPECT_NEAR(std::stod(cells[i]), x.get<double>(), 1e-5 * std::fabs(x.get<double>()));
    }
    if (x.is_number_integer()) {
      EXPECT_EQ(cells[i], std::to_string(x.get<int64_t>()));
    }
  }
  // Provenance is repeated in every CSV row.
  for (const char* key : {"git_revision", "torch_version", "blas", "threads", "wall_s", "timestamp",
                          "schema_version"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), key), names.end()) << key;
  }
  EXPECT_EQ(j["results"][0]["decode_tokens_per_sec_reps"].size(), 3u);
  EXPECT_DOUBLE_EQ(j["results"][1]["memory_vs_full"].get<double>(), rep.results[1].memory_vs_full);

  const std::string text = format_report(rep);
  for (const char* h : {"decode tok/s", "cv", "step p50 ms", "TTFT ms", "prefill tok/s",
                        "memory vs full", "speed vs full", "KV bytes/token", "3 repetitions"}) {
    EXPECT_NE(text.find(h), std::string::npos) << h << "\n" << text;
  }
  EXPECT_EQ(text.find("GPU peak MB"), std::string::npos);  // NaN in every row on the CPU
  // Quality once per method, with the context it was measured at (prefix 17 + 53 scored).
  const std::string q = format_quality_table(rep.results);
  EXPECT_NE(q.find("17 tokens of held-out text prefilled, then 53 scored"), std::string::npos) << q;
  EXPECT_NE(q.find("from 17 to 70 tokens"), std::string::npos) << q;
}

// A ragged point: the table prints shortest..longest, JSON and CSV every length.
TEST(Report, RaggedPromptLengths) {
  BenchmarkConfig c = small_config();
  c.quality = false;
  c.repetitions = 1;
  Benchmarker b(tiny_model(), c);
  Report rep;
  rep.context = RunContext::of(tiny_model(), "random:L2-E64-H2-V1000");
  rep.config = c;
  rep.sweep.max_new_tokens = 2;
  rep.results = b.compare_ids({random_ids(5, 41), random_ids(17, 42), random_ids(9, 43)},
                              {"full_cache", "bogus"}, rep.sweep);
  const std::string table = format_table(rep.results);
  EXPECT_NE(table.find(" 5..17 "), std::string::npos) << table;
  EXPECT_NE(table.find("ERROR (batch 3, prompt 5..17)"), std::string::npos) << table;
  const auto j = nlohmann::json::parse(to_json(rep));
  for (const auto& r : j["results"]) {
    EXPECT_EQ(r["prompt_lens"], nlohmann::json({5, 17, 9}));
    EXPECT_EQ(r["prompt_len"], 17);
    EXPECT_EQ(r["prompt_tokens"], 31);
  }
  EXPECT_NE(to_csv(rep).find(",17,5;17;9,31,"), std::string::npos) << to_csv(rep);
  EXPECT_NE(format_report(rep).find("prompt a..b: prompts of different lengths, run as given"),
            std::string::npos);
}

TEST(Report, SmallNumbersInScientificNotation) {
  EXPECT_EQ(format_number(3.4e-5, 4), "3.40e-05");
  EXPECT_EQ(format_number(0.0282, 4), "0.0282");
  EXPECT_EQ(format_number(0.0, 4), "0.0000");
  EXPECT_EQ(format_number(-2e-7, 2), "-2.00e-07");
  EXPECT_EQ(format_number(1234.5678, 1), "1234.6");
  EXPECT_EQ(format_number(kNaN, 3), "-");
}

// Progress: plain lines with an ETA when the stream is not a terminal, one line rewritten with
// '\r' on a terminal.
TEST(Report, ProgressLinesWithEta) {
  std::ostringstream log;
  ProgressLine plain(log, false);
  plain.update(0, 4, "full_cache B=1 P=8");
  plain.update(2, 4, "quant_int8 B=1 P=8");
  plain.update(4, 4, "done");
  plain.finish();
  const std::string s = log.str();
  EXPECT_EQ(std::count(s.begin(), s.end(), '\n'), 3) << s;
  EXPECT_EQ(s.find('\r'), std::string::npos) << s;
  EXPECT_NE(s.find("[2/4] quant_int8 B=1 P=8"), std::string::npos) << s;
  EXPECT_NE(s.find("ETA"), std::string::npos) << s;              // halfway: an estimate
  EXPECT_EQ(s.find("ETA", s.find("[4/4]")), std::string::npos);  // done: none
  std::ostringstream term;
  ProgressLine tty(term, true);
  tty.update(1, 3, "a long description");
  tty.update(2, 3, "short");
  tty.finish();
  const std::string t = term.str();
  EXPECT_EQ(std::count(t.begin(), t.end(), '\r'), 2) << t;
  EXPECT_EQ(std::count(t.begin(), t.end(), '\n'), 1) << t;
}
