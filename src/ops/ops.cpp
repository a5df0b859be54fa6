// Op front-ends: route CUDA tensors to the kernels (ops_cuda.cpp) and CPU tensors to the CPU
// implementation: the CPU kernel for decode attention (attention_cpu.cpp); for the others the
// CPU computation is their specification itself (quant_ref.cpp, fused_ref.cpp). Allocation
// helpers and the device-independent merge.

#include "eli/ops.h"

#include <cmath>
#include <vector>

#include "eli/error.h"
#include "ops/attention_cpu.h"
#include "ops/ref.h"
#include "ops/storage.h"
#ifdef ELI_WITH_CUDA
#include "ops/ops_cuda.h"
#endif

namespace eli::ops {

namespace {
// (unused in a CUDA build, where every op has its CUDA implementation)
[[noreturn, maybe_unused]] void no_cuda(const char* op) {
  ELI_FAIL("{}: CUDA tensors given but eli was built without CUDA ops (ELI_WITH_CUDA off)", op);
}
}  // namespace

bool has_cuda_ops() {
#ifdef ELI_WITH_CUDA
  return true;
#else
  return false;
#endif
}

void quantize_kv_out(const at::Tensor& x, const KvStore& dst, const SlotMap& slots) {
  if (x.defined() && x.is_cuda()) {
#ifdef ELI_WITH_CUDA
    return cuda_impl::quantize_kv_out(x, dst, slots);
#else
    no_cuda("quantize_kv_out");
#endif
  }
  ref::quantize_kv_out(x, dst, slots);
}

void quantize_kv_pair_out(const at::Tensor& xk, const KvStore& dk, const at::Tensor& xv,
                          const KvStore& dv, const SlotMap& slots) {
  if (xk.defined() && xk.is_cuda()) {
#ifdef ELI_WITH_CUDA
    return cuda_impl::quantize_kv_pair_out(xk, dk, xv, dv, slots);
#else
    no_cuda("quantize_kv_pair_out");
#endif
  }
  quantize_kv_out(xk, dk, slots);
  quantize_kv_out(xv, dv, slots);
}

KvStore quantize_kv(const at::Tensor& x, const quant::QuantSpec& spec, float tensor_scale) {
  ELI_CHECK(x.defined() && x.dim() == 4, "quantize: x must be [B, H, T, D]");
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), D = x.size(3);
  spec.check(D);
  KvStore s;
  s.bits = spec.bits;
  s.spec = spec;
  s.tensor_scale = tensor_scale;
  const auto opts = x.options();
  const at::ScalarType code_t = (spec.bits == 8 && !spec.zero_point) ? at::kChar : at::kByte;
  s.data = at::empty({B, H, T, spec.code_bytes(D)}, opts.dtype(code_t));
  const int64_t g = spec.groups(D);
  if (g > 0) s.scales = at::empty({B, H, T, g}, opts.dtype(at::kHalf));
  if (spec.zero_point) s.minima = at::empty({B, H, T, g}, opts.dtype(at::kHalf));
  quantize_kv_out(x, s, SlotMap{});
  return s;
}

void dequantize_kv_out(const KvStore& src, const SlotMap& slots, at::Tensor& out) {
  if (out.defined() && out.is_cuda()) {
#ifdef ELI_WITH_CUDA
    return cuda_impl::dequantize_kv_out(src, slots, out);
#else
    no_cuda("dequantize_kv_out");
#endif
  }
  ref::dequantize_kv_out(src, slots, out);
}

at::Tensor dequantize_kv(const KvStore& src, const SlotMap& slots, int64_t T,
                         at::ScalarType dtype) {
  ELI_CHECK(src.data.defined() && src.data.dim() == 4, "dequantize: storage data must be 4-d");
  ELI_CHECK(T >= 0, "dequantize: T = {} must be >= 0", T);
  const int64_t B = slots.block_table.defined() ? slots.block_table.size(0) : src.data.size(0);
  at::Tensor out =
      at::empty({B, src.data.size(1), T, src.head_dim()}, src.data.options().dtype(dtype));
  dequantize_kv_out(src, slots, out);
  return out;
}

void decode_attention_out(const at::Tensor& q, const KvStore& k, const KvStore& v,
                          const DecodeAttentionArgs& args, at::Tensor& out, at::Tensor* lse) {
  if (q.defined() && q.is_cuda()) {
#ifdef ELI_WITH_CUDA
    return cuda_impl::decode_attention_out(q, k, v, args, out, lse);
#else
    no_cuda("decode_attention");
#endif
  }
  detail::cpu_decode_attention_out(q, k, v, args, out, lse);
}

