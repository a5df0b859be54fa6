#include "eli/config.h"

#include "eli/error.h"

namespace eli {

const char* to_string(QuantMode m) {
  switch (m) {
    case QuantMode::kNone:
      return "none";
    case QuantMode::kInt8:
      return "int8";
    case QuantMode::kInt4:
      return "int4";
  }
  return "?";
}

const char* to_string(Granularity g) {
  switch (g) {
    case Granularity::kPerTensor:
      return "per_tensor";
    case Granularity::kPerTokenHead:
      return "per_token_head";
    case Granularity::kGroup:
      return "group";
  }
  return "?";
}

QuantMode parse_quant_mode(const std::string& s) {
  if (s == "none" || s == "fp" || s == "fp16" || s == "fp32") return QuantMode::kNone;
  if (s == "int8") return QuantMode::kInt8;
  if (s == "int4") return QuantMode::kInt4;
  ELI_FAIL("unknown quantization mode '{}' (valid: none, int8, int4)", s);
}

Granularity parse_granularity(const std::string& s) {
  if (s == "per_tensor") return Granularity::kPerTensor;
  if (s == "per_token_head" || s == "per_token") return Granularity::kPerTokenHead;
  if (s == "group") return Granularity::kGroup;
  ELI_FAIL("unknown scale granularity '{}' (valid: per_tensor, per_token_head, group)", s);
}

void QuantizationConfig::validate() const {
  ELI_CHECK(group_size == 32 || group_size == 64,
            "QuantizationConfig.group_size = {} (valid: 32, 64)", group_size);
  ELI_CHECK(eps > 0.0f, "QuantizationConfig.eps = {} must be > 0", eps);
  ELI_CHECK(residual_tokens >= 0, "QuantizationConfig.residual_tokens = {} must be >= 0",
            residual_tokens);
  ELI_CHECK(!zero_point || granularity == Granularity::kGroup ||
                granularity == Granularity::kPerTokenHead,
            "QuantizationConfig.zero_point needs granularity group or per_token_head, got {}",
            to_string(granularity));
}

void CacheConfig::validate() const {
  ELI_CHECK(window_size >= 1, "CacheConfig.window_size = {} must be >= 1", window_size);
  ELI_CHECK(sink_tokens >= 0, "CacheConfig.sink_tokens = {} must be >= 0", sink_tokens);
  ELI_CHECK(block_size >= 1 && block_size <= 4096, "CacheConfig.block_size = {} (valid: 1..4096)",
            block_size);
  ELI_CHECK(pool_blocks >= 0, "CacheConfig.pool_blocks = {} must be >= 0 (0 = batch x max_tokens)",
            pool_blocks);
  ELI_CHECK(chunk_size >= 1, "CacheConfig.chunk_size = {} must be >= 1", chunk_size);
  ELI_CHECK(keep_last >= 0, "CacheConfig.keep_last = {} must be >= 0", keep_last);
  ELI_CHECK(max_tokens >= 0, "CacheConfig.max_tokens = {} must be >= 0 (0 = n_positions)",
            max_tokens);
  for (size_t b = 0; b < seq_tokens.size(); ++b) {
    ELI_CHECK(seq_tokens[b] >= 0, "CacheConfig.seq_tokens[{}] = {} must be >= 0", b, seq_tokens[b]);
  }
}

}  // namespace eli
