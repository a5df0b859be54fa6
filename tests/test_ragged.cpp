// Ragged batches: sequences of different lengths in one batch. Each sequence of a ragged batch
// gets what it gets alone: the cache's attention per row (every layout x codec, fused and ATen
// paths), and greedy generation per method on the shipped model. The paged pool hands blocks
// out as sequences grow and refuses, changing nothing, when it runs out.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "eli/cache/attend.h"
#include "eli/cache/paged.h"
#include "eli/error.h"
#include "eli/generator.h"
#include "eli/kv_cache.h"
#include "eli/model.h"

using eli::CacheConfig;
using eli::GenerationConfig;
using eli::Generator;
using eli::KVCache;
using eli::ModelShape;
using eli::QuantizationConfig;
using eli::model::GPT2;

namespace {

const ModelShape kShape{2, 2, 32, 128};  // layers, heads, head_dim, n_positions

std::unique_ptr<KVCache> make(const std::string& spec, int64_t batch, const CacheConfig& c,
                              const QuantizationConfig& q) {
  return eli::make_cache(spec, kShape, batch, c, q, at::kFloat, at::kCPU);
}

// Feeds a ragged batch and one cache per sequence the same rows, step by step, and compares
// each sequence's attention output.
void check_rows_match(const std::string& spec, const CacheConfig& c, const QuantizationConfig& q) {
  SCOPED_TRACE(spec);
  const std::vector<int64_t> prompt{3, 17, 9, 30};
  const int64_t batch = static_cast<int64_t>(prompt.size()), tmax = 30, steps = 45;
  auto ragged = make(spec, batch, c, q);
  std::vector<std::unique_ptr<KVCache>> solo;
  for (int64_t b = 0; b < batch; ++b) solo.push_back(make(spec, 1, c, q));
  at::manual_seed(11);
  const int64_t h = kShape.n_head, d = kShape.head_dim;
  for (int64_t step = 0; step <= steps; ++step) {
    const int64_t t = step == 0 ? tmax : 1;
    std::vector<int64_t> lens(static_cast<size_t>(batch), 1);
    if (step == 0) lens = prompt;
    for (int layer = 0; layer < kShape.n_layer; ++layer) {
      const at::Tensor k = at::randn({batch, h, t, d}), v = at::randn({batch, h, t, d});
      const at::Tensor qq = at::randn({batch, h, t, d});
      ragged->append_ragged(layer, k, v, lens, {});
      const at::Tensor out = ragged->attend(layer, qq);
      ASSERT_EQ(out.sizes(), qq.sizes());
      for (int64_t b = 0; b < batch; ++b) {
        const int64_t tb = lens[static_cast<size_t>(b)];
        auto row = [&](const at::Tensor& x) { return x.narrow(0, b, 1).narrow(2, 0, tb); };
        solo[static_cast<size_t>(b)]->append(layer, row(k).contiguous(), row(v).contiguous());
        const at::Tensor want = solo[static_cast<size_t>(b)]->attend(layer, row(qq).contiguous());
        ASSERT_TRUE(at::allclose(row(out), want, 1e-5, 1e-5))
            << "sequence " << b << " step " << step << " layer " << layer << " max diff "
            << (row(out) - want).abs().max().item<float>();
        if (tb < t) {
          EXPECT_EQ(out.narrow(0, b, 1).narrow(2, tb, t - tb).abs().max().item<float>(), 0.0f)
              << "padding rows are zeros";
        }
      }
    }
  }
  // The batch holds what its sequences hold apart.
  int64_t payload = 0;
  for (const auto& s : solo) payload += s->stats().payload_bytes;
  EXPECT_EQ(ragged->stats().payload_bytes, payload);
}

}  // namespace

TEST(Ragged, EveryLayoutAndCodecAttendsPerSequence) {
  CacheConfig c;
  c.window_size = 12;
  c.sink_tokens = 2;
  c.block_size = 8;
  c.chunk_size = 4;
  c.keep_last = 10;
  c.max_tokens = 90;
  QuantizationConfig q;
  for (bool fused : {true, false}) {
    eli::cache::fused_decode_on_cpu() = fused;
    SCOPED_TRACE(fused ? "fused decode" : "ATen decode");
    for (const std::string layout : {"full", "sliding", "paged", "chunked"}) {
      for (const std::string codec :
           {"fp", "int8", "int4/group32/zp", "k:int8,v:int4", "int8+rotate"}) {
        check_rows_match(layout + "+" + codec, c, q);
      }
    }
    // The residual ring (both sides quantized, a prefix layout).
    q.residual_tokens = 5;
    check_rows_match("full+int4", c, q);
    check_rows_match("paged+k:int8,v:int4", c, q);
    q.residual_tokens = 0;
  }
  eli::cache::fused_decode_on_cpu() = true;
}