at::Tensor decode_attention(const at::Tensor& q, const KvStore& k, const KvStore& v,
                            const DecodeAttentionArgs& args) {
  ELI_CHECK(q.defined(), "decode_attention: q undefined");
  at::Tensor out = at::empty_like(q, at::MemoryFormat::Contiguous);
  decode_attention_out(q, k, v, args, out);
  return out;
}

at::Tensor decode_attention_with_new(const at::Tensor& q, const KvStore& k, const KvStore& v,
                                     const DecodeAttentionArgs& args, const at::Tensor& k_new,
                                     const at::Tensor& v_new, at::Tensor* lse_out,
                                     const SlotMap* append) {
  ELI_CHECK(q.defined() && q.dim() == 4 && q.size(2) == 1,
            "decode_attention_with_new: q must be [B, H, 1, D]");
  ELI_CHECK(k_new.defined() && v_new.defined() && k_new.sizes() == q.sizes() &&
                v_new.sizes() == q.sizes(),
            "decode_attention_with_new: k_new and v_new must be [B, H, 1, D] like q");
  if (q.is_cuda()) {
#ifdef ELI_WITH_CUDA
    // The kernel's reduction takes the new key as one more slot: one launch pair per call.
    at::Tensor out = at::empty_like(q, at::MemoryFormat::Contiguous);
    at::Tensor lse;
    cuda_impl::decode_attention_out(q, k, v, args, out, lse_out != nullptr ? &lse : nullptr, &k_new,
                                    &v_new, append);
    if (lse_out != nullptr) *lse_out = lse;
    return out;
#else
    no_cuda("decode_attention_with_new");
#endif
  }
  ELI_CHECK(append == nullptr,
            "decode_attention_with_new: the append in the same launch is CUDA-only");
  at::Tensor hist = at::empty_like(q, at::MemoryFormat::Contiguous), lse;
  decode_attention_out(q, k, v, args, hist, &lse);
  const double scale =
      args.sm_scale > 0 ? args.sm_scale : 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  // merge_attention specialised to one new key (few small ops): the history's weight in the
  // joint softmax is sigmoid(lse - logit_new), 0 for an empty history (lse = -inf).
  const at::Tensor vf = v_new.to(at::kFloat);
  const at::Tensor logit = (q.to(at::kFloat) * k_new.to(at::kFloat)).sum({2, 3}) * scale;  // [B, H]
  const at::Tensor d = lse - logit;
  const at::Tensor w = at::sigmoid(d).view({q.size(0), q.size(1), 1, 1});
  if (lse_out != nullptr) *lse_out = logit + at::softplus(d);  // log(e^lse + e^logit)
  return at::addcmul(vf, w, hist.to(at::kFloat) - vf).to(q.scalar_type());
}

std::pair<at::Tensor, at::Tensor> merge_attention(const at::Tensor& o1, const at::Tensor& lse1,
                                                  const at::Tensor& o2, const at::Tensor& lse2) {
  ELI_CHECK(o1.defined() && o2.defined() && o1.sizes() == o2.sizes() && o1.dim() >= 3,
            "merge_attention: outputs must have equal shapes [B, H, (1,) D]");
  ELI_CHECK(lse1.defined() && lse2.defined() && lse1.dim() == 2 && lse1.sizes() == lse2.sizes() &&
                lse1.size(0) == o1.size(0) && lse1.size(1) == o1.size(1),
            "merge_attention: lse must be [B, H] matching the outputs");
  if (o1.is_cuda()) {
#ifdef ELI_WITH_CUDA
    if (cuda_impl::merge_attention_applies(o1, lse1, o2, lse2))
      return cuda_impl::merge_attention(o1, lse1, o2, lse2);
#else
    no_cuda("merge_attention");
#endif
  }
  return ref::merge_attention(o1, lse1, o2, lse2);
}

at::Tensor bias_residual_layernorm(at::Tensor& x, const at::Tensor& y, const at::Tensor& bias,
                                   const at::Tensor& ln_w, const at::Tensor& ln_b, double eps) {
  if (x.defined() && x.is_cuda()) {
#ifdef ELI_WITH_CUDA
    return cuda_impl::bias_residual_layernorm(x, y, bias, ln_w, ln_b, eps);
#else
    no_cuda("bias_residual_layernorm");
#endif
  }
  return ref::bias_residual_layernorm(x, y, bias, ln_w, ln_b, eps);
}

