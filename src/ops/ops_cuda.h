#pragma once
// The CUDA halves of the ops (ops_cuda.cpp, built only with CUDA LibTorch). Arguments are
// validated here, not by the callers in ops.cpp.

#include "eli/ops.h"

namespace eli::ops::cuda_impl {

void quantize_kv_out(const at::Tensor& x, const KvStore& dst, const SlotMap& slots);
void dequantize_kv_out(const KvStore& src, const SlotMap& slots, at::Tensor& out);
void decode_attention_out(const at::Tensor& q, const KvStore& k, const KvStore& v,
                          const DecodeAttentionArgs& args, at::Tensor& out, at::Tensor* lse);

}  // namespace eli::ops::cuda_impl