TEST(Ragged, BadCountsAreErrors) {
  CacheConfig c;
  c.max_tokens = 20;
  auto cache = make("full", 2, c, {});
  const at::Tensor k = at::zeros({2, kShape.n_head, 4, kShape.head_dim});
  EXPECT_THROW(cache->append_ragged(0, k, k, {1}, {}), eli::Error);      // one count for two rows
  EXPECT_THROW(cache->append_ragged(0, k, k, {1, 5}, {}), eli::Error);   // more than the row holds
  EXPECT_THROW(cache->append_ragged(0, k, k, {-1, 2}, {}), eli::Error);  // negative
  cache->append_ragged(0, k, k, {4, 2}, {});
  cache->attend(0, k);
  // Capacity per sequence: 4 + 17 > 20 for the first, 2 + 17 fits the second.
  const at::Tensor big = at::zeros({2, kShape.n_head, 17, kShape.head_dim});
  try {
    cache->append_ragged(0, big, big, {17, 17}, {});
    FAIL() << "capacity exceeded without an error";
  } catch (const eli::Error& e) {
    EXPECT_NE(std::string(e.what()).find("sequence 0"), std::string::npos) << e.what();
  }
  cache->append_ragged(0, big, big, {16, 17}, {});  // the cache still works after the error
  cache->attend(0, big);
  EXPECT_EQ(cache->stats().tokens_seen, 20);
}

TEST(Ragged, PagedPoolSizedFromSeqTokens) {
  // CacheConfig.seq_tokens: each sequence's most tokens, rounded up to blocks, capped at the
  // capacity; pool_blocks wins when given; a wrong count or a negative entry is an error.
  CacheConfig c;
  c.block_size = 8;
  c.max_tokens = 32;
  c.seq_tokens = {5, 0, 20, 100};
  auto cache = make("paged", 4, c, {});
  EXPECT_EQ(cache->stats().blocks_total, 1 + 0 + 3 + 4);
  EXPECT_EQ(cache->name(), "paged(block=8,pool=8)+fp");
  c.pool_blocks = 2;
  EXPECT_EQ(make("paged", 4, c, {})->stats().blocks_total, 2);
  c.pool_blocks = 0;
  EXPECT_THROW(make("paged", 3, c, {}), eli::Error);  // 4 entries for 3 sequences
  c.seq_tokens = {5, -1, 20, 100};
  EXPECT_THROW(make("paged", 4, c, {}), eli::Error);
  c.seq_tokens = {5, 0, 20, 100};
  EXPECT_NO_THROW(make("full", 3, c, {}));  // other layouts ignore it
}

TEST(Ragged, PagedPoolAllocatesAsSequencesGrow) {
  CacheConfig c;
  c.block_size = 4;
  c.max_tokens = 64;
  c.pool_blocks = 6;
  auto cache = make("paged", 2, c, {});
  EXPECT_EQ(cache->stats().blocks_in_use, 0);
  EXPECT_EQ(cache->stats().blocks_total, 6);
  const int64_t h = kShape.n_head, d = kShape.head_dim;
  const at::Tensor k = at::randn({2, h, 9, d});
  for (int l = 0; l < kShape.n_layer; ++l) {
    cache->append_ragged(l, k, k, {9, 2}, {});
    cache->attend(l, k);
  }
  // ceil(9 / 4) + ceil(2 / 4) blocks, whatever the capacity.
  EXPECT_EQ(cache->stats().blocks_in_use, 4);
  // 8 more positions for sequence 1 need 2 more blocks (free: 2): fits; then nothing is left.
  const at::Tensor k8 = at::randn({2, h, 8, d});
  for (int l = 0; l < kShape.n_layer; ++l) {
    cache->append_ragged(l, k8, k8, {0, 8}, {});
    cache->attend(l, k8);
  }
  EXPECT_EQ(cache->stats().blocks_in_use, 6);
  const eli::CacheStats before = cache->stats();
  try {
    cache->append_ragged(0, k8, k8, {8, 0}, {});
    cache->attend(0, k8);
    FAIL() << "an exhausted pool gave no error";
  } catch (const eli::Error& e) {
    EXPECT_NE(std::string(e.what()).find("block pool is exhausted"), std::string::npos) << e.what();
  }
  // Nothing changed, and the cache works on: sequence 0 still has room in its last block.
  const at::Tensor k3 = at::randn({2, h, 3, d});
  for (int l = 0; l < kShape.n_layer; ++l) {
    cache->append_ragged(l, k3, k3, {3, 0}, {});
    cache->attend(l, k3);
  }
  EXPECT_EQ(cache->stats().blocks_in_use, before.blocks_in_use);
  cache->reset();
  EXPECT_EQ(cache->stats().blocks_in_use, 0);
}

