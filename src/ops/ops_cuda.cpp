// Torch glue of the CUDA ops: validation, allocation, current stream, launcher call. The only
// file that sees both at::Tensor and the launchers of cuda/.

#include "ops/ops_cuda.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <climits>
#include <cmath>

#include "eli/error.h"
#include "eli_kernels.cuh"
#include "ops/storage.h"

namespace eli::ops::cuda_impl {

namespace {

namespace ec = ::eli::cuda;

void check_launch(cudaError_t e, const char* op) {
  if (e == cudaSuccess) return;
  ELI_FAIL("{}: CUDA launch failed: {}{}{}", op, cudaGetErrorString(e),
           e == cudaErrorInvalidValue ? " - " : "",
           e == cudaErrorInvalidValue ? ec::last_error_message() : "");
}

ec::DType dtype_of(at::ScalarType t, const char* op) {
  if (t == at::kHalf) return ec::DType::kHalf;
  if (t == at::kFloat) return ec::DType::kFloat;
  ELI_FAIL("{}: CUDA ops take fp16 or fp32 tensors, got {}", op, c10::toString(t));
}

void check_head_dim(int64_t D, const char* op) {
  ELI_CHECK(D == 64 || D == 128, "{}: the CUDA kernels support head_dim 64 and 128, got {}", op, D);
}

void check_int(int64_t v, const char* what, const char* op) {
  ELI_CHECK(v >= 0 && v <= INT_MAX, "{}: {} = {} exceeds the kernels' int range", op, what, v);
}

void check_device(const at::Tensor& t, const at::Tensor& ref, const char* what, const char* op) {
  ELI_CHECK(!t.defined() || t.device() == ref.device(), "{}: {} on {} but expected {}", op, what,
            t.device().str(), ref.device().str());
}

ec::Format format_of(const KvStore& s) {
  return s.bits == 16 ? ec::Format::kFp : (s.bits == 8 ? ec::Format::kInt8 : ec::Format::kInt4);
}

int group_of(const KvStore& s, int64_t D) {
  return s.spec.granularity == Granularity::kGroup ? s.spec.group_size : static_cast<int>(D);
}

ec::QuantView view_of(const KvStore& s, int64_t D) {
  ec::QuantView v;
  v.format = format_of(s);
  v.data = s.data.data_ptr();
  if (s.bits != 16) {
    if (s.spec.granularity == Granularity::kPerTensor) {
      v.tensor_scale = s.tensor_scale;
    } else {
      v.scales = s.scales.data_ptr();
      if (s.spec.zero_point) v.minima = s.minima.data_ptr();
      v.group = group_of(s, D);
    }
  }
  return v;
}

ec::RowMap map_of(const detail::StoreInfo& info, const at::Tensor& block_table, int64_t H) {
  ec::RowMap m;
  m.heads = static_cast<int>(H);
  m.block_size = static_cast<int>(info.slots);
  if (info.paged) {
    m.block_table = block_table.data_ptr<int32_t>();
    m.table_stride = block_table.size(1);
  }
  return m;
}

}  // namespace

namespace {
/// A checked quantize_kv_out, ready to launch (launch = false: done already, through ATen).
struct QuantizeLaunch {
  bool launch = false;
  at::Tensor xc;  // x as fp16/fp32, contiguous
  ec::QuantTarget target;
  ec::RowMap map;
  const int32_t* t0_dev = nullptr;
  int64_t B = 0, H = 0, T = 0, D = 0;
};

/// Where a quantize (or the attention's append) writes into dst: codes, and the scales and
/// minima of its kind.
ec::QuantTarget target_of(const KvStore& dst, int64_t D) {
  const ec::QuantView v = view_of(dst, D);  // the same fields, read-only
  ec::QuantTarget t;
  t.format = v.format;
  t.data = const_cast<void*>(v.data);
  t.scales = const_cast<void*>(v.scales);
  t.minima = const_cast<void*>(v.minima);
  t.tensor_scale = v.tensor_scale;
  t.group = v.group;
  t.eps = dst.spec.eps;
  return t;
}

QuantizeLaunch prepare_quantize(const at::Tensor& x, const KvStore& dst, const SlotMap& slots,
                                bool write_fp_now) {
  const char* op = "quantize_kv_out";
  ELI_CHECK(x.dim() == 4 && at::isFloatingType(x.scalar_type()),
            "{}: x must be a floating [B, H, T, D] tensor", op);
  QuantizeLaunch q;
  q.B = x.size(0), q.H = x.size(1), q.T = x.size(2), q.D = x.size(3);
  const int64_t B = q.B, H = q.H, T = q.T, D = q.D;
  const detail::StoreInfo info =
      detail::check_store(dst, B, H, D, slots.block_table, "quantize_kv_out destination");
  check_device(dst.data, x, "destination", op);
  ELI_CHECK(slots.t0 >= 0 && slots.t0 + T <= info.capacity,
            "{}: slots [{}, {}) outside capacity {}", op, slots.t0, slots.t0 + T, info.capacity);
  if (slots.t0_dev.defined()) {
    ELI_CHECK(slots.t0_dev.device() == x.device() && slots.t0_dev.scalar_type() == at::kInt &&
                  slots.t0_dev.dim() == 1 && slots.t0_dev.size(0) == B &&
                  slots.t0_dev.is_contiguous(),
              "{}: t0_dev must be contiguous int32 [{}] on {}", op, B, x.device().str());
    q.t0_dev = slots.t0_dev.data_ptr<int32_t>();
  }
  if (dst.bits == 16 && q.t0_dev == nullptr) {
    if (write_fp_now) {
      const c10::cuda::CUDAGuard guard(x.device());
      detail::write_fp_rows(x, dst, info, slots);
    }
    return q;
  }
  check_head_dim(D, op);
  check_int(B * H * T, "rows", op);
  check_int(info.slots, "slots", op);
  check_int(slots.t0 + T, "position", op);
  q.xc = (x.scalar_type() == at::kHalf || x.scalar_type() == at::kFloat)
             ? x.contiguous()
             : x.to(at::kFloat).contiguous();
  if (dst.bits == 16) {
    ELI_CHECK(q.xc.scalar_type() == dst.data.scalar_type(),
              "{}: storing {} rows into {} storage through t0_dev (dtypes must match)", op,
              c10::toString(q.xc.scalar_type()), c10::toString(dst.data.scalar_type()));
  }
  q.target = target_of(dst, D);
  q.map = map_of(info, slots.block_table, H);
  q.launch = true;
  return q;
}

/// Whether two prepared quantizes can share a launch: same shape, input dtype, device, slots
/// and kernel (format, scale storage, group).
bool pairable(const QuantizeLaunch& a, const QuantizeLaunch& b) {
  const ec::QuantTarget &s = a.target, &t = b.target;
  return a.launch && b.launch && a.B == b.B && a.H == b.H && a.T == b.T && a.D == b.D &&
         a.xc.scalar_type() == b.xc.scalar_type() && a.xc.device() == b.xc.device() &&
         a.t0_dev == b.t0_dev && s.format == t.format &&
         (s.tensor_scale > 0.f) == (t.tensor_scale > 0.f) &&
         (s.minima != nullptr) == (t.minima != nullptr) && s.group == t.group &&
         a.map.block_table == b.map.block_table && a.map.table_stride == b.map.table_stride &&
         a.map.block_size == b.map.block_size && a.map.heads == b.map.heads;
}

void run_quantize(const QuantizeLaunch& a, const QuantizeLaunch* b, int64_t t0) {
  const char* op = "quantize_kv_out";
  const c10::cuda::CUDAGuard guard(a.xc.device());
  check_launch(ec::launch_quantize2(
                   dtype_of(a.xc.scalar_type(), op), a.xc.data_ptr(),
                   b != nullptr ? b->xc.data_ptr() : nullptr, static_cast<int>(a.B),
                   static_cast<int>(a.H), static_cast<int>(a.T), static_cast<int>(a.D), a.target,
                   b != nullptr ? b->target : a.target, a.map, static_cast<int>(t0), a.t0_dev,
                   at::cuda::getCurrentCUDAStream().stream()),
               op);
}
}  // namespace

void quantize_kv_out(const at::Tensor& x, const KvStore& dst, const SlotMap& slots) {
  const QuantizeLaunch q = prepare_quantize(x, dst, slots, /*write_fp_now=*/true);
  if (q.launch) run_quantize(q, nullptr, slots.t0);
}

void quantize_kv_pair_out(const at::Tensor& xk, const KvStore& dk, const at::Tensor& xv,
                          const KvStore& dv, const SlotMap& slots) {
  // Both are checked before either is written.
  const QuantizeLaunch k = prepare_quantize(xk, dk, slots, /*write_fp_now=*/false);
  const QuantizeLaunch v = prepare_quantize(xv, dv, slots, /*write_fp_now=*/false);
  if (pairable(k, v)) return run_quantize(k, &v, slots.t0);
  cuda_impl::quantize_kv_out(xk, dk, slots);
  cuda_impl::quantize_kv_out(xv, dv, slots);
}

void dequantize_kv_out(const KvStore& src, const SlotMap& slots, at::Tensor& out) {
  const char* op = "dequantize_kv_out";
  ELI_CHECK(out.dim() == 4, "{}: out must be [B, H, T, D]", op);
  const int64_t B = out.size(0), H = out.size(1), T = out.size(2), D = out.size(3);
  const detail::StoreInfo info =
      detail::check_store(src, B, H, D, slots.block_table, "dequantize_kv_out source");
  check_device(src.data, out, "source", op);
  ELI_CHECK(slots.t0 >= 0 && slots.t0 + T <= info.capacity,
            "{}: slots [{}, {}) outside capacity {}", op, slots.t0, slots.t0 + T, info.capacity);
  const c10::cuda::CUDAGuard guard(out.device());
  if (src.bits == 16) return detail::read_fp_rows(src, info, slots, out);
  check_head_dim(D, op);
  check_int(info.slots, "slots", op);
  check_int(slots.t0 + T, "position", op);
  check_int(B * H, "sequences x heads", op);
  const ec::DType dt = dtype_of(out.scalar_type(), op);
  at::Tensor o = out.is_contiguous() ? out : at::empty(out.sizes(), out.options());
  check_launch(ec::launch_dequantize(dt, view_of(src, D), map_of(info, slots.block_table, H),
                                     static_cast<int>(slots.t0), static_cast<int>(B),
                                     static_cast<int>(H), static_cast<int>(T), static_cast<int>(D),
                                     o.data_ptr(), at::cuda::getCurrentCUDAStream().stream()),
               op);
  if (!o.is_same(out)) out.copy_(o);
}

void decode_attention_out(const at::Tensor& q, const KvStore& k, const KvStore& v,
                          const DecodeAttentionArgs& args, at::Tensor& out, at::Tensor* lse,
                          const at::Tensor* k_new, const at::Tensor* v_new, const SlotMap* append) {
  const char* op = "decode_attention";
  detail::StoreInfo ki, vi;
  const int64_t max_len = detail::check_attention(q, k, v, args, out, &ki, &vi);
  const int64_t B = q.size(0), H = q.size(1), D = q.size(-1);
  check_head_dim(D, op);
  check_int(max_len, "max_len", op);
  check_int(ki.slots, "slots", op);
  // The kernel keeps storage rows as 32-bit indices (row * row bytes is 64-bit).
  const int64_t rows = std::max(k.data.size(0), v.data.size(0)) * H * ki.slots;
  ELI_CHECK(rows <= int64_t(UINT32_MAX),
            "{}: storage has {} rows [N0, H, S]; the CUDA kernel addresses at most 2^32 - 1", op,
            rows);
  check_device(args.block_table, q, "block_table", op);
  const c10::cuda::CUDAGuard guard(q.device());
  const at::Tensor qc = q.contiguous();
  at::Tensor o = out.is_contiguous() ? out : at::empty(out.sizes(), out.options());
  at::Tensor lse_t;
  if (lse != nullptr) {
    const bool reuse = lse->defined() && lse->is_cuda() && lse->device() == q.device() &&
                       lse->scalar_type() == at::kFloat && lse->is_contiguous() &&
                       lse->dim() == 2 && lse->size(0) == B && lse->size(1) == H;
    lse_t = reuse ? *lse : at::empty({B, H}, q.options().dtype(at::kFloat));
  }
  ec::DecodeAttentionParams p;
  p.dtype = dtype_of(q.scalar_type(), op);
  p.q = qc.data_ptr();
  p.out = o.data_ptr();
  p.lse = lse_t.defined() ? lse_t.data_ptr<float>() : nullptr;
  p.k = view_of(k, D);
  p.v = view_of(v, D);
  p.map = map_of(ki, args.block_table, H);
  p.seq_lens = args.seq_lens.data_ptr<int32_t>();
  if (args.bias.defined()) {
    p.bias = args.bias.data_ptr<float>();
    p.bias_stride = args.bias.stride(0);
  }
  p.B = static_cast<int>(B);
  p.H = static_cast<int>(H);
  p.D = static_cast<int>(D);
  p.max_len = static_cast<int>(max_len);
  const int64_t plan_len = args.plan_len < 0 ? ki.capacity : args.plan_len;
  check_int(plan_len, "plan_len", op);
  p.plan_len = static_cast<int>(plan_len);
  p.split_len = static_cast<int>(args.split_len);  // checked by check_attention
  at::Tensor kn, vn;  // contiguous [B, H, D] views of the new token (copies only if strided)
  if (k_new != nullptr) {
    ELI_CHECK(v_new != nullptr && k_new->defined() && v_new->defined(),
              "{}: k_new and v_new go together", op);
    // q's dtype or fp32 (a rotated side); a pair of both is read as fp32 (exact for fp16).
    const bool f32 = k_new->scalar_type() == at::kFloat || v_new->scalar_type() == at::kFloat;
    const at::ScalarType nt = f32 ? at::kFloat : q.scalar_type();
    for (const at::Tensor* t : {k_new, v_new}) {
      ELI_CHECK(t->device() == q.device() &&
                    (t->scalar_type() == q.scalar_type() || t->scalar_type() == at::kFloat) &&
                    t->numel() == B * H * D,
                "{}: k_new / v_new must be [B={}, H={}, 1, D={}] {} or fp32 on {}", op, B, H, D,
                c10::toString(q.scalar_type()), q.device().str());
    }
    kn = k_new->to(nt).contiguous();
    vn = v_new->to(nt).contiguous();
    p.k_new = kn.data_ptr();
    p.v_new = vn.data_ptr();
    p.new_f32 = nt == at::kFloat && q.scalar_type() != at::kFloat;
  }
  if (append != nullptr) {
    ELI_CHECK(k_new != nullptr && (!p.new_f32 || (k.bits == 16 && v.bits == 16)),
              "{}: storing the new token needs it (in q's dtype for quantized storage)", op);
    const at::Tensor& t0 = append->t0_dev;
    ELI_CHECK(t0.defined() && t0.device() == q.device() && t0.scalar_type() == at::kInt &&
                  t0.dim() == 1 && t0.size(0) == B && t0.is_contiguous(),
              "{}: append.t0_dev must be contiguous int32 [{}] on {}", op, B, q.device().str());
    ELI_CHECK(append->block_table.defined() == args.block_table.defined() &&
                  (!args.block_table.defined() ||
                   append->block_table.data_ptr() == args.block_table.data_ptr()),
              "{}: the append goes through the block table the history is read with", op);
    p.store_k = target_of(k, D);
    p.store_v = target_of(v, D);
    p.store_t0 = t0.data_ptr<int32_t>();
  }
  p.sm_scale = static_cast<float>(args.sm_scale > 0 ? args.sm_scale
                                                    : 1.0 / std::sqrt(static_cast<double>(D)));
  const size_t ws_bytes = ec::decode_attention_workspace_bytes(p);
  at::Tensor ws = at::empty({static_cast<int64_t>(ws_bytes)}, q.options().dtype(at::kByte));
  check_launch(ec::launch_decode_attention(p, ws.data_ptr(), ws_bytes,
                                           at::cuda::getCurrentCUDAStream().stream()),
               op);
  if (!o.is_same(out)) out.copy_(o);
  if (lse != nullptr && !(lse->defined() && lse_t.is_same(*lse))) *lse = lse_t;
}

namespace {
void check_rows_like(const at::Tensor& t, const at::Tensor& x, const char* what, const char* op) {
  ELI_CHECK(t.defined() && t.device() == x.device() && t.scalar_type() == x.scalar_type() &&
                t.is_contiguous(),
            "{}: {} must be a contiguous {} tensor on {}", op, what, c10::toString(x.scalar_type()),
            x.device().str());
}
}  // namespace

at::Tensor bias_residual_layernorm(at::Tensor& x, const at::Tensor& y, const at::Tensor& bias,
                                   const at::Tensor& ln_w, const at::Tensor& ln_b, double eps) {
  const char* op = "bias_residual_layernorm";
  ELI_CHECK(x.defined() && x.dim() >= 1 && x.is_contiguous(), "{}: x must be contiguous", op);
  check_rows_like(y, x, "y", op);
  ELI_CHECK(y.sizes() == x.sizes(), "{}: y and x differ in shape", op);
  const int64_t n = x.size(-1), rows = x.numel() / n;
  for (const auto* t : {&bias, &ln_w, &ln_b}) {
    check_rows_like(*t, x, "bias / ln_w / ln_b", op);
    ELI_CHECK(t->numel() == n, "{}: bias / ln_w / ln_b must have {} elements", op, n);
  }
  check_int(rows, "rows", op);
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = at::empty_like(x);
  check_launch(
      ec::launch_bias_residual_layernorm(
          dtype_of(x.scalar_type(), op), x.data_ptr(), y.data_ptr(), bias.data_ptr(),
          ln_w.data_ptr(), ln_b.data_ptr(), out.data_ptr(), static_cast<int>(rows),
          static_cast<int>(n), static_cast<float>(eps), at::cuda::getCurrentCUDAStream().stream()),
      op);
  return out;
}

std::pair<at::Tensor, at::Tensor> embed_layernorm(const at::Tensor& wte, const at::Tensor& wpe,
                                                  const at::Tensor& ids, const at::Tensor& pos0,
                                                  const at::Tensor& ln_w, const at::Tensor& ln_b,
                                                  double eps) {
  const char* op = "embed_layernorm";
  ELI_CHECK(wte.defined() && wte.dim() == 2 && wte.is_contiguous(), "{}: wte must be [V, n]", op);
  const int64_t n = wte.size(1);
  check_rows_like(wpe, wte, "wpe", op);
  ELI_CHECK(wpe.dim() == 2 && wpe.size(1) == n, "{}: wpe must be [P, {}]", op, n);
  for (const auto* t : {&ln_w, &ln_b}) {
    check_rows_like(*t, wte, "ln_w / ln_b", op);
    ELI_CHECK(t->numel() == n, "{}: ln_w / ln_b must have {} elements", op, n);
  }
  ELI_CHECK(ids.defined() && ids.dim() == 2 && ids.scalar_type() == at::kLong &&
                ids.device() == wte.device() && ids.size(0) >= 1 && ids.size(1) >= 1,
            "{}: ids must be int64 [B, T] on {}", op, wte.device().str());
  ELI_CHECK(pos0.defined() && (pos0.numel() == 1 || pos0.numel() == ids.size(0)) &&
                pos0.scalar_type() == at::kLong && pos0.device() == wte.device() &&
                pos0.is_contiguous(),
            "{}: pos0 must be one int64 or one per row of ids on {}", op, wte.device().str());
  const int64_t rows = ids.numel();
  check_int(rows, "tokens", op);
  const c10::cuda::CUDAGuard guard(wte.device());
  const at::Tensor idc = ids.contiguous();
  at::Tensor x = at::empty({ids.size(0), ids.size(1), n}, wte.options());
  at::Tensor a = at::empty_like(x);
  check_launch(
      ec::launch_embed_layernorm(
          dtype_of(wte.scalar_type(), op), wte.data_ptr(), wpe.data_ptr(), idc.data_ptr<int64_t>(),
          pos0.data_ptr<int64_t>(), pos0.numel() == 1 ? 0 : 1, static_cast<int>(wpe.size(0)),
          static_cast<int>(rows), static_cast<int>(ids.size(1)), ln_w.data_ptr(), ln_b.data_ptr(),
          x.data_ptr(), a.data_ptr(), static_cast<int>(n), static_cast<float>(eps),
          at::cuda::getCurrentCUDAStream().stream()),
      op);
  return {x, a};
}

at::Tensor argmax_rows(const at::Tensor& x) {
  const char* op = "argmax_rows";
  ELI_CHECK(x.defined() && x.dim() == 2 && x.size(0) >= 1 && x.size(1) >= 1,
            "{}: x must be a non-empty [rows, n] tensor", op);
  check_int(x.size(0), "rows", op);
  check_int(x.size(1), "width", op);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous();
  at::Tensor out = at::empty({x.size(0)}, x.options().dtype(at::kLong));
  const int rows = static_cast<int>(x.size(0)), n = static_cast<int>(x.size(1));
  const size_t ws_bytes = ec::argmax_workspace_bytes(rows, n);
  const at::Tensor ws = at::empty({static_cast<int64_t>(std::max<size_t>(ws_bytes, 1))},
                                  x.options().dtype(at::kByte));
  check_launch(ec::launch_argmax_rows(dtype_of(xc.scalar_type(), op), xc.data_ptr(), rows, n,
                                      out.data_ptr<int64_t>(), ws.data_ptr(), ws_bytes,
                                      at::cuda::getCurrentCUDAStream().stream()),
               op);
  return out;
}

bool split_heads_applies(const at::Tensor& qkv, int64_t heads) {
  const at::ScalarType t = qkv.scalar_type();
  if ((t != at::kHalf && t != at::kFloat) || !qkv.is_contiguous() || qkv.numel() == 0) return false;
  const int64_t d = qkv.size(2) / (3 * heads);
  return d * qkv.element_size() % 16 == 0 &&
         reinterpret_cast<uintptr_t>(qkv.data_ptr()) % 16 == 0 && qkv.numel() < (int64_t(1) << 31);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> split_heads(const at::Tensor& qkv, int64_t heads) {
  const char* op = "split_heads";
  const int64_t b = qkv.size(0), t = qkv.size(1), d = qkv.size(2) / (3 * heads);
  check_int(b, "batch", op);
  check_int(t, "tokens", op);
  check_int(heads, "heads", op);
  check_int(d, "head_dim", op);
  const c10::cuda::CUDAGuard guard(qkv.device());
  at::Tensor q = at::empty({b, heads, t, d}, qkv.options());
  at::Tensor k = at::empty_like(q), v = at::empty_like(q);
  check_launch(ec::launch_split_heads(
                   dtype_of(qkv.scalar_type(), op), qkv.data_ptr(), q.data_ptr(), k.data_ptr(),
                   v.data_ptr(), static_cast<int>(b), static_cast<int>(t), static_cast<int>(heads),
                   static_cast<int>(d), at::cuda::getCurrentCUDAStream().stream()),
               op);
  return {q, k, v};
}

bool merge_attention_applies(const at::Tensor& o1, const at::Tensor& lse1, const at::Tensor& o2,
                             const at::Tensor& lse2) {
  const at::ScalarType t = o1.scalar_type();
  auto fp32_on = [&](const at::Tensor& x) {
    return x.scalar_type() == at::kFloat && x.is_contiguous() && x.device() == o1.device();
  };
  return (t == at::kHalf || t == at::kFloat) && o2.scalar_type() == t && o1.is_contiguous() &&
         o2.is_contiguous() && o2.device() == o1.device() && fp32_on(lse1) && fp32_on(lse2) &&
         o1.numel() > 0 && o1.size(-1) <= INT_MAX;
}

std::pair<at::Tensor, at::Tensor> merge_attention(const at::Tensor& o1, const at::Tensor& lse1,
                                                  const at::Tensor& o2, const at::Tensor& lse2) {
  const char* op = "merge_attention";
  const c10::cuda::CUDAGuard guard(o1.device());
  at::Tensor o = at::empty_like(o1), lse = at::empty_like(lse1);
  check_launch(
      ec::launch_merge_attention(
          dtype_of(o1.scalar_type(), op), o1.data_ptr(), lse1.data_ptr<float>(), o2.data_ptr(),
          lse2.data_ptr<float>(), o.data_ptr(), lse.data_ptr<float>(), lse1.numel(),
          static_cast<int>(o1.size(-1)), at::cuda::getCurrentCUDAStream().stream()),
      op);
  return {o, lse};
}

bool gemv_applies(const at::Tensor& x, const at::Tensor& w) {
  if (!x.defined() || !w.defined() || x.dim() < 1 || w.dim() != 2 || x.numel() == 0) return false;
  const at::ScalarType t = x.scalar_type();
  if ((t != at::kHalf && t != at::kFloat) || w.scalar_type() != t || !w.is_contiguous() ||
      w.device() != x.device() || x.size(-1) != w.size(1)) {
    return false;
  }
  const int64_t k = w.size(1), rows = x.numel() / k;
  const int64_t per16 = 16 / static_cast<int64_t>(at::elementSize(t));
  const bool one_token_rows = x.dim() <= 2 || x.size(-2) == 1;  // decode, not a prompt
  const bool rows_ok = rows <= ec::kGemvMaxRows || (t == at::kHalf && one_token_rows &&
                                                    rows <= ec::kGemvMaxRowsHalf && k % 32 == 0);
  return rows_ok && k % per16 == 0 && w.size(0) <= INT_MAX && k <= INT_MAX &&
         reinterpret_cast<uintptr_t>(w.data_ptr()) % 16 == 0;
}

at::Tensor gemv(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, bool gelu,
                int64_t parts) {
  const char* op = "linear (gemv)";
  ELI_CHECK(gemv_applies(x, w), "{}: shapes or dtypes outside the kernel", op);
  const int64_t k = w.size(1), n = w.size(0), rows = x.numel() / k;
  if (bias.defined()) {
    check_rows_like(bias, x, "bias", op);
    ELI_CHECK(bias.numel() == n, "{}: bias must have {} elements", op, n);
  }
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor xc = x.contiguous();
  if (reinterpret_cast<uintptr_t>(xc.data_ptr()) % 16 != 0) xc = xc.clone();
  ELI_CHECK(parts >= 1 && n % parts == 0, "{}: {} output parts do not divide N = {}", op, parts, n);
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = n;
  if (parts > 1) shape = {parts, rows, n / parts};
  at::Tensor y = at::empty(shape, x.options());
  check_launch(
      ec::launch_gemv(dtype_of(x.scalar_type(), op), xc.data_ptr(), w.data_ptr(),
                      bias.defined() ? bias.data_ptr() : nullptr, y.data_ptr(),
                      static_cast<int>(rows), static_cast<int>(n), static_cast<int>(k), gelu,
                      static_cast<int>(parts), at::cuda::getCurrentCUDAStream().stream()),
      op);
  return y;
}

}  // namespace eli::ops::cuda_impl
