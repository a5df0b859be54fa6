// Launcher for fused decode attention: argument checks, split planning, format dispatch.
#include <algorithm>

#include "decode_attention.cuh"

namespace eli::cuda {

namespace detail {
extern template cudaError_t launch_decode_attention_for<Format::kFp>(const DecodeAttentionParams&,
                                                                     const SplitPlan&, float*,
                                                                     float*, cudaStream_t);
extern template cudaError_t launch_decode_attention_for<Format::kInt8>(const DecodeAttentionParams&,
                                                                       const SplitPlan&, float*,
                                                                       float*, cudaStream_t);
extern template cudaError_t launch_decode_attention_for<Format::kInt4>(const DecodeAttentionParams&,
                                                                       const SplitPlan&, float*,
                                                                       float*, cudaStream_t);
extern template cudaError_t decode_attention_blocks_per_sm_for<Format::kFp>(
    const DecodeAttentionParams&, int*);
extern template cudaError_t decode_attention_blocks_per_sm_for<Format::kInt8>(
    const DecodeAttentionParams&, int*);
extern template cudaError_t decode_attention_blocks_per_sm_for<Format::kInt4>(
    const DecodeAttentionParams&, int*);
}  // namespace detail

namespace {

/// Resident blocks per SM of the attention kernel p takes (1 for parameters the launcher will
/// refuse: the plan of a call that fails does not matter).
int blocks_per_sm(const DecodeAttentionParams& p) {
  int n = 1;
  auto get = [&]() -> cudaError_t {
    ELI_DISPATCH_FORMAT(p.k.format, kFK,
                        { return detail::decode_attention_blocks_per_sm_for<kFK>(p, &n); });
    return cudaSuccess;
  };
  if (get() != cudaSuccess) n = 1;
  return n;
}

/// The split length planned (attention/split_plan.h) for `plan` tokens. Quantized K or V: by
/// rounds of the blocks that run at full speed at once (INT4 V: kIssueBoundBlocksPerSm an SM;
/// otherwise as many as the kernel holds resident on this card); unquantized: to fill the card.
int planned_split_len(const DecodeAttentionParams& p, int64_t plan) {
  const int64_t rows = int64_t(p.B) * p.H;
  if (p.k.format == Format::kFp && p.v.format == Format::kFp)
    return detail::plan_splits_fill(rows, plan, device_sm_count()).split_len;
  if (p.v.format == Format::kInt4)
    return detail::plan_splits_rounds(rows, plan,
                                      int64_t(device_sm_count()) * detail::kIssueBoundBlocksPerSm,
                                      detail::kSplitLensIssueBound)
        .split_len;
  return detail::plan_splits_rounds(rows, plan, int64_t(device_sm_count()) * blocks_per_sm(p),
                                    detail::kSplitLensResident)
      .split_len;
}

/// The caller's split length (p.split_len) or the one planned for the longer of plan_len and
/// max_len, so that it depends on plan_len, not on max_len below it (results depend on the
/// split boundaries); splits enough for max_len, and the planned length's count of them.
detail::SplitPlan plan_splits(const DecodeAttentionParams& p) {
  const int max_len = std::max(p.max_len, 1), plan = std::max(p.plan_len, max_len);
  const int len = p.split_len > 0 ? p.split_len : planned_split_len(p, plan);
  return {len, (max_len + len - 1) / len, (plan + len - 1) / len};
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

/// Whether the reduce kernel can append to target t of the storage read in `format`: stored as
/// it is (kFp) or quantized from dtype values (quantize_kind_ok, with its scales where it has
/// them).
bool append_kind_ok(const QuantTarget& t, Format format, bool new_f32, int d) {
  if (t.format != format) return false;
  if (t.format == Format::kFp) return true;
  return detail::quantize_kind_ok(t, d) && !new_f32 &&
         (t.tensor_scale > 0.f || t.scales != nullptr);
}

cudaError_t check_operand(const QuantView& v, int D, const char* which_data) {
  if (v.data == nullptr || !aligned16(v.data)) return invalid_argument(which_data, 0);
  if (v.format == Format::kFp) return cudaSuccess;
  if (v.tensor_scale > 0.f) return cudaSuccess;
  if (v.scales == nullptr) return invalid_argument("attention scales pointer (null)", 0);
  if (v.group != 32 && v.group != 64 && v.group != D)
    return invalid_argument("attention scale group (valid: 32, 64, head_dim)", v.group);
  return cudaSuccess;
}

}  // namespace

size_t decode_attention_workspace_bytes(const DecodeAttentionParams& p) {
  const detail::SplitPlan plan = plan_splits(p);
  return size_t(p.B) * p.H * plan.num_splits * (size_t(p.D) + 2) * sizeof(float);
}

cudaError_t launch_decode_attention(const DecodeAttentionParams& p, void* workspace,
                                    size_t workspace_bytes, cudaStream_t stream) {
  if (p.B <= 0) return invalid_argument("attention batch", p.B);
  if (p.H <= 0 || p.map.heads != p.H) return invalid_argument("attention heads", p.H);
  if (p.D != 64 && p.D != 128) return invalid_argument("head_dim (valid: 64, 128)", p.D);
  if (p.max_len < 0) return invalid_argument("attention max_len", p.max_len);
  if (p.plan_len < 0) return invalid_argument("attention plan_len", p.plan_len);
  if (!detail::split_len_valid(p.split_len))
    return invalid_argument("attention split_len (0 or a multiple of 64 in 64 .. 1024)",
                            p.split_len);
  if ((p.k_new == nullptr) != (p.v_new == nullptr))
    return invalid_argument("attention k_new/v_new (give both or neither)", 0);
  if ((p.store_k.data != nullptr || p.store_v.data != nullptr) &&
      (p.store_k.data == nullptr || p.store_v.data == nullptr || p.store_t0 == nullptr ||
       p.k_new == nullptr || !append_kind_ok(p.store_k, p.k.format, p.new_f32, p.D) ||
       !append_kind_ok(p.store_v, p.v.format, p.new_f32, p.D) ||
       (p.store_k.format == Format::kFp) != (p.store_v.format == Format::kFp)))
    return invalid_argument(
        "attention store of the new token (needs K and V targets both unquantized or both of a "
        "quantize kind, k_new in dtype, t0)",
        0);
  if (p.map.block_size <= 0)
    return invalid_argument("attention block_size/capacity", p.map.block_size);
  if (p.q == nullptr || p.out == nullptr || p.seq_lens == nullptr)
    return invalid_argument("attention q/out/seq_lens pointer (null)", 0);
  if (cudaError_t e = check_operand(p.k, p.D, "attention K pointer (null or not 16-byte aligned)"))
    return e;
  if (cudaError_t e = check_operand(p.v, p.D, "attention V pointer (null or not 16-byte aligned)"))
    return e;
  const size_t need = decode_attention_workspace_bytes(p);
  if (workspace == nullptr || workspace_bytes < need)
    return invalid_argument("attention workspace bytes (too small)", (long long)workspace_bytes);
  const detail::SplitPlan plan = plan_splits(p);
  if (plan.num_splits > 65535) return invalid_argument("attention splits", plan.num_splits);
  float* part_acc = static_cast<float*>(workspace);
  float* part_ml = part_acc + size_t(p.B) * p.H * plan.num_splits * p.D;
  ELI_DISPATCH_FORMAT(p.k.format, kFK, {
    return detail::launch_decode_attention_for<kFK>(p, plan, part_acc, part_ml, stream);
  });
  return cudaSuccess;
}

}  // namespace eli::cuda