// ---- Generation on the shipped model ----------------------------------------------------------

namespace {

const GPT2& shipped() {
  static const GPT2 m = GPT2::from_spec("default", at::kCPU, at::kFloat);
  return m;
}

std::vector<int64_t> prompt_of(int64_t n, int64_t seed) {
  std::vector<int64_t> p;
  for (int64_t i = 0; i < n; ++i) p.push_back((i * 131 + seed * 977 + 17) % 50000);
  return p;
}

}  // namespace

TEST(Ragged, GreedyOutputPerSequenceEqualsItsSoloRun) {
  Generator g(shipped());
  // The workload: 8 prompts of 5 .. 400 tokens.
  std::vector<std::vector<int64_t>> prompts;
  int64_t seed = 1;
  for (int64_t len : {5, 400, 61, 23, 170, 40, 285, 115}) prompts.push_back(prompt_of(len, seed++));
  std::vector<std::string> methods = eli::method_names();
  for (const char* spec :
       {"sliding(window=24,sinks=2)+int4", "paged(block=8)+int8", "paged(block=8)+k:int8,v:int4",
        "chunked(chunk=8,keep=16)", "full+int4+residual=6", "sliding(window=16)+k:int8,v:int4"}) {
    methods.push_back(spec);
  }
  for (const auto& method : methods) {
    SCOPED_TRACE(method);
    GenerationConfig cfg;
    cfg.method = method;
    cfg.max_new_tokens = 12;
    const auto batch = g.generate(prompts, cfg);
    ASSERT_EQ(batch.tokens.size(), prompts.size());
    for (size_t b = 0; b < prompts.size(); ++b) {
      const auto solo = g.generate({prompts[b]}, cfg);
      EXPECT_EQ(batch.tokens[b], solo.tokens[0])
          << "sequence " << b << " (prompt of " << prompts[b].size() << " tokens)";
    }
  }
}

TEST(Ragged, GeneratePoolFollowsTheWork) {
  // A paged cache of generate's own holds blocks for each sequence's prompt + new tokens, not
  // for the model's n_positions: its allocation follows the tokens stored.
  Generator g(shipped());
  const std::vector<std::vector<int64_t>> prompts{prompt_of(5, 1), prompt_of(61, 2),
                                                  prompt_of(23, 3)};
  GenerationConfig cfg;
  cfg.max_new_tokens = 12;
  cfg.method = "full_cache";
  const auto full = g.generate(prompts, cfg);
  cfg.method = "paged(block=8)";
  const auto paged = g.generate(prompts, cfg);
  EXPECT_EQ(paged.tokens, full.tokens);
  const int64_t blocks = (5 + 11 + 7) / 8 + (61 + 11 + 7) / 8 + (23 + 11 + 7) / 8;
  EXPECT_EQ(paged.cache_stats.blocks_total, blocks);
  EXPECT_EQ(paged.cache_stats.blocks_in_use, blocks);
  EXPECT_EQ(paged.cache_stats.payload_bytes, full.cache_stats.payload_bytes);
  EXPECT_LT(paged.cache_stats.allocated_bytes() * 10, full.cache_stats.allocated_bytes());
}

TEST(Ragged, StoppedSequencesEndWhileOthersGoOn) {
  Generator g(shipped());
  const std::vector<std::vector<int64_t>> prompts{prompt_of(7, 5), prompt_of(30, 6)};
  int paged_checked = 0;
  for (const std::string method :
       {"full_cache", "paged(block=4)", "paged(block=4)+int4", "sliding(window=8)+int8",
        "chunked(chunk=4,keep=8)", "no_cache"}) {
    SCOPED_TRACE(method);
    GenerationConfig cfg;
    cfg.method = method;
    cfg.max_new_tokens = 16;
    const auto free_run = g.generate(prompts, cfg);
    // Sequence 0 ends at its stop token (its storage goes back), sequence 1 runs on unchanged.
    // A stop token among sequence 0's first tokens that sequence 1 never emits, if any.
    const auto& t1 = free_run.tokens[1];
    size_t at = 2;
    for (size_t i = 1; i < 6; ++i) {
      if (std::find(t1.begin(), t1.end(), free_run.tokens[0][i]) == t1.end()) {
        at = i;
        break;
      }
    }
    cfg.stop_tokens = {free_run.tokens[0][at]};
    const auto stopped = g.generate(prompts, cfg);
    const auto cut = [&](const std::vector<int64_t>& t) {
      const auto it = std::find(t.begin(), t.end(), cfg.stop_tokens[0]);
      return std::vector<int64_t>(t.begin(), it == t.end() ? t.end() : it + 1);
    };
    EXPECT_EQ(stopped.tokens[0], cut(free_run.tokens[0]));
    EXPECT_LE(stopped.tokens[0].size(), at + 1);
    EXPECT_EQ(stopped.tokens[1], cut(free_run.tokens[1]));
    if (method.rfind("paged", 0) == 0 && stopped.tokens[1].size() == 16) {
      // Sequence 0's blocks went back to the pool when it stopped: only sequence 1's are held.
      EXPECT_EQ(stopped.cache_stats.blocks_in_use, (30 + 15 + 3) / 4);
      EXPECT_GT(free_run.cache_stats.blocks_in_use, stopped.cache_stats.blocks_in_use);
      ++paged_checked;
    }
  }
  EXPECT_GT(paged_checked, 0);
}

