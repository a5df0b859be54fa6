#pragma once
/// GPT-2 hyper-parameters, as in a Hugging Face `config.json`.

#include <cstdint>
#include <string>

namespace eli {

struct GPT2Config {
  int64_t vocab_size = 50257;
  int64_t n_positions = 1024;
  int64_t n_embd = 768;
  int64_t n_layer = 12;
  int64_t n_head = 12;
  int64_t n_inner = 0;  // 0 = 4 * n_embd
  double layer_norm_epsilon = 1e-5;
  int64_t eos_token_id = 50256;

  int64_t head_dim() const { return n_embd / n_head; }
  int64_t inner() const { return n_inner > 0 ? n_inner : 4 * n_embd; }
  /// Throws eli::Error naming the field when a value is out of range or inconsistent.
  void validate() const;

  /// Parses a Hugging Face GPT-2 config.json (file path). Unknown keys are ignored;
  /// a non-GPT-2 `model_type` or bad values are errors.
  static GPT2Config from_json_file(const std::string& path);
  static GPT2Config from_json_string(const std::string& text, const std::string& origin = "");
  /// Named shapes: "gpt2" (124M), "gpt2-medium", "gpt2-large", "gpt2-xl", "tiny" (tests), or
  /// explicit sizes "L<layers>-E<embd>-H<heads>[-V<vocab>][-P<positions>]", e.g. "L2-E64-H2-V1000".
  static GPT2Config named(const std::string& name);
};

/// What a KV cache needs to know about the model.
struct ModelShape {
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t head_dim = 0;
  int64_t n_positions = 0;
  static ModelShape of(const GPT2Config& c) {
    return {c.n_layer, c.n_head, c.head_dim(), c.n_positions};
  }
};

}  // namespace eli