std::pair<at::Tensor, at::Tensor> embed_layernorm(const at::Tensor& wte, const at::Tensor& wpe,
                                                  const at::Tensor& ids, const at::Tensor& pos0,
                                                  const at::Tensor& ln_w, const at::Tensor& ln_b,
                                                  double eps) {
  if (wte.defined() && wte.is_cuda()) {
#ifdef ELI_WITH_CUDA
    return cuda_impl::embed_layernorm(wte, wpe, ids, pos0, ln_w, ln_b, eps);
#else
    no_cuda("embed_layernorm");
#endif
  }
  return ref::embed_layernorm(wte, wpe, ids, pos0, ln_w, ln_b, eps);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> split_heads(const at::Tensor& qkv, int64_t heads) {
  ELI_CHECK(qkv.defined() && qkv.dim() == 3 && heads >= 1 && qkv.size(2) % (3 * heads) == 0,
            "split_heads: qkv must be [B, T, 3 * heads * head_dim] with heads >= 1, got {}-D "
            "with last dim {} and heads {}",
            qkv.defined() ? qkv.dim() : 0, qkv.defined() && qkv.dim() > 0 ? qkv.size(-1) : 0,
            heads);
  if (qkv.is_cuda()) {
#ifdef ELI_WITH_CUDA
    if (cuda_impl::split_heads_applies(qkv, heads)) return cuda_impl::split_heads(qkv, heads);
#else
    no_cuda("split_heads");
#endif
  }
  return ref::split_heads(qkv, heads);
}

at::Tensor argmax_rows(const at::Tensor& x) {
  if (x.defined() && x.is_cuda()) {
#ifdef ELI_WITH_CUDA
    return cuda_impl::argmax_rows(x);
#else
    no_cuda("argmax_rows");
#endif
  }
  return ref::argmax_rows(x);
}

namespace {
void check_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) {
  ELI_CHECK(x.defined() && w.defined() && x.dim() >= 1 && w.dim() == 2 && x.size(-1) == w.size(1) &&
                x.scalar_type() == w.scalar_type(),
            "linear: x [..., K] and w [N, K] of one dtype, got {}-D x (K = {}) and {}-D w (K = {})",
            x.defined() ? x.dim() : 0, x.defined() && x.dim() > 0 ? x.size(-1) : 0,
            w.defined() ? w.dim() : 0, w.defined() && w.dim() == 2 ? w.size(1) : 0);
  ELI_CHECK(!bias.defined() || (bias.numel() == w.size(0) && bias.scalar_type() == w.scalar_type()),
            "linear: bias must have N = {} elements of w's dtype, got {}", w.size(0),
            bias.defined() ? bias.numel() : 0);
}
}  // namespace

at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, bool gelu) {
  check_linear(x, w, bias);
  if (x.is_cuda()) {
#ifdef ELI_WITH_CUDA
    if (cuda_impl::gemv_applies(x, w)) return cuda_impl::gemv(x, w, bias, gelu);
    if (gelu && bias.defined() && x.dim() >= 2 && x.numel() / x.size(-1) > 1) {
      // cuBLASLt's bias + GELU (tanh) epilogue: the activation inside the product's launch.
      const at::Tensor x2 = x.reshape({-1, x.size(-1)});
      std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
      shape.back() = w.size(0);
      return at::_addmm_activation(bias, x2, w.t(), 1, 1, /*use_gelu=*/true).view(shape);
    }
#else
    no_cuda("linear");
#endif
  }
  return ref::linear(x, w, bias, gelu);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> qkv_heads(const at::Tensor& x, const at::Tensor& w,
                                                         const at::Tensor& bias, int64_t heads) {
  ELI_CHECK(x.defined() && x.dim() == 3 && w.defined() && w.dim() == 2 && heads >= 1 &&
                w.size(0) % (3 * heads) == 0,
            "qkv_heads: x must be [B, T, K] and w [3 * heads * head_dim, K] with heads >= 1, got "
            "{}-D x, {}-D w of {} rows, heads = {}",
            x.defined() ? x.dim() : 0, w.defined() ? w.dim() : 0,
            w.defined() && w.dim() == 2 ? w.size(0) : 0, heads);
  check_linear(x, w, bias);
#ifdef ELI_WITH_CUDA
  if (x.is_cuda() && x.size(1) == 1 && cuda_impl::gemv_applies(x, w)) {
    // One token a row: the product's columns cut into q, k and v, [3, B, H * D], whose parts
    // are [B, H, 1, D] as they are.
    const int64_t b = x.size(0), d = w.size(0) / (3 * heads);
    const at::Tensor y = cuda_impl::gemv(x, w, bias, /*gelu=*/false, /*parts=*/3);
    auto part = [&](int64_t i) { return y.select(0, i).view({b, heads, 1, d}); };
    return {part(0), part(1), part(2)};
  }
#endif
  return split_heads(linear(x, w, bias), heads);
}

}  // namespace eli::ops
