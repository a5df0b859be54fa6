#pragma once
// Row codecs of the CPU reference (quant_ref.cpp), shared with attention_ref.cpp.

#include <cstdint>

#include "eli/ops.h"

namespace eli::ops::detail {

/// Storage row `row` of `s` (CPU, bits 8/4 or 16) -> D fp32 values in out.
void ref_decode_row(const KvStore& s, int64_t row, int64_t D, float* out);

}  // namespace eli::ops::detail
