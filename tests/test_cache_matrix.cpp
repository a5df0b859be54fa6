// Every layout x codec combination: 200 append+attend steps, reset, capacity errors; exact
// stats for hand-computed configurations; make_cache names, specs and errors.

#include <gtest/gtest.h>

#include <string>

#include "eli/error.h"
#include "eli/kv_cache.h"

namespace eli {
namespace {

const ModelShape kShape{2, 2, 64, 1024};

std::unique_ptr<KVCache> make(const std::string& m, int64_t batch = 2, CacheConfig c = {},
                              QuantizationConfig q = {}) {
  return make_cache(m, kShape, batch, c, q, at::kFloat, at::kCPU);
}

void run_steps(KVCache& cache, int64_t prefill, int steps, int64_t batch) {
  auto r = [&](int64_t t) { return at::randn({batch, kShape.n_head, t, kShape.head_dim}); };
  for (int s = 0; s <= steps; ++s) {
    const int64_t t = s == 0 ? prefill : 1;
    for (int l = 0; l < kShape.n_layer; ++l) {
      cache.append(l, r(t), r(t));
      auto out = cache.attend(l, r(t));
      ASSERT_EQ(out.sizes(), (std::vector<int64_t>{batch, kShape.n_head, t, kShape.head_dim}));
      ASSERT_TRUE(at::isfinite(out).all().item<bool>()) << cache.name() << " step " << s;
    }
  }
}

bool same_stats(const CacheStats& a, const CacheStats& b) {
  return a.tokens_seen == b.tokens_seen && a.tokens_stored == b.tokens_stored &&
         a.payload_bytes == b.payload_bytes && a.scale_bytes == b.scale_bytes &&
         a.residual_bytes == b.residual_bytes && a.metadata_bytes == b.metadata_bytes &&
         a.reserved_bytes == b.reserved_bytes && a.blocks_in_use == b.blocks_in_use &&
         a.blocks_total == b.blocks_total && a.padding_bytes == b.padding_bytes;
}

TEST(CacheMatrix, EveryLayoutAndCodecRuns200StepsResetsAndHitsCapacity) {
  at::manual_seed(21);
  CacheConfig c;
  c.window_size = 40;
  c.sink_tokens = 2;
  c.block_size = 16;
  c.chunk_size = 8;
  c.keep_last = 32;
  c.max_tokens = 230;
  QuantizationConfig q;
  q.residual_tokens = 5;
  const std::vector<std::string> codecs{"fp",
                                        "int8",
                                        "int8/per_tensor",
                                        "int8/group64/zp",
                                        "int4",
                                        "int4/per_tensor",
                                        "int4/per_token_head/zp",
                                        "int4/group64",
                                        "k:int8,v:int4",
                                        "k:int4/group32/zp,v:int8/per_tensor",
                                        "k:fp,v:int4"};
  for (const std::string layout : {"full", "sliding", "paged", "chunked"}) {
    for (const auto& codec : codecs) {
      for (const std::string extra : {"", "+rotate"}) {
        const std::string spec = layout + "+" + codec + extra;
        SCOPED_TRACE(spec);
        auto cache = make(spec, 2, c, q);
        const CacheStats fresh = cache->stats();
        EXPECT_EQ(fresh.tokens_seen, 0);
        EXPECT_EQ(fresh.payload_bytes, 0);
        // 200 decode steps per combination; the rotated variants 60 (same code path, kept fast).
        const int steps = extra.empty() ? 200 : 60;
        run_steps(*cache, 20 + 200 - steps, steps, 2);
        auto s = cache->stats();
        EXPECT_EQ(s.tokens_seen, 220);
        EXPECT_GT(s.payload_bytes, 0);
        // The stored name is itself a spec that builds the same cache.
        EXPECT_EQ(make(cache->name(), 2, c, q)->name(), cache->name());
        // Capacity: 220 + 11 > 230.
        auto big = at::randn({2, 2, 11, 64});
        EXPECT_THROW(cache->append(0, big, big), Error);
        cache->reset();
        EXPECT_TRUE(same_stats(cache->stats(), fresh));
        run_steps(*cache, 3, 2, 2);  // usable after reset
      }
    }
  }
}

TEST(CacheMatrix, StatsExactForHandComputedConfigs) {
  CacheConfig c;
  c.max_tokens = 100;
  c.block_size = 16;
  auto r = [](int64_t t) { return at::randn({3, 2, t, 64}); };
  auto fill = [&](KVCache& k, int64_t t) {
    for (int l = 0; l < 2; ++l) {
      k.append(l, r(t), r(t));
      k.attend(l, r(t));
    }
  };
  // full fp32: 2 layers * 3 seqs * 2 heads * 37 tokens * 64 * 4 bytes * (K + V).
  auto full = make("full_cache", 3, c);
  fill(*full, 37);
  auto s = full->stats();
  EXPECT_EQ(s.payload_bytes, 2 * 3 * 2 * 37 * 64 * 4 * 2);
  EXPECT_EQ(s.scale_bytes, 0);
  EXPECT_EQ(s.reserved_bytes, 2 * 3 * 2 * (100 - 37) * 64 * 4 * 2);
  // INT8 per_token_head: 64 code bytes + one fp16 scale per token/head, K and V.
  auto i8 = make("quant_int8", 3, c);
  fill(*i8, 37);
  s = i8->stats();
  EXPECT_EQ(s.payload_bytes, 2 * 3 * 2 * 37 * 64 * 2);
  EXPECT_EQ(s.scale_bytes, 2 * 3 * 2 * 37 * 2 * 2);
  // INT4 group 32 with zero-point: 32 bytes + 2 scales + 2 minima (fp16) per token/head.
  QuantizationConfig zq;
  zq.zero_point = true;
  auto i4 = make("quant_int4", 3, c, zq);
  fill(*i4, 37);
  s = i4->stats();
  EXPECT_EQ(s.payload_bytes, 2 * 3 * 2 * 37 * 32 * 2);
  EXPECT_EQ(s.scale_bytes, 2 * 3 * 2 * 37 * (2 + 2) * 2 * 2);
  // per_tensor: one fp32 scale per layer and side.
  auto pt = make("full+int8/per_tensor", 3, c);
  fill(*pt, 37);
  EXPECT_EQ(pt->stats().scale_bytes, 2 * 4 * 2);
  // paged fp32, block 16: 3 blocks per sequence for 37 tokens, 7 blocks per sequence in the pool.
  auto pg = make("paged_attention", 3, c);
  fill(*pg, 37);
  s = pg->stats();
  const int64_t slot = 2 * 2 * 64 * 4 * 2;  // layers * heads * D * fp32 * (K + V)
  EXPECT_EQ(s.blocks_total, 3 * 7);
  EXPECT_EQ(s.blocks_in_use, 3 * 3);
  EXPECT_EQ(s.padding_bytes, 3 * (48 - 37) * slot);
  // Reserved: the pool's slots (and its scratch block, where a graph step's idle rows write)
  // not holding a token.
  EXPECT_EQ(s.reserved_bytes, ((3 * 7 + 1) * 16 - 3 * 37) * slot);
  EXPECT_EQ(s.metadata_bytes, 3 * 7 * 4);
  EXPECT_EQ(s.payload_bytes, 3 * 37 * slot);
  // mixed with a residual window of 8: fp32 copies of the 8 newest tokens for both sides.
  QuantizationConfig rq;
  rq.residual_tokens = 8;
  auto mx = make("quant_mixed", 3, c, rq);
  fill(*mx, 37);
  s = mx->stats();
  EXPECT_EQ(s.payload_bytes, 2 * 3 * 2 * 37 * (64 + 32));
  EXPECT_EQ(s.scale_bytes, 2 * 3 * 2 * 37 * (1 + 2) * 2);
  EXPECT_EQ(s.residual_bytes, 2 * 3 * 2 * 8 * 64 * 4 * 2);
}

TEST(CacheMatrix, CapacityAboveNPositionsIsAnError) {
  // A capacity no sequence can reach (positions end at n_positions) is refused before anything
  // is allocated, from a spec or from CacheConfig; n_positions itself is fine.
  for (const std::string spec : {"full(max=1025)", "paged(max=102471024)", "sliding(max=4096)+int8",
                                 "chunked(max=2147483647)+int4"}) {
    try {
      make(spec);
      ADD_FAILURE() << spec << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("above the model's n_positions 1024"), std::string::npos)
          << e.what();
    }
  }
  CacheConfig c;
  c.max_tokens = 1025;
  EXPECT_THROW(make("full_cache", 1, c), Error);
  c.max_tokens = 1024;
  EXPECT_NO_THROW(make("full_cache", 1, c));
  EXPECT_NO_THROW(make("paged(max=1024)+int4"));
}

TEST(CacheMatrix, LayoutParametersUpToIntMaxAreBoundedByCapacity) {
  // The largest values a spec parses (found by fuzz_spec: keep + chunk overflowed int): each
  // cache is built, bounded by its capacity, and runs.
  CacheConfig c;
  c.max_tokens = 40;
  for (const std::string spec :
       {"chunked(chunk=2147483647,bias=0)+rotate", "chunked(chunk=2147483647,keep=2147483647)",
        "chunked(chunk=1,keep=2147483647)+int4", "sliding(window=2147483647,sinks=2147483647)",
        "paged(block=4096)+int8"}) {
    SCOPED_TRACE(spec);
    std::unique_ptr<KVCache> cache;
    ASSERT_NO_THROW(cache = make(spec, 2, c));
    run_steps(*cache, 8, 32, 2);  // 8 + 32 positions
    EXPECT_EQ(cache->stats().tokens_seen, 40);
    EXPECT_LE(cache->stats().tokens_stored, 40);
    EXPECT_THROW(run_steps(*cache, 1, 0, 2), Error);  // the 41st position: past max_tokens
  }
}

TEST(CacheMatrix, MethodNamesAndErrors) {
  const auto& names = method_names();
  ASSERT_EQ(names.size(), 8u);
  EXPECT_EQ(names[0], "no_cache");
  for (const auto& n : names) {
    if (n == "no_cache") {
      try {
        make(n);
        FAIL() << "no_cache built a cache";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("not a cache"), std::string::npos) << e.what();
      }
      continue;
    }
    EXPECT_NO_THROW(make(n)) << n;
  }
  EXPECT_EQ(make("quant_int8")->name(), "full+int8/per_token_head");
  EXPECT_EQ(make("quant_int4")->name(), "full+int4/group32");
  EXPECT_EQ(make("quant_mixed")->name(), "full+k:int8/per_token_head,v:int4/group32");
  EXPECT_EQ(make("paged+int8")->name(), "paged(block=64)+int8/per_token_head");
  EXPECT_EQ(make("sliding_window(window=32,sinks=4)+int4")->name(),
            "sliding(window=32,sinks=4)+int4/group32");
  EXPECT_EQ(make("full+k:int8,v:int4/group64")->name(),
            "full+k:int8/per_token_head,v:int4/group64");
  try {
    make("fancy_cache");
    FAIL() << "unknown name accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    for (const auto& n : names) EXPECT_NE(m.find(n), std::string::npos) << m;
  }
  for (const std::string bad : {"full+int3", "paged(blok=4)", "full+int8/group48", "sliding(",
                                "full+int8+int4", "full+int8/per_tensor/zp", "full+k:int8;v:fp"}) {
    EXPECT_THROW(make(bad), Error) << bad;
  }
  // Shapes, layers and ordering are checked.
  auto c = make("full_cache");
  auto k = at::randn({2, 2, 1, 64});
  EXPECT_THROW(c->append(2, k, k), Error);
  EXPECT_THROW(c->append(0, at::randn({2, 2, 1, 32}), k), Error);
  EXPECT_THROW(c->attend(0, k), Error);  // attend without append
  // Capacity defaults to n_positions.
  auto d = make("full_cache", 1);
  auto big = at::randn({1, 2, 1025, 64});
  EXPECT_THROW(d->append(0, big, big), Error);
}

}  // namespace
}  // namespace eli
