// Cache-level tests without a model: Paged vs Contiguous bit-identity, sliding window (+sinks)
// vs masked full attention, chunk summaries, residual window, rotation.

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "eli/cache/cache.h"
#include "eli/cache/codecs.h"
#include "eli/cache/paged.h"
#include "eli/error.h"
#include "eli/kv_cache.h"

namespace eli {
namespace {

const ModelShape kShape{2, 3, 32, 1024};  // 2 layers, 3 heads, head_dim 32
constexpr int64_t kBatch = 2;

std::unique_ptr<KVCache> make(const std::string& m, CacheConfig c = {}, QuantizationConfig q = {}) {
  return make_cache(m, kShape, kBatch, c, q, at::kFloat, at::kCPU);
}

at::Tensor rnd(int64_t t) { return at::randn({kBatch, kShape.n_head, t, kShape.head_dim}); }

// Plain fp64 attention of q (positions p0..p0+T-1) over all K/V [B,H,N,D] with a visibility rule.
template <class Visible>
at::Tensor reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t p0,
                     Visible visible) {
  const int64_t t = q.size(2), n = k.size(2);
  auto mask = at::zeros({t, n}, at::kDouble);
  for (int64_t i = 0; i < t; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      if (!(j <= p0 + i && visible(p0 + i, j)))
        mask[i][j] = -std::numeric_limits<double>::infinity();
    }
  }
  auto s = at::matmul(q.to(at::kDouble), k.to(at::kDouble).transpose(-2, -1)) /
               std::sqrt(double(q.size(3))) +
           mask;
  return at::matmul(at::softmax(s, -1), v.to(at::kDouble));
}

void expect_close(const at::Tensor& got, const at::Tensor& want, double tol,
                  const std::string& what) {
  auto diff = (got.to(at::kDouble) - want).abs().flatten();
  const int64_t i = diff.argmax().item<int64_t>();
  EXPECT_LE(diff[i].item<double>(), tol)
      << what << ": worst element " << i << " got " << got.flatten()[i].item<double>() << " want "
      << want.flatten()[i].item<double>();
}

TEST(CacheLayouts, PagedBitIdenticalToContiguousOver300Steps) {
  at::manual_seed(11);
  CacheConfig c;
  c.block_size = 7;  // awkward: partly filled blocks most of the time
  for (const std::string codec : {"", "+int8", "+int4/group32/zp", "+k:int8/per_tensor,v:fp"}) {
    auto full = make("full" + codec, c), paged = make("paged" + codec, c);
    auto step = [&](int64_t t) {
      for (int l = 0; l < kShape.n_layer; ++l) {
        auto k = rnd(t), v = rnd(t), q = rnd(t);
        full->append(l, k, v);
        paged->append(l, k, v);
        auto a = full->attend(l, q), b = paged->attend(l, q);
        ASSERT_TRUE(at::equal(a, b))
            << codec << " layer " << l << " max diff " << (a - b).abs().max().item<float>();
      }
    };
    step(13);  // prefill
    for (int i = 0; i < 300; ++i) step(1);
    auto s = paged->stats();
    EXPECT_EQ(s.tokens_seen, 313);
    EXPECT_EQ(s.blocks_in_use, kBatch * ((313 + 6) / 7));
    auto* pl =
        dynamic_cast<cache::Cache<cache::PagedLayout, cache::IdentityCodec, cache::IdentityCodec>*>(
            paged.get());
    if (pl) {
      EXPECT_EQ(pl->layout().free_blocks(), s.blocks_total - s.blocks_in_use);
    }
    paged->reset();
    EXPECT_EQ(paged->stats().blocks_in_use, 0);
    if (pl) {
      EXPECT_EQ(pl->layout().free_blocks(), pl->stats().blocks_total);
    }
  }
}

