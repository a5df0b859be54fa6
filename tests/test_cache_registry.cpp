// Caches of one's own through the public templates and the registry: a codec and a layout
// written here are registered, built by make_cache from spec strings (with their parameters),
// give the same attention as the built-in cache they mirror, and work through the Generator and
// the Benchmarker by name; bad registrations and specs are errors that name the problem.
#include <gtest/gtest.h>

#include <string>

#include "eli/benchmark/benchmarker.h"
#include "eli/cache/registry.h"
#include "eli/error.h"
#include "eli/generator.h"
#include "eli/model.h"

namespace {

using eli::cache::CodecArgs;
using eli::cache::LayoutArgs;
using eli::cache::Parts;
using eli::cache::PartSpec;

// fp32 values as they come, without store(): every step takes the ATen path.
class ExactCodec {
 public:
  static constexpr bool kQuantized = false;
  explicit ExactCodec(const CodecArgs& a) : head_dim_(a.head_dim) {}
  std::vector<PartSpec> parts() const { return {{head_dim_, at::kFloat, false}}; }
  std::string name() const { return "exact"; }
  Parts encode(int, const at::Tensor& x) const { return {x.to(at::kFloat)}; }
  at::Tensor decode(int, const Parts& p) const { return p[0]; }
  void reset() {}

 private:
  int64_t head_dim_;
};

// The contiguous layout under a name of its own, with a parameter that shows in its name.
class TaggedLayout : public eli::cache::ContiguousLayout {
 public:
  explicit TaggedLayout(const LayoutArgs& a)
      : ContiguousLayout(a), tag_(a.params.count("tag") ? a.params.at("tag") : 0) {}
  std::string name() const { return "tagged(tag=" + std::to_string(tag_) + ")"; }

