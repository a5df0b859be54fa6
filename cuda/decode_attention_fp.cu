// Instantiates the decode attention kernels whose K storage is Format::kFp.
#include "decode_attention.cuh"

namespace eli::cuda::detail {
template cudaError_t launch_decode_attention_for<Format::kFp>(const DecodeAttentionParams&,
                                                              const SplitPlan&, float*, float*,
                                                              cudaStream_t);
template cudaError_t decode_attention_blocks_per_sm_for<Format::kFp>(const DecodeAttentionParams&,
                                                                     int*);
}  // namespace eli::cuda::detail