// Runs a cache against a reference over the full K/V, with a prefill longer than the window.
template <class Visible>
void check_against_masked(const std::string& method, const CacheConfig& c, Visible visible,
                          double tol) {
  at::manual_seed(12);
  auto cache = make(method, c);
  std::vector<std::vector<at::Tensor>> ks(kShape.n_layer), vs(kShape.n_layer);
  int64_t pos = 0;
  for (int64_t t : {40, 1, 1, 3, 1, 25, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}) {
    for (int l = 0; l < kShape.n_layer; ++l) {
      auto k = rnd(t), v = rnd(t), q = rnd(t);
      ks[l].push_back(k);
      vs[l].push_back(v);
      cache->append(l, k, v);
      auto got = cache->attend(l, q);
      auto want = reference(q, at::cat(ks[l], 2), at::cat(vs[l], 2), pos, visible);
      expect_close(got, want, tol, method + " at position " + std::to_string(pos));
    }
    pos += t;
  }
}

TEST(CacheLayouts, SlidingWindowEqualsMaskedFullAttention) {
  CacheConfig c;
  c.window_size = 16;
  check_against_masked(
      "sliding_window", c, [](int64_t p, int64_t j) { return p - j < 16; }, 1e-5);
  auto s = make("sliding_window", c)->stats();
  EXPECT_EQ(s.tokens_stored, 0);
}

TEST(CacheLayouts, SinksPlusWindowEqualsMaskedFullAttention) {
  CacheConfig c;
  c.window_size = 12;
  c.sink_tokens = 4;
  check_against_masked(
      "sliding_window", c, [](int64_t p, int64_t j) { return j < 4 || p - j < 12; }, 1e-5);
  auto cache = make("sliding_window", c);
  for (int l = 0; l < 2; ++l) {
    cache->append(l, rnd(100), rnd(100));
    cache->attend(l, rnd(100));
  }
  auto s = cache->stats();
  EXPECT_EQ(s.tokens_stored, 16);  // bounded by sinks + window
  EXPECT_EQ(s.tokens_evicted, 84);
  EXPECT_EQ(s.payload_bytes, 2LL * 3 * kBatch * 16 * 32 * 4 * 2);
}

TEST(CacheLayouts, ChunkedIdenticalToFullUnderKeepLast) {
  CacheConfig c;
  c.keep_last = 60;
  c.chunk_size = 8;
  at::manual_seed(13);
  auto full = make("full_cache", c), chunk = make("chunked_cache", c);
  for (int64_t t : {20, 1, 1, 30, 1, 1, 1}) {  // 55 tokens <= keep_last
    for (int l = 0; l < 2; ++l) {
      auto k = rnd(t), v = rnd(t), q = rnd(t);
      full->append(l, k, v);
      chunk->append(l, k, v);
      EXPECT_TRUE(at::equal(full->attend(l, q), chunk->attend(l, q)));
    }
  }
  EXPECT_EQ(chunk->stats().tokens_stored, 55);
  EXPECT_EQ(chunk->stats().tokens_evicted, 0);
}

