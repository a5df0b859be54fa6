// Instantiates the decode attention kernels whose K storage is Format::kInt8.
#include "decode_attention.cuh"

namespace eli::cuda::detail {
template cudaError_t launch_decode_attention_for<Format::kInt8>(const DecodeAttentionParams&,
                                                                const SplitPlan&, float*, float*,
                                                                cudaStream_t);
template cudaError_t decode_attention_blocks_per_sm_for<Format::kInt8>(const DecodeAttentionParams&,
                                                                       int*);
}  // namespace eli::cuda::detail
