#pragma once
/// GPT-2 forward pass in LibTorch: fp32 on CPU, fp16 on CUDA, under InferenceMode.

#include <ATen/ATen.h>

#include <string>
#include <utility>

#include "eli/kv_cache.h"
#include "eli/model_config.h"

namespace eli::model {

/// Weights of one transformer block, in nn.Linear layout ([out, in]) after loading.
struct Block {
  at::Tensor ln_1_w, ln_1_b;
  at::Tensor c_attn_w, c_attn_b;  // [3E, E], [3E]
  at::Tensor c_proj_w, c_proj_b;  // [E, E], [E]
  at::Tensor ln_2_w, ln_2_b;
  at::Tensor fc_w, fc_b;              // [inner, E], [inner]
  at::Tensor mlp_proj_w, mlp_proj_b;  // [E, inner], [E]
};

/// How GPT2::load treats a checkpoint.
struct LoadOptions {
  /// NaN / Inf weights (as stored, or beyond the range of the target dtype, e.g. fp16) are an
  /// error naming the tensor unless this is set.
  bool allow_non_finite = false;
};

class GPT2 {
 public:
  /// Loads a Hugging Face GPT-2 directory (config.json + model.safetensors).
  /// Accepts names with or without the "transformer." prefix, Conv1D [in, out] weights,
  /// ties lm_head to wte when absent, ignores attn.bias / attn.masked_bias buffers.
  /// Missing, unexpected, wrongly shaped or (see LoadOptions) non-finite tensors -> eli::Error
  /// naming the tensor.
  static GPT2 load(const std::string& dir, at::Device device, at::ScalarType dtype,
                   const LoadOptions& options = {});
  /// Random weights (N(0, 0.02), like HF's init) of the given shape, seeded.
  static GPT2 random(const GPT2Config& cfg, uint64_t seed, at::Device device, at::ScalarType dtype);
  /// Resolves "random:NAME" (see GPT2Config::named), "default" or a directory.
  static GPT2 from_spec(const std::string& spec, at::Device device, at::ScalarType dtype,
                        uint64_t seed = 0);

  /// ids: [B, T] int64 on any device; positions start at `past` (the tokens already in the
  /// cache). cache == nullptr means plain causal attention over `ids` alone (no_cache).
  /// Returns logits [B, T, vocab] in the model dtype. Throws eli::Error for ids out of range or
  /// past + T > n_positions.
  at::Tensor forward(const at::Tensor& ids, int64_t past, KVCache* cache) const;
  /// Same as forward() but returns logits only for the last position: [B, vocab].
  at::Tensor forward_last(const at::Tensor& ids, int64_t past, KVCache* cache) const;
  /// A ragged batch: row b of ids [B, T] holds lens[b] tokens (1 .. T; the rest of the row is
  /// right padding, any id in range) at positions past[b], past[b] + 1, ... (the cache holds
  /// past[b] positions of sequence b; cache == nullptr: past must be 0, plain causal attention).
  /// Returns logits [B, vocab] of each row's last token (lens[b] == 0: a sequence that sits
  /// this step out; its row is not stored and its logits are meaningless). seqs: the cache's
  /// sequence of each row (a subset of the cache's batch, KVCache::append_ragged); empty = row b
  /// is sequence b. Throws eli::Error for sizes that do not match, or past[b] + lens[b] >
  /// n_positions.
  at::Tensor forward_last(const at::Tensor& ids, const std::vector<int64_t>& past,
                          const std::vector<int64_t>& lens, KVCache* cache,
                          const std::vector<int64_t>& seqs = {}) const;
  /// One decode step that a CUDA graph can capture: ids [B, 1] int64 and pos [1] or [B] int64
  /// (the new token's position, or each sequence's) on the model's device; nothing is read back to the host, so nothing is
  /// validated: the caller guarantees ids < vocab_size and pos < n_positions. Returns logits
  /// [B, vocab] in the model dtype, equal to forward_last at past = pos.
  at::Tensor decode_logits(const at::Tensor& ids, const at::Tensor& pos, KVCache* cache) const;

  const GPT2Config& config() const { return cfg_; }
  ModelShape shape() const { return ModelShape::of(cfg_); }
  at::Device device() const { return device_; }
  at::ScalarType dtype() const { return dtype_; }
  int64_t num_parameters() const;
  /// Bytes of all weights (lm_head counted once when tied).
  int64_t weight_bytes() const;

 private:
  /// past: one entry (every sequence) or one per sequence; lens: empty (every row holds T tokens)
  /// or one per sequence (ragged).
  at::Tensor hidden(const at::Tensor& ids, const std::vector<int64_t>& past,
                    const std::vector<int64_t>& lens, KVCache* cache,
                    const std::vector<int64_t>& seqs = {}) const;
  /// {embedded x, its first LayerNorm} [B, T, E] -> the final LayerNorm's output. lens as in
  /// hidden().
  at::Tensor blocks(std::pair<at::Tensor, at::Tensor> embedded, const std::vector<int64_t>& lens,
                    KVCache* cache, const std::vector<int64_t>& seqs = {}) const;
  bool fused() const;  // CUDA: the fused block stages of ops.h
  GPT2Config cfg_;
  at::Device device_ = at::kCPU;
  at::ScalarType dtype_ = at::kFloat;
  at::Tensor wte_, wpe_, ln_f_w_, ln_f_b_, lm_head_;
  bool tied_ = true;
  std::vector<Block> blocks_;
};

/// Where the shipped default model lives (assets/models/...) and eli's assets directory, resolved
/// at run time: $ELI_ASSETS, the installed package, the executable's ../share/eli/assets, the
/// source tree (eli/assets.h gives the order).
std::string default_model_dir();
std::string assets_dir();
/// The tokenizer directory for a model spec (as GPT2::from_spec takes it): `explicit_dir` when
/// given; else the model's own directory when it has tokenizer files (vocab.json or
/// encoder.json; loading them may still fail, which is then an error rather than a silent switch
/// to other ids); else the shipped GPT-2 tokenizer, assets_dir() + "/tokenizer" ("random:..."
/// models have no directory of their own).
std::string tokenizer_dir_for(const std::string& model_spec, const std::string& explicit_dir = "");
/// "auto" -> cuda when available else cpu; validates "cpu", "cuda", "cuda:N".
at::Device resolve_device(const std::string& spec);
/// fp16 on CUDA, fp32 on CPU.
at::ScalarType default_dtype(at::Device device);

}  // namespace eli::model
