// Instantiates the decode attention kernels whose K storage is Format::kInt4.
#include "decode_attention.cuh"

namespace eli::cuda::detail {
template cudaError_t launch_decode_attention_for<Format::kInt4>(const DecodeAttentionParams&,
                                                                const SplitPlan&, float*, float*,
                                                                cudaStream_t);
}  // namespace eli::cuda::detail
