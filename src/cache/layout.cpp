#include "eli/cache/layout.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "eli/error.h"

namespace eli::cache {
namespace {

// [first, first + len) when idx is a run of consecutive values, else len = -1.
std::pair<int64_t, int64_t> as_range(const std::vector<int64_t>& idx) {
  for (size_t i = 1; i < idx.size(); ++i) {
    if (idx[i] != idx[0] + static_cast<int64_t>(i)) return {0, -1};
  }
  return {idx.empty() ? 0 : idx[0], static_cast<int64_t>(idx.size())};
}

at::Tensor index_tensor(const std::vector<int64_t>& idx, at::Device device) {
  return at::tensor(idx, at::TensorOptions().dtype(at::kLong)).to(device);
}

at::Tensor select_slots(const at::Tensor& t, const std::vector<int64_t>& idx) {
  auto r = as_range(idx);
  if (r.second >= 0) return t.narrow(2, r.first, r.second);
  return t.index_select(2, index_tensor(idx, t.device()));
}

}  // namespace

Parts seq_rows(const Parts& p, int64_t b0, int64_t nb) {
  Parts out;
  for (const auto& t : p) out.push_back(t.narrow(0, b0, nb));
  return out;
}

std::vector<int64_t> iota(int64_t begin, int64_t end) {
  std::vector<int64_t> v;
  for (int64_t i = begin; i < end; ++i) v.push_back(i);
  return v;
}

void upload(at::Tensor& dst, const void* host, int64_t count) {
  ELI_CHECK(dst.numel() == count && dst.is_contiguous(), "upload: {} elements into a tensor of {}",
            count, dst.numel());
  const auto bytes = static_cast<size_t>(count) * at::elementSize(dst.scalar_type());
  if (!dst.is_cuda()) {
    std::memcpy(dst.data_ptr(), host, bytes);
    return;
  }
  at::Tensor staged = at::empty(dst.sizes(), dst.options().device(at::kCPU).pinned_memory(true));
  std::memcpy(staged.data_ptr(), host, bytes);
  dst.copy_(staged, /*non_blocking=*/true);
}

void SlotBuffers::allocate(const LayoutArgs& a, int64_t n0, int64_t slots) {
  auto make = [&](const std::vector<PartSpec>& specs) {
    Parts p;
    for (const auto& s : specs) {
      p.push_back(at::zeros({n0, a.shape.n_head, slots, s.width},
                            at::TensorOptions().dtype(s.dtype).device(a.device)));
    }
    return p;
  };
  k.clear();
  v.clear();
  for (int64_t l = 0; l < a.shape.n_layer; ++l) {
    k.push_back(make(a.k_parts));
    v.push_back(make(a.v_parts));
  }
}

void write_slots(Parts& buf, const Parts& src, const std::vector<int64_t>& src_idx,
                 const std::vector<int64_t>& dst_idx) {
  if (dst_idx.empty()) return;
  auto dst_range = as_range(dst_idx);
  for (size_t i = 0; i < buf.size(); ++i) {
    auto vals = select_slots(src[i], src_idx).to(buf[i].scalar_type());
    if (dst_range.second >= 0) {
      buf[i].narrow(2, dst_range.first, dst_range.second).copy_(vals);
    } else {
      buf[i].index_copy_(2, index_tensor(dst_idx, buf[i].device()), vals);
    }
  }
}

Parts read_slots(const Parts& buf, const std::vector<int64_t>& idx) {
  Parts out;
  for (const auto& t : buf) out.push_back(select_slots(t, idx));
  return out;
}

}  // namespace eli::cache
