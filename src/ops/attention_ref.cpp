// CPU reference of fused decode attention: decode each stored row with the reference codec,
// then plain fp64 softmax attention per (sequence, head).

#include <cmath>
#include <limits>
#include <vector>

#include "eli/error.h"
#include "ops/ref.h"
#include "ops/ref_rows.h"
#include "ops/storage.h"

namespace eli::ops {

void ref::decode_attention_out(const at::Tensor& q, const KvStore& k, const KvStore& v,
                               const DecodeAttentionArgs& args, at::Tensor& out, at::Tensor* lse) {
  for (const at::Tensor* t : {&q, &k.data, &v.data, &args.seq_lens, &args.block_table, &args.bias,
                              static_cast<const at::Tensor*>(&out)}) {
    ELI_CHECK(!t->defined() || t->device().is_cpu(),
              "ops::ref::decode_attention_out: every tensor must be on the CPU, got {}",
              t->device().str());
  }
  detail::StoreInfo ki, vi;
  const int64_t max_len = detail::check_attention(q, k, v, args, out, &ki, &vi);
  const int64_t B = q.size(0), H = q.size(1), D = q.size(-1);
  const double scale = args.sm_scale > 0 ? args.sm_scale : 1.0 / std::sqrt(static_cast<double>(D));
  const at::Tensor qd = q.reshape({B, H, D}).to(at::kDouble).contiguous();
  const int32_t* lens = args.seq_lens.data_ptr<int32_t>();
  const int32_t* table = ki.paged ? args.block_table.data_ptr<int32_t>() : nullptr;
  const int64_t max_blocks = ki.paged ? args.block_table.size(1) : 0;
  const int64_t pool_rows = k.data.size(0) * H * ki.slots;
  at::Tensor res = at::zeros({B, H, D}, at::kDouble);
  at::Tensor lse_t = at::full({B, H}, -std::numeric_limits<float>::infinity(), at::kFloat);
  const float* bias = args.bias.defined() ? args.bias.data_ptr<float>() : nullptr;
  const int64_t bias_stride = args.bias.defined() ? args.bias.stride(0) : 0;
  float* lse_p = lse_t.data_ptr<float>();
  std::vector<float> kr(static_cast<size_t>(D)), vr(static_cast<size_t>(D));
  std::vector<double> logit;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = lens[b];
    ELI_CHECK(len >= 0 && len <= max_len, "decode_attention: seq_lens[{}] = {} outside [0, {}]", b,
              len, max_len);
    for (int64_t h = 0; h < H; ++h) {
      auto row_of = [&](int64_t t) {
        if (table == nullptr) return (b * H + h) * ki.slots + t;
        const int64_t r =
            (static_cast<int64_t>(table[b * max_blocks + t / ki.slots]) * H + h) * ki.slots +
            t % ki.slots;
        ELI_CHECK(r >= 0 && r < pool_rows, "decode_attention: block table entry outside the pool");
        return r;
      };
      const double* qv = qd.data_ptr<double>() + (b * H + h) * D;
      logit.assign(static_cast<size_t>(len), 0.0);
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t t = 0; t < len; ++t) {
        detail::ref_decode_row(k, row_of(t), D, kr.data());
        double dot = 0;
        for (int64_t d = 0; d < D; ++d) dot += qv[d] * kr[static_cast<size_t>(d)];
        double l = scale * dot;
        if (bias != nullptr) l += bias[b * bias_stride + t];
        logit[static_cast<size_t>(t)] = l;
        mx = std::max(mx, l);
      }
      if (len == 0) continue;
      double sum = 0;
      double* o = res.data_ptr<double>() + (b * H + h) * D;
      for (int64_t t = 0; t < len; ++t) {
        const double p = std::exp(logit[static_cast<size_t>(t)] - mx);
        sum += p;
        detail::ref_decode_row(v, row_of(t), D, vr.data());
        for (int64_t d = 0; d < D; ++d) o[d] += p * vr[static_cast<size_t>(d)];
      }
      for (int64_t d = 0; d < D; ++d) o[d] /= sum;
      lse_p[b * H + h] = static_cast<float>(mx + std::log(sum));
    }
  }
  out.copy_(res.view(out.sizes()));
  if (lse != nullptr) {
    if (lse->defined() && lse->sizes() == lse_t.sizes()) {
      lse->copy_(lse_t);
    } else {
      *lse = lse_t;
    }
  }
}

}  // namespace eli::ops
