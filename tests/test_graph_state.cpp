// The per-step state a CUDA-graph decode step reads (layouts' graph_* functions, computed on the
// host and uploaded before each replay) against the eager step's own view, on the CPU for every
// position: the lengths and masks of graph_regions equal decode_regions' (a region the eager
// step leaves out has length 0; a slot the eager step does not mask has bias 0), and
// graph_slot(p) is the slot of the last graph region where the eager write puts position p. The GPU
// replay itself is tested in tests/gpu/test_decode_graph.cpp.
#include <gtest/gtest.h>

#include "eli/cache/chunked.h"
#include "eli/cache/contiguous.h"
#include "eli/cache/paged.h"
#include "eli/cache/sliding_window.h"

namespace eli::cache {
namespace {

constexpr int64_t kBatch = 2, kCap = 150;
const ModelShape kShape{1, 2, 8, 1024};

class Rows : public Recoder {  // the chunk layout's re-encoding of summaries: identity
 public:
  Parts encode_rows(int, bool, const at::Tensor& x) override { return {x.to(at::kFloat)}; }
  at::Tensor decode_rows(int, bool, const Parts& p) override { return p[0].to(at::kFloat); }
};

LayoutArgs args(CacheConfig cfg) {
  LayoutArgs a;
  a.shape = kShape;
  a.batch = kBatch;
  a.capacity = kCap;
  a.cfg = cfg;
  a.k_parts = a.v_parts = {PartSpec{kShape.head_dim, at::kFloat, false}};
  return a;
}

// Position p's row: every element p (so a slot tells which position it holds).
Parts row_of(int64_t p) {
  return {at::full({kBatch, kShape.n_head, 1, kShape.head_dim}, double(p))};
}

// Bias of slot j as a decode region applies it (0 without a bias tensor).
float bias_at(const SlotRegion& r, int64_t j) {
  return r.bias.defined() ? r.bias[0][j].item<float>() : 0.0f;
}

template <class Layout>
void check_layout(Layout& layout, const std::string& what) {
  Rows rc;
  for (int64_t n = 0; n < kCap; ++n) {
    // The state for the step whose new token sits at n (history n, no residual ring here).
    const bool ok = layout.graph_step_ok(n);
    if (ok) {
      layout.graph_prepare(std::vector<int64_t>(kBatch, n), std::vector<int64_t>(kBatch, n));
      const auto eager = layout.decode_regions(0, n);
      const auto graph = layout.graph_regions(0);
      const auto lens = layout.graph_lens(n);
      ASSERT_EQ(lens.size(), graph.size()) << what << " n " << n;
      // Match eager regions to graph regions by storage; every unmatched graph region is empty.
      size_t e = 0;
      for (size_t g = 0; g < graph.size(); ++g) {
        const bool same = e < eager.size() && eager[e].k[0].is_same(graph[g].k[0]);
        if (!same) {
          EXPECT_EQ(lens[g], 0) << what << " n " << n << ": graph region " << g
                                << " is absent from the eager step but not empty";
          continue;
        }
        ASSERT_EQ(lens[g], eager[e].len) << what << " n " << n << " region " << g;
        EXPECT_GE(graph[g].len, lens[g]) << what << ": grid bound below the length";
        for (int64_t j = 0; j < lens[g]; ++j) {
          ASSERT_EQ(bias_at(graph[g], j), bias_at(eager[e], j))
              << what << " n " << n << " region " << g << " slot " << j;
        }
        ++e;
      }
      EXPECT_EQ(e, eager.size()) << what << " n " << n << ": an eager region has no graph twin";
    }
    // The eager write of position n; the graph step would write it at graph_slot(n).
    const Parts r = row_of(n);
    layout.write(WriteArgs{0, n, r, r, r[0], r[0], &rc});
    if (ok) {
      const SlotRegion t = layout.graph_regions(0).back();
      const int64_t slot = layout.graph_slot(n);
      at::Tensor held;
      if (t.block_table.defined()) {  // paged: slot n of the sequence, through its table
        const int64_t bs = t.k[0].size(2);
        const int64_t blk = t.block_table[0][n / bs].template item<int32_t>();
        held = t.k[0][blk][0][slot % bs];
      } else {
        held = t.k[0][0][0][slot];
      }
      ASSERT_EQ(held[0].template item<float>(), float(n))
          << what << ": position " << n << " is not in graph_slot " << slot;
    }
  }
}

TEST(GraphState, Contiguous) {
  ContiguousLayout l(args({}));
  check_layout(l, "full");
}

TEST(GraphState, SlidingWindowWithAndWithoutSinks) {
  for (int64_t sinks : {0, 3}) {
    CacheConfig c;
    c.window_size = 17;
    c.sink_tokens = sinks;
    SlidingWindowLayout l(args(c));
    check_layout(l, "sliding sinks " + std::to_string(sinks));
  }
}

TEST(GraphState, Paged) {
  CacheConfig c;
  c.block_size = 7;
  PagedLayout l(args(c));
  check_layout(l, "paged");
}

TEST(GraphState, Chunked) {
  for (int64_t keep : {0, 10}) {
    for (bool log_bias : {false, true}) {
      CacheConfig c;
      c.chunk_size = 8;
      c.keep_last = keep;
      c.summary_log_bias = log_bias;
      ChunkedLayout l(args(c));
      check_layout(l, "chunked keep " + std::to_string(keep));
    }
  }
}

}  // namespace
}  // namespace eli::cache
