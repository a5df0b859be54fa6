#pragma once
// Fast CPU decode attention over KV storage as stored (fp32/fp16 values, INT8, packed INT4; any
// granularity; contiguous or paged): the CPU path of ops::decode_attention_out. Same contract
// and validation as ops::ref::decode_attention_out (its specification, fp64), computed in fp32
// with an online softmax, parallel over (sequence, head). Any head_dim the layout allows.

#include <ATen/ATen.h>

#include "eli/ops.h"

namespace eli::ops::detail {

/// As ops::decode_attention_out for CPU tensors.
void cpu_decode_attention_out(const at::Tensor& q, const KvStore& k, const KvStore& v,
                              const DecodeAttentionArgs& args, at::Tensor& out, at::Tensor* lse);

}  // namespace eli::ops::detail
