#pragma once
// The ATen attention every cache uses when no fused kernel applies: queries of the latest
// append against (stored history, as decoded) + (the latest append, causally), with the
// layout's mask and per-slot logit bias. Scale 1/sqrt(D), softmax in fp32.

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace eli::cache {

struct AttendMask {
  int64_t q_pos0 = 0;  // absolute position of query 0 (= positions stored before the append)
  int64_t window = 0;  // > 0: key j visible to query p only if p - j < window ...
  int64_t sinks = 0;   // ... or j < sinks
};

/// q, k_new, v_new: [B, H, T, D] (any float dtype); k_hist, v_hist: [B, H, S, D] fp32 (S may be
/// 0); hist_pos[S]: absolute position per history slot (-1 = summary, never masked);
/// hist_bias[S]: additive logit bias. Returns fp32 [B, H, T, D].
at::Tensor attend_history(const at::Tensor& q, const at::Tensor& k_hist, const at::Tensor& v_hist,
                          const std::vector<int64_t>& hist_pos, const std::vector<float>& hist_bias,
                          const at::Tensor& k_new, const at::Tensor& v_new, const AttendMask& mask);

}  // namespace eli::cache
