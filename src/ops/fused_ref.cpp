// CPU specification of the fused model stages of eli/ops.h (linear + GELU, bias + residual +
// LayerNorm, embedding + LayerNorm, row argmax): the unfused ATen sequences they stand for, which
// the CUDA kernels are tested against (tests/gpu/) and the CPU path runs as they are.

#include <ATen/ATen.h>

#include <tuple>
#include <utility>
#include <vector>

#include "ops/ref.h"

namespace eli::ops {

at::Tensor ref::linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias,
                       bool gelu) {
  at::Tensor y = at::linear(x, w, bias);
  return gelu ? at::gelu(y, "tanh") : y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ref::split_heads(const at::Tensor& qkv,
                                                                int64_t heads) {
  const int64_t b = qkv.size(0), t = qkv.size(1), e = qkv.size(2) / 3;
  auto part = [&](int64_t i) {
    return qkv.narrow(2, i * e, e).view({b, t, heads, e / heads}).transpose(1, 2).contiguous();
  };
  return {part(0), part(1), part(2)};
}

std::pair<at::Tensor, at::Tensor> ref::merge_attention(const at::Tensor& o1, const at::Tensor& lse1,
                                                       const at::Tensor& o2,
                                                       const at::Tensor& lse2) {
  const at::Tensor a = lse1.to(at::kFloat), b = lse2.to(at::kFloat);
  at::Tensor m = at::maximum(a, b);
  m = at::where(at::isinf(m), at::zeros_like(m), m);  // both empty: weights 0, not NaN
  const at::Tensor w1 = at::exp(a - m), w2 = at::exp(b - m), sum = w1 + w2;
  std::vector<int64_t> wshape = {lse1.size(0), lse1.size(1)};
  for (int64_t i = 2; i < o1.dim(); ++i) wshape.push_back(1);
  const at::Tensor safe = at::where(sum > 0, sum, at::ones_like(sum));
  const at::Tensor o =
      (o1.to(at::kFloat) * (w1 / safe).view(wshape) + o2.to(at::kFloat) * (w2 / safe).view(wshape))
          .to(o1.scalar_type());
  return {o, m + at::log(sum)};
}

at::Tensor ref::bias_residual_layernorm(at::Tensor& x, const at::Tensor& y, const at::Tensor& bias,
                                        const at::Tensor& ln_w, const at::Tensor& ln_b,
                                        double eps) {
  x.add_(y + bias);
  return at::layer_norm(x, {x.size(-1)}, ln_w, ln_b, eps);
}

std::pair<at::Tensor, at::Tensor> ref::embed_layernorm(const at::Tensor& wte, const at::Tensor& wpe,
                                                       const at::Tensor& ids,
                                                       const at::Tensor& pos0,
                                                       const at::Tensor& ln_w,
                                                       const at::Tensor& ln_b, double eps) {
  const at::Tensor pos = (pos0.reshape({-1, 1}) + at::arange(ids.size(1), pos0.options()))
                             .clamp_max(wpe.size(0) - 1);  // [1 or B, T]
  at::Tensor x = at::embedding(wte, ids) + at::embedding(wpe, pos);
  at::Tensor a = at::layer_norm(x, {x.size(-1)}, ln_w, ln_b, eps);
  return {x, a};
}

at::Tensor ref::argmax_rows(const at::Tensor& x) { return x.argmax(-1); }

}  // namespace eli::ops