TEST(CacheLayouts, ChunkSummariesAreChunkMeans) {
  for (bool log_bias : {false, true}) {
    CacheConfig c;
    c.keep_last = 10;
    c.chunk_size = 6;
    c.summary_log_bias = log_bias;
    at::manual_seed(14);
    auto cache = make("chunked_cache", c);
    std::vector<at::Tensor> ks, vs;
    int64_t n = 0;
    for (int64_t t : {23, 1, 1, 1, 1, 1, 1, 1, 9, 1, 1}) {
      auto q = rnd(t);
      std::vector<at::Tensor> kl, vl;
      for (int l = 0; l < 2; ++l) {
        auto k = rnd(t), v = rnd(t);
        if (l == 0) {
          ks.push_back(k);
          vs.push_back(v);
        }
        cache->append(l, k, v);
        auto got = cache->attend(l, q);
        if (l != 0) continue;
        // Reference: summaries of chunks complete before this append, + exact rest, + causal new.
        auto K = at::cat(ks, 2), V = at::cat(vs, 2);
        const int64_t s = std::max<int64_t>(n - 10, 0) / 6;
        std::vector<at::Tensor> kk, vv;
        for (int64_t i = 0; i < s; ++i) {
          kk.push_back(K.narrow(2, i * 6, 6).mean(2, true));
          vv.push_back(V.narrow(2, i * 6, 6).mean(2, true));
        }
        kk.push_back(K.narrow(2, s * 6, n + t - s * 6));
        vv.push_back(V.narrow(2, s * 6, n + t - s * 6));
        auto kr = at::cat(kk, 2).to(at::kDouble), vr = at::cat(vv, 2).to(at::kDouble);
        const int64_t m = kr.size(2);
        auto bias = at::zeros({t, m}, at::kDouble);
        for (int64_t i = 0; i < t; ++i) {
          for (int64_t j = 0; j < m; ++j) {
            if (j < s) bias[i][j] = log_bias ? std::log(6.0) : 0.0;
            if (j >= m - t && j - (m - t) > i) bias[i][j] = -INFINITY;
          }
        }
        auto sc = at::matmul(q.to(at::kDouble), kr.transpose(-2, -1)) / std::sqrt(32.0) + bias;
        auto want = at::matmul(at::softmax(sc, -1), vr);
        expect_close(got, want, 1e-5, "chunked at n=" + std::to_string(n));
      }
      n += t;
      const int64_t s = std::max<int64_t>(n - 10, 0) / 6;
      auto st = cache->stats();
      EXPECT_EQ(st.tokens_stored, s + n - s * 6);
      EXPECT_LE(st.tokens_stored, 1024 / 6 + 10 + 6 - 1);
      EXPECT_EQ(st.tokens_evicted, s * 6);
    }
  }
}

TEST(CacheLayouts, ResidualWindowUsesExactNewestTokens) {
  // With residual >= all tokens, an INT4 cache attends exactly like the fp cache.
  QuantizationConfig q;
  q.residual_tokens = 64;
  at::manual_seed(15);
  auto full = make("full_cache"), res = make("full+int4", {}, q), plain = make("full+int4");
  double err_plain = 0;
  for (int64_t t : {20, 1, 1, 1, 1, 1}) {
    for (int l = 0; l < 2; ++l) {
      auto k = rnd(t), v = rnd(t), qq = rnd(t);
      for (auto* c : {full.get(), res.get(), plain.get()}) c->append(l, k, v);
      auto a = full->attend(l, qq), b = res->attend(l, qq), d = plain->attend(l, qq);
      expect_close(b, a.to(at::kDouble), 1e-5, "residual");
      err_plain = std::max(err_plain, (d - a).abs().max().item<double>());
    }
  }
  EXPECT_GT(err_plain, 1e-3);  // without the residual window INT4 is visibly lossy
  auto s = res->stats();
  EXPECT_EQ(s.residual_bytes, 2LL * 3 * kBatch * 25 * 32 * 4 * 2);
}

TEST(CacheLayouts, RotationIsExactForFpAndHelpsInt4WithOutliers) {
  at::manual_seed(16);
  QuantizationConfig rot;
  rot.rotate = true;
  auto full = make("full_cache"), r = make("full+int4/per_token_head", {}, rot),
       p = make("full+int4/per_token_head");
  double er = 0, ep = 0;
  for (int64_t t : {30, 1, 1, 1}) {
    for (int l = 0; l < 2; ++l) {
      auto k = rnd(t), v = rnd(t), q = rnd(t);
      k.select(3, 3).mul_(20);  // outlier channel: rotation spreads it
      v.select(3, 7).mul_(20);
      for (auto* c : {full.get(), r.get(), p.get()}) c->append(l, k, v);
      auto a = full->attend(l, q);
      er = std::max(er, (r->attend(l, q) - a).abs().max().item<double>());
      ep = std::max(ep, (p->attend(l, q) - a).abs().max().item<double>());
    }
  }
  EXPECT_LT(er, ep) << "rotated " << er << " plain " << ep;
  EXPECT_EQ(r->name(), "full+int4/per_token_head+rotate");
}

}  // namespace
}  // namespace eli