// ---- Prefix reuse (paged) ---------------------------------------------------------------------

namespace {

// n requests: a shared prefix of `shared` tokens, then `own` tokens of their own.
std::vector<std::vector<int64_t>> shared_prefix_prompts(int64_t n, int64_t shared, int64_t own) {
  std::vector<std::vector<int64_t>> out;
  const auto prefix = prompt_of(shared, 99);
  for (int64_t i = 0; i < n; ++i) {
    auto p = prefix;
    const auto tail = prompt_of(own + i % 3, 200 + i);  // tails of different lengths
    p.insert(p.end(), tail.begin(), tail.end());
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace

TEST(PrefixReuse, OutputWithReuseEqualsOutputWithoutForEveryCodec) {
  Generator g(shipped());
  auto prompts = shared_prefix_prompts(5, 40, 6);
  prompts.push_back(prompt_of(33, 7));  // one that shares nothing
  for (const std::string spec : {"paged(block=8)", "paged(block=8)+int8", "paged(block=8)+int4",
                                 "paged(block=8)+k:int8,v:int4", "paged(block=16)+int4/zp"}) {
    SCOPED_TRACE(spec);
    GenerationConfig cfg;
    cfg.method = spec;
    cfg.max_new_tokens = 10;
    cfg.cache.prefix_reuse = false;
    const auto plain = g.generate(prompts, cfg);
    EXPECT_EQ(plain.reused_tokens, 0);
    cfg.cache.prefix_reuse = true;
    const auto reused = g.generate(prompts, cfg);
    EXPECT_EQ(reused.tokens, plain.tokens);
    // Sequences 1..4 take the prefix's full blocks (40 tokens: 5 blocks of 8, 2 of 16).
    const int64_t block = spec.find("16") != std::string::npos ? 16 : 8;
    EXPECT_EQ(reused.reused_tokens, 4 * (40 / block) * block);
    EXPECT_EQ(reused.prefill_tokens + reused.reused_tokens, plain.prefill_tokens);
    EXPECT_LT(reused.cache_stats.blocks_in_use, plain.cache_stats.blocks_in_use);
  }
}

TEST(PrefixReuse, KeptPoolSharesAcrossCallsAndReferencesReturnToZero) {
  Generator g(shipped());
  const auto prompts = shared_prefix_prompts(4, 32, 5);
  GenerationConfig cfg;
  cfg.method = "paged(block=8)+int8";
  cfg.max_new_tokens = 8;
  const auto cold = g.generate(prompts, cfg);
  cfg.cache.pool = g.make_cache_for(cfg, 1)->block_pool();
  ASSERT_NE(cfg.cache.pool, nullptr);
  const auto first = g.generate(prompts, cfg);
  const auto second = g.generate(prompts, cfg);
  EXPECT_EQ(first.tokens, cold.tokens);
  EXPECT_EQ(second.tokens, cold.tokens);
  // The second call finds every full block of every prompt (the first published them).
  int64_t full_blocks = 0;
  for (const auto& p : prompts) full_blocks += (static_cast<int64_t>(p.size()) - 1) / 8 * 8;
  EXPECT_EQ(second.reused_tokens, full_blocks);
  EXPECT_LT(second.prefill_tokens, first.prefill_tokens);
  // Every cache is gone: no block is referenced; the published ones stay findable.
  const auto& pool = *cfg.cache.pool;
  EXPECT_EQ(pool.available(), pool.num_blocks());
  EXPECT_GT(pool.cached(), 0);
  for (int64_t b = 0; b < pool.num_blocks(); ++b)
    EXPECT_EQ(pool.refcount(static_cast<int32_t>(b)), 0);
  // A pool of another shape is refused by name.
  GenerationConfig other = cfg;
  other.method = "paged(block=16)+int8";
  EXPECT_THROW(g.generate(prompts, other), eli::Error);
}

TEST(PrefixReuse, HashCollisionsNeverShareDifferentTokens) {
  Generator g(shipped());
  // Every prefix hashes alike: only the token comparison tells blocks apart.
  eli::cache::BlockPool::collide_for_test() = true;
  auto prompts = shared_prefix_prompts(3, 24, 5);
  prompts.push_back(prompt_of(30, 8));
  prompts.push_back(prompt_of(30, 9));
  GenerationConfig cfg;
  cfg.method = "paged(block=8)";
  cfg.max_new_tokens = 8;
  const auto reused = g.generate(prompts, cfg);
  cfg.cache.prefix_reuse = false;
  const auto plain = g.generate(prompts, cfg);
  eli::cache::BlockPool::collide_for_test() = false;
  EXPECT_EQ(reused.tokens, plain.tokens);
  EXPECT_EQ(reused.reused_tokens, 2 * 24);  // the two followers of the shared prefix only
}

TEST(PrefixReuse, SharedPrefixWorkloadComputesAndReservesAFraction) {
  // 32 requests sharing a 512-token prefix + 32 tokens of their own (the workload),
  // against full_cache; the pool kept warm from an earlier batch of the same system prompt.
  Generator g(shipped());
  std::vector<std::vector<int64_t>> prompts;
  const auto system = prompt_of(512, 1);
  for (int64_t i = 0; i < 32; ++i) {
    auto p = system;
    const auto q = prompt_of(32, 300 + i);
    p.insert(p.end(), q.begin(), q.end());
    prompts.push_back(std::move(p));
  }
  GenerationConfig full;
  full.method = "full_cache";
  full.max_new_tokens = 4;
  const auto f = g.generate(prompts, full);
  GenerationConfig paged = full;
  paged.method = "paged(block=16)";
  paged.cache.pool = g.make_cache_for(paged, 32)->block_pool();
  g.generate({prompts[0]}, paged);  // an earlier request with the same system prompt
  const auto p = g.generate(prompts, paged);
  EXPECT_EQ(p.tokens, f.tokens);
  EXPECT_EQ(f.prefill_tokens, 32 * 544);
  EXPECT_LE(p.prefill_tokens * 16, f.prefill_tokens) << p.prefill_tokens << " computed";
  const int64_t block_bytes =
      p.cache_stats.allocated_bytes() / std::max<int64_t>(p.cache_stats.blocks_total, 1);
  EXPECT_LE(p.cache_stats.blocks_in_use * block_bytes * 8, f.cache_stats.allocated_bytes())
      << p.cache_stats.blocks_in_use << " blocks of " << block_bytes << " bytes";
}

TEST(PrefixReuse, ChildOfAReusedParentSlotIsNotFound) {
  CacheConfig c;
  c.block_size = 2;
  c.pool_blocks = 2;
  c.max_tokens = 8;
  auto cache = make("paged", 1, c, {});
  auto pool = cache->block_pool();
  ASSERT_NE(pool, nullptr);
  // Every key collides: only the comparison of parent (as published) and tokens decides.
  eli::cache::BlockPool::collide_for_test() = true;
  const std::vector<int64_t> a{1, 2}, b{3, 4}, a2{5, 6};
  const auto got = pool->take(2);
  pool->publish(got[0], -1, a.data());
  pool->publish(got[1], got[0], b.data());
  EXPECT_EQ(pool->find(-1, a.data()), got[0]);
  pool->unref(got[0]);
  pool->unref(got[0]);
  pool->unref(got[1]);  // both unreferenced, still findable: got[0] released first
  EXPECT_EQ(pool->available(), 2);
  EXPECT_EQ(pool->cached(), 2);
  const auto again = pool->take(1);  // evicts the least recently released: got[0]
  ASSERT_EQ(again[0], got[0]);
  pool->publish(again[0], -1, a2.data());  // the slot now holds other tokens
  EXPECT_EQ(pool->find(-1, a.data()), -1) << "evicted";
  EXPECT_EQ(pool->find(again[0], b.data()), -1)
      << "published under the slot's earlier tokens: not a child of the new ones";
  EXPECT_EQ(pool->find(-1, a2.data()), again[0]);
  EXPECT_THROW(pool->take(2), eli::Error);  // one block left to take
  eli::cache::BlockPool::collide_for_test() = false;
}