 private:
  int64_t tag_;
};

static_assert(eli::cache::check_codec<ExactCodec>());
static_assert(!eli::cache::codec_has_store<ExactCodec>);
static_assert(eli::cache::check_layout<TaggedLayout>());
static_assert(eli::cache::layout_has_graph_step<TaggedLayout>);

const eli::ModelShape kShape{2, 2, 16, 64};
constexpr int64_t kBatch = 2;

void register_once() {
  static const bool done = [] {
    eli::cache::register_codec<ExactCodec>("exact");
    eli::cache::register_layout<TaggedLayout>({"tagged", {"tag_alias"}, {"tag"}});
    eli::cache::register_method("quant_exact", "full+exact");
    return true;
  }();
  (void)done;
}

std::unique_ptr<eli::KVCache> make(const std::string& spec) {
  register_once();
  return eli::make_cache(spec, kShape, kBatch, {}, {}, at::kFloat, at::kCPU);
}

// Prefill of 7 then 12 decode steps through `c`; the attention outputs of layer 1, stacked.
at::Tensor run(eli::KVCache& c) {
  at::manual_seed(3);
  std::vector<at::Tensor> outs;
  for (int64_t t : {7, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}) {
    for (int layer = 0; layer < 2; ++layer) {
      auto k = at::randn({kBatch, 2, t, 16}), v = at::randn({kBatch, 2, t, 16});
      auto q = at::randn({kBatch, 2, t, 16});
      c.append(layer, k, v);
      auto o = c.attend(layer, q);
      if (layer == 1) outs.push_back(o.select(2, t - 1));
    }
  }
  return at::stack(outs);
}

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

TEST(CacheRegistry, RegisteredCodecEqualsIdentityOnTheAtenPath) {
  eli::cache::fused_decode_on_cpu() = false;  // the built-in cache on the ATen path too
  auto ref = make("full_cache");
  eli::cache::fused_decode_on_cpu() = true;
  auto exact = make("full+exact"), by_method = make("quant_exact");
  EXPECT_EQ(exact->name(), "full+exact");
  EXPECT_EQ(by_method->name(), "full+exact");
  const at::Tensor want = run(*ref);
  EXPECT_EQ(max_diff(run(*exact), want), 0.0);
  EXPECT_EQ(max_diff(run(*by_method), want), 0.0);
  // The codec over the other built-in layouts, and its bytes: 4 per value.
  auto sliding = make("sliding_window(window=4)+exact");
  run(*sliding);
  EXPECT_EQ(sliding->name(), "sliding(window=4)+exact");
  EXPECT_EQ(sliding->stats().payload_bytes, 2 * 2 * kBatch * 4 * 2 * 16 * 4);
  EXPECT_EQ(make("paged(block=4)+exact")->name(), "paged(block=4)+exact");
  EXPECT_EQ(make("chunked+exact")->name(), "chunked(chunk=64,keep=256,bias=1)+exact");
}

TEST(CacheRegistry, RegisteredLayoutTakesParametersAndBuiltinCodecs) {
  auto full = make("full+int8"), tagged = make("tagged(tag=5)+int8");
  EXPECT_EQ(tagged->name(), "tagged(tag=5)+int8/per_token_head");
  EXPECT_EQ(make("tag_alias+k:int8,v:fp")->name(), "tagged(tag=0)+k:int8/per_token_head,v:fp");
  EXPECT_EQ(max_diff(run(*tagged), run(*full)), 0.0);
  // Its name parses back into the same cache.
  EXPECT_EQ(make(tagged->name())->name(), tagged->name());
}

TEST(CacheRegistry, CombinationsOfOwnTypesNeedRegisterCache) {
  try {
    make("tagged+exact");
    FAIL() << "no factory for tagged+exact yet";
  } catch (const eli::Error& e) {
    EXPECT_NE(std::string(e.what()).find("register_cache"), std::string::npos) << e.what();
  }
  static const bool added =
      eli::cache::register_cache<TaggedLayout, ExactCodec, ExactCodec>("tagged", "exact", "exact");
  (void)added;
  EXPECT_EQ(make("tagged(tag=2)+exact")->name(), "tagged(tag=2)+exact");
}

TEST(CacheRegistry, BadRegistrationsAndSpecsNameTheProblem) {
  register_once();
  auto expect_error = [](auto&& f, const std::string& needle) {
    try {
      f();
      ADD_FAILURE() << "expected an error containing '" << needle << "'";
    } catch (const eli::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error([] { eli::cache::register_codec<ExactCodec>("exact"); }, "already registered");
  expect_error([] { eli::cache::register_codec<ExactCodec>("int8"); }, "a name eli uses");
  expect_error([] { eli::cache::register_codec<ExactCodec>("a+b"); }, "letters, digits");
  expect_error([] { eli::cache::register_method("full_cache", "full"); }, "a name eli uses");
  expect_error(
      [] {
        eli::cache::register_layout<TaggedLayout>({"t2", {"paged"}, {}});
      },
      "'paged' is already registered");
  expect_error([] { make("tagged(window=3)"); },
               "unknown parameter 'window' for layout tagged "
               "(valid: max, tag)");
  expect_error([] { make("full+exact/group"); }, "codec 'exact' takes no options");
  expect_error([] { make("full+k:exact,v:int8"); }, "no cache for layout full with K codec exact");
  expect_error([] { make("nonesuch"); }, "quant_exact");  // the list of methods names it
}

TEST(CacheRegistry, MethodKindIsReadFromTheSpec) {
  register_once();
  using eli::MethodKind;
  EXPECT_EQ(eli::method_kind("no_cache"), MethodKind::kRecompute);
  for (const char* m : {"full_cache", "full", "contiguous(max=40)", "full+fp+residual=4"}) {
    EXPECT_EQ(eli::method_kind(m), MethodKind::kFullCache) << m;
  }
  for (const char* m : {"quant_int8", "paged_attention", "sliding_window", "full+k:fp,v:int4",
                        "quant_exact", "tagged", "bogus", "full(max=x)"}) {
    EXPECT_EQ(eli::method_kind(m), MethodKind::kCache) << m;
  }
}

const eli::model::GPT2& tiny_model() {
  static const eli::model::GPT2 m = eli::model::GPT2::random(
      eli::GPT2Config::named("L2-E64-H2-V300-P96"), 7, at::kCPU, at::kFloat);
  return m;
}

TEST(CacheRegistry, GeneratorAndBenchmarkerTakeRegisteredNames) {
  register_once();
  eli::Generator g(tiny_model());
  eli::GenerationConfig cfg;
  cfg.max_new_tokens = 12;
  const std::vector<int64_t> prompt{5, 17, 250, 3, 99, 41, 7};
  const auto full = g.generate({prompt}, cfg);
  cfg.method = "quant_exact";
  const auto exact = g.generate({prompt}, cfg);
  EXPECT_EQ(exact.tokens, full.tokens);
  EXPECT_EQ(exact.cache_name, "full+exact");
  EXPECT_EQ(full.cache_name, "full+fp");
  EXPECT_EQ(exact.cache_stats.payload_bytes, full.cache_stats.payload_bytes);  // fp32 both

  eli::benchmark::BenchmarkConfig bc;
  bc.warmup = 0;
  bc.repetitions = 1;
  bc.quality = false;
  eli::benchmark::Benchmarker b(tiny_model(), bc);
  const auto r = b.benchmark_ids({prompt}, "tagged(tag=1)+int4", 4);
  EXPECT_TRUE(r.error.empty()) << r.error;
  EXPECT_EQ(r.cache_name, "tagged(tag=1)+int4/group32");
  EXPECT_EQ(r.new_tokens, 4);
}

}  // namespace
