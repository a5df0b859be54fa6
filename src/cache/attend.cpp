#include "eli/cache/attend.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

#include "eli/error.h"

namespace eli::cache {

at::Tensor attend_history(const at::Tensor& q, const at::Tensor& k_hist, const at::Tensor& v_hist,
                          const std::vector<int64_t>& hist_pos, const std::vector<float>& hist_bias,
                          const at::Tensor& k_new, const at::Tensor& v_new, const AttendMask& mask,
                          int64_t score_bytes_per_seq) {
  const int64_t b = q.size(0), h = q.size(1), t = q.size(2), d = q.size(3);
  const int64_t s = static_cast<int64_t>(hist_pos.size());
  ELI_CHECK(score_bytes_per_seq >= 0,
            "attend_history: score_bytes_per_seq must not be negative (got {})",
            score_bytes_per_seq);
  if (score_bytes_per_seq == 0)
    score_bytes_per_seq = q.is_cpu() ? kAttendScoreBytesCpu : kAttendScoreBytesGpu;
  if (t == 0) return at::empty({b, h, 0, d}, q.options().dtype(at::kFloat));
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const double scale = 1.0 / std::sqrt(double(d));

  // Whether any history slot carries a bias or may be masked; if not, the only mask is the
  // causal one among the new keys, built on q's device.
  bool hist_plain = mask.window <= 0;
  for (int64_t j = 0; hist_plain && j < s; ++j)
    hist_plain = hist_bias[static_cast<size_t>(j)] == 0.0f;

  auto kf = k_new.to(at::kFloat);
  auto vf = v_new.to(at::kFloat);
  if (s > 0) {
    kf = at::cat({k_hist, kf}, 2);
    vf = at::cat({v_hist, vf}, 2);
  }
  const at::Tensor qf = q.to(at::kFloat);
  const int64_t row_bytes = std::max<int64_t>(1, h * (s + t) * int64_t(sizeof(float)));
  const int64_t rows = std::clamp<int64_t>(score_bytes_per_seq / row_bytes, 1, t);
  at::Tensor out;
  if (rows < t) out = at::empty({b, h, t, d}, qf.options());
  for (int64_t i0 = 0; i0 < t; i0 += rows) {
    const int64_t n = std::min(rows, t - i0), keys = s + i0 + n;
    at::Tensor scores =
        at::matmul(qf.narrow(2, i0, n), kf.narrow(2, 0, keys).transpose(-2, -1)) * scale;
    if (hist_plain) {
      // Query i0 + r sees new key j (column s + j) iff j <= i0 + r.
      if (n > 1) {
        const auto opts = at::TensorOptions().dtype(at::kLong).device(q.device());
        const at::Tensor col = at::arange(keys, opts).unsqueeze(0) - s;
        const at::Tensor row = at::arange(i0, i0 + n, opts).unsqueeze(1);
        scores.masked_fill_(col > row, neg_inf);
      }
    } else {
      // Additive bias [n, keys], built on the host: the mask is a function of positions only.
      // A key at position kp is in the window of the query at p (sinks always are).
      auto in_window = [&](int64_t p, int64_t kp) {
        return mask.window <= 0 || kp < mask.sinks || p - kp < mask.window;
      };
      std::vector<float> bias(static_cast<size_t>(n * keys), 0.0f);
      for (int64_t r = 0; r < n; ++r) {
        const int64_t i = i0 + r, p = mask.q_pos0 + i;
        float* out_row = bias.data() + r * keys;
        for (int64_t j = 0; j < s; ++j) {
          const int64_t kp = hist_pos[static_cast<size_t>(j)];  // -1: a summary, always seen
          out_row[j] = kp < 0 || in_window(p, kp) ? hist_bias[static_cast<size_t>(j)] : neg_inf;
        }
        for (int64_t j = 0; j < i0 + n; ++j)
          out_row[s + j] = j <= i && in_window(p, mask.q_pos0 + j) ? 0.0f : neg_inf;
      }
      scores = scores + at::from_blob(bias.data(), {n, keys}, at::kFloat).to(scores.device());
    }
    at::Tensor o = at::matmul(at::softmax(scores, -1), vf.narrow(2, 0, keys));
    if (rows >= t) return o;
    out.narrow(2, i0, n).copy_(o);
  }
  return out;
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
