#include "eli/cache/attend.h"

#include <cmath>
#include <limits>
#include <tuple>

#include "eli/error.h"

namespace eli::cache {

at::Tensor attend_history(const at::Tensor& q, const at::Tensor& k_hist, const at::Tensor& v_hist,
                          const std::vector<int64_t>& hist_pos, const std::vector<float>& hist_bias,
                          const at::Tensor& k_new, const at::Tensor& v_new,
                          const AttendMask& mask) {
  const int64_t t = q.size(2);
  const int64_t s = static_cast<int64_t>(hist_pos.size());
  const int64_t d = q.size(3);
  const float neg_inf = -std::numeric_limits<float>::infinity();

  // Additive bias [T, S + T], built on the host: the mask is a function of positions only.
  std::vector<float> bias(static_cast<size_t>(t * (s + t)), 0.0f);
  bool any = false;
  for (int64_t i = 0; i < t; ++i) {
    const int64_t p = mask.q_pos0 + i;
    float* row = bias.data() + i * (s + t);
    for (int64_t j = 0; j < s; ++j) {
      const int64_t kp = hist_pos[static_cast<size_t>(j)];
      const bool visible = kp < 0 || mask.window <= 0 || kp < mask.sinks || p - kp < mask.window;
      row[j] = visible ? hist_bias[static_cast<size_t>(j)] : neg_inf;
      any = any || row[j] != 0.0f;
    }
    for (int64_t j = 0; j < t; ++j) {
      const int64_t kp = mask.q_pos0 + j;
      const bool visible = j <= i && (mask.window <= 0 || kp < mask.sinks || p - kp < mask.window);
      row[s + j] = visible ? 0.0f : neg_inf;
      any = any || !visible;
    }
  }

  auto kf = k_new.to(at::kFloat);
  auto vf = v_new.to(at::kFloat);
  if (s > 0) {
    kf = at::cat({k_hist, kf}, 2);
    vf = at::cat({v_hist, vf}, 2);
  }
  auto scores = at::matmul(q.to(at::kFloat), kf.transpose(-2, -1)) * (1.0 / std::sqrt(double(d)));
  if (any) {
    scores = scores + at::from_blob(bias.data(), {t, s + t}, at::kFloat).to(scores.device());
  }
  return at::matmul(at::softmax(scores, -1), vf);
}

}  // namespace eli::cache

namespace eli::cache {

at::Tensor attend_regions(const at::Tensor& q, const std::vector<DecodeRegion>& regions,
                          const at::Tensor& lens, const at::Tensor& k_new, const at::Tensor& v_new,
                          const ops::SlotMap* append) {
  ELI_CHECK(append == nullptr || !regions.empty(), "attend_regions: append needs a region");
  at::Tensor o, lse;
  for (size_t i = 0; i < regions.size(); ++i) {
    const DecodeRegion& r = regions[i];
    ops::DecodeAttentionArgs a;
    a.seq_lens = r.seq_lens.defined() ? r.seq_lens : lens.select(0, r.len);  // [B] rows
    a.block_table = r.block_table;
    a.bias = r.bias;
    a.max_len = r.len;
    at::Tensor oi, li;
    if (i + 1 == regions.size()) {
      oi = ops::decode_attention_with_new(q, r.k, r.v, a, k_new, v_new, &li, append);
    } else {
      oi = at::empty_like(q, at::MemoryFormat::Contiguous);
      ops::decode_attention_out(q, r.k, r.v, a, oi, &li);
    }
    if (!o.defined()) {
      o = oi;
      lse = li;
    } else {
      std::tie(o, lse) = ops::merge_attention(o, lse, oi, li);
    }
  }
  // No stored history: the softmax over the single new key is 1.
  return o.defined() ? o : v_new.to(q.scalar_type());
}

std::atomic<bool>& fused_decode_enabled() {
  static std::atomic<bool> on{true};
  return on;
}

std::atomic<bool>& fused_decode_on_cpu() {
  static std::atomic<bool> on{true};
  return on;
}

std::atomic<int64_t>& fused_decode_steps() {
  static std::atomic<int64_t> n{0};
  return n;
}

}  // namespace eli::cache
