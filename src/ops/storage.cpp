#include "ops/storage.h"

#include <string>

#include "../../cuda/attention/split_plan.h"  // plain C++: the kernel's split lengths
#include "eli/error.h"

namespace eli::ops::detail {

namespace {

std::string shape_str(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

void check_side_tensor(const at::Tensor& t, const at::Tensor& data, int64_t groups,
                       const char* what, const char* name) {
  ELI_CHECK(t.defined(), "{}: {} missing", what, name);
  ELI_CHECK(t.scalar_type() == at::kHalf, "{}: {} must be fp16, got {}", what, name,
            c10::toString(t.scalar_type()));
  ELI_CHECK(t.dim() == 4 && t.size(0) == data.size(0) && t.size(1) == data.size(1) &&
                t.size(2) == data.size(2) && t.size(3) == groups,
            "{}: {} shape {} must be [{}, {}, {}, {}]", what, name, shape_str(t), data.size(0),
            data.size(1), data.size(2), groups);
  ELI_CHECK(t.is_contiguous(), "{}: {} must be contiguous", what, name);
  ELI_CHECK(t.device() == data.device(), "{}: {} on {} but data on {}", what, name,
            t.device().str(), data.device().str());
}

}  // namespace

StoreInfo check_store(const KvStore& s, int64_t B, int64_t H, int64_t D,
                      const at::Tensor& block_table, const char* what) {
  StoreInfo info;
  ELI_CHECK(s.bits == 16 || s.bits == 8 || s.bits == 4, "{}: bits = {} (valid: 16, 8, 4)", what,
            s.bits);
  ELI_CHECK(s.data.defined() && s.data.dim() == 4, "{}: data must be a 4-d tensor, got {}", what,
            s.data.defined() ? shape_str(s.data) : std::string("undefined"));
  ELI_CHECK(s.data.is_contiguous(), "{}: data must be contiguous", what);
  info.width = s.bits == 4 ? D / 2 : D;
  ELI_CHECK(s.bits != 4 || D % 2 == 0, "{}: INT4 needs an even head_dim, got {}", what, D);
  ELI_CHECK(s.data.size(1) == H && s.data.size(3) == info.width,
            "{}: data shape {} must be [N, {}, S, {}]", what, shape_str(s.data), H, info.width);
  const at::ScalarType dt = s.data.scalar_type();
  if (s.bits == 16) {
    ELI_CHECK(at::isFloatingType(dt), "{}: fp storage must be floating, got {}", what,
              c10::toString(dt));
  } else {
    quant::QuantSpec spec = s.spec;
    spec.bits = s.bits;
    spec.check(D);
    const at::ScalarType want = (s.bits == 8 && !spec.zero_point) ? at::kChar : at::kByte;
    ELI_CHECK(dt == want, "{}: INT{} {} codes must be {}, got {}", what, s.bits,
              spec.zero_point ? "zero-point" : "symmetric", c10::toString(want), c10::toString(dt));
    if (spec.granularity == Granularity::kPerTensor) {
      ELI_CHECK(s.tensor_scale > 0.f, "{}: per_tensor needs tensor_scale > 0, got {}", what,
                s.tensor_scale);
    } else {
      info.groups = spec.groups(D);
      check_side_tensor(s.scales, s.data, info.groups, what, "scales");
      if (spec.zero_point) check_side_tensor(s.minima, s.data, info.groups, what, "minima");
    }
  }
  info.slots = s.data.size(2);
  ELI_CHECK(info.slots >= 1, "{}: storage has no slots", what);
  if (block_table.defined()) {
    info.paged = true;
    ELI_CHECK(block_table.scalar_type() == at::kInt && block_table.dim() == 2 &&
                  block_table.size(0) == B && block_table.is_contiguous(),
              "{}: block_table must be contiguous int32 [{}, max_blocks], got {} {}", what, B,
              c10::toString(block_table.scalar_type()), shape_str(block_table));
    ELI_CHECK(block_table.device() == s.data.device(), "{}: block_table on {} but data on {}", what,
              block_table.device().str(), s.data.device().str());
    info.capacity = block_table.size(1) * info.slots;
  } else {
    ELI_CHECK(s.data.size(0) >= B, "{}: storage holds {} sequences, need {}", what, s.data.size(0),
              B);
    info.capacity = info.slots;
  }
  return info;
}

at::Tensor row_index(const StoreInfo& info, int64_t B, int64_t H, int64_t T, int64_t t0,
                     const at::Tensor& block_table, at::Device device) {
  const auto opt = at::TensorOptions().dtype(at::kLong).device(device);
  const auto pos = at::arange(t0, t0 + T, opt);
  const auto h = at::arange(H, opt).view({1, H, 1});
  if (!info.paged) {
    const auto b = at::arange(B, opt).view({B, 1, 1});
    return ((b * H + h) * info.slots + pos.view({1, 1, T})).flatten();
  }
  const auto blk = block_table.to(at::kLong).index_select(1, pos.div(info.slots, "floor"));
  const auto slot = pos.remainder(info.slots);
  return ((blk.view({B, 1, T}) * H + h) * info.slots + slot.view({1, 1, T})).flatten();
}

void write_fp_rows(const at::Tensor& x, const KvStore& dst, const StoreInfo& info,
                   const SlotMap& slots) {
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), D = x.size(3);
  if (!info.paged) {
    dst.data.narrow(0, 0, B).narrow(2, slots.t0, T).copy_(x);
    return;
  }
  const auto rows = row_index(info, B, H, T, slots.t0, slots.block_table, dst.data.device());
  dst.data.view({-1, D}).index_copy_(0, rows, x.reshape({-1, D}).to(dst.data.scalar_type()));
}

void read_fp_rows(const KvStore& src, const StoreInfo& info, const SlotMap& slots,
                  at::Tensor& out) {
  const int64_t B = out.size(0), H = out.size(1), T = out.size(2), D = out.size(3);
  if (!info.paged) {
    out.copy_(src.data.narrow(0, 0, B).narrow(2, slots.t0, T));
    return;
  }
  const auto rows = row_index(info, B, H, T, slots.t0, slots.block_table, src.data.device());
  out.copy_(src.data.view({-1, D}).index_select(0, rows).view({B, H, T, D}));
}

int64_t check_attention(const at::Tensor& q, const KvStore& k, const KvStore& v,
                        const DecodeAttentionArgs& args, const at::Tensor& out, StoreInfo* k_info,
                        StoreInfo* v_info) {
  ELI_CHECK(q.defined() && (q.dim() == 3 || (q.dim() == 4 && q.size(2) == 1)),
            "decode_attention: q must be [B, H, D] or [B, H, 1, D], got {}",
            q.defined() ? shape_str(q) : std::string("undefined"));
  ELI_CHECK(q.scalar_type() == at::kHalf || q.scalar_type() == at::kFloat,
            "decode_attention: q must be fp16 or fp32, got {}", c10::toString(q.scalar_type()));
  const int64_t B = q.size(0), H = q.size(1), D = q.size(-1);
  ELI_CHECK(out.defined() && out.sizes() == q.sizes() && out.scalar_type() == q.scalar_type() &&
                out.device() == q.device(),
            "decode_attention: out must match q ({} {}), got {}", shape_str(q),
            c10::toString(q.scalar_type()), out.defined() ? shape_str(out) : "undefined");
  *k_info = check_store(k, B, H, D, args.block_table, "decode_attention K");
  *v_info = check_store(v, B, H, D, args.block_table, "decode_attention V");
  ELI_CHECK(k_info->capacity == v_info->capacity && k_info->slots == v_info->slots,
            "decode_attention: K and V storage differ in slots ({} vs {})", k_info->slots,
            v_info->slots);
  for (const KvStore* s : {&k, &v}) {
    ELI_CHECK(s->data.device() == q.device(), "decode_attention: storage on {} but q on {}",
              s->data.device().str(), q.device().str());
    ELI_CHECK(s->bits != 16 || s->data.scalar_type() == q.scalar_type(),
              "decode_attention: fp storage must have q's dtype {}, got {}",
              c10::toString(q.scalar_type()), c10::toString(s->data.scalar_type()));
  }
  ELI_CHECK(args.seq_lens.defined() && args.seq_lens.scalar_type() == at::kInt &&
                args.seq_lens.dim() == 1 && args.seq_lens.size(0) == B &&
                args.seq_lens.device() == q.device() && args.seq_lens.is_contiguous(),
            "decode_attention: seq_lens must be contiguous int32 [{}] on {}", B, q.device().str());
  ELI_CHECK(cuda::detail::split_len_valid(args.split_len),
            "decode_attention: split_len must be 0 (planned) or a multiple of 64 in 64 .. 1024, "
            "got {}",
            args.split_len);
  const int64_t max_len = args.max_len < 0 ? k_info->capacity : args.max_len;
  ELI_CHECK(max_len <= k_info->capacity, "decode_attention: max_len {} exceeds capacity {}",
            max_len, k_info->capacity);
  if (args.bias.defined()) {
    ELI_CHECK(args.bias.scalar_type() == at::kFloat && args.bias.dim() == 2 &&
                  args.bias.size(0) == B && args.bias.size(1) >= max_len &&
                  args.bias.stride(1) == 1 && args.bias.device() == q.device(),
              "decode_attention: bias must be fp32 [{}, >= {}] with unit inner stride on {}, "
              "got {}",
              B, max_len, q.device().str(), shape_str(args.bias));
  }
  return max_len;
}

}  // namespace eli::ops::detail
