#pragma once
// Shared by the op front-ends, the CPU references and the CUDA glue: validation of KV storage
// against the rows an op touches, and the slot -> storage-row mapping as an ATen tensor.

#include <ATen/ATen.h>

#include <cstdint>

#include "eli/ops.h"

namespace eli::ops::detail {

struct StoreInfo {
  int64_t width = 0;     // last dim of data: D or D / 2
  int64_t groups = 0;    // scales per row (0: none)
  int64_t slots = 0;     // S: capacity (contiguous) or block size (paged)
  int64_t capacity = 0;  // positions per sequence
  bool paged = false;
};

/// Checks `s` can hold B sequences of H heads with head_dim D through `block_table`; `what`
/// names the operand in error messages.
StoreInfo check_store(const KvStore& s, int64_t B, int64_t H, int64_t D,
                      const at::Tensor& block_table, const char* what);

/// Flat storage row of (b, h, t0 + t) for b < B, h < H, t < T, as int64 [B * H * T] on the
/// storage's device (see ops.h for the mapping).
at::Tensor row_index(const StoreInfo& info, int64_t B, int64_t H, int64_t T, int64_t t0,
                     const at::Tensor& block_table, at::Device device);

/// bits 16 storage: copies x [B, H, T, D] into the slots (any device).
void write_fp_rows(const at::Tensor& x, const KvStore& dst, const StoreInfo& info,
                   const SlotMap& slots);
/// bits 16 storage: gathers the slots into out [B, H, T, D] (any device).
void read_fp_rows(const KvStore& src, const StoreInfo& info, const SlotMap& slots, at::Tensor& out);

/// Validates q / out / args of decode attention; returns the bound on sequence lengths.
int64_t check_attention(const at::Tensor& q, const KvStore& k, const KvStore& v,
                        const DecodeAttentionArgs& args, const at::Tensor& out, StoreInfo* k_info,
                        StoreInfo* v_info);

}  // namespace eli::ops::detail
