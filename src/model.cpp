#include "eli/model.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>
#include <fmt/ranges.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <tuple>

#include "eli/error.h"
#include "eli/ops.h"
#include "eli/safetensors.h"

namespace eli::model {

namespace {

at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, double eps) {
  return at::layer_norm(x, {x.size(-1)}, w, b, eps);
}

/// Causal attention of q [B,H,T,D] over k, v [B,H,T,D] (the no_cache path).
at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true);
#else
  const int64_t t = q.size(2);
  auto scores = at::matmul(q.to(at::kFloat), k.to(at::kFloat).transpose(-2, -1)) /
                std::sqrt(static_cast<double>(q.size(-1)));
  auto mask = at::ones({t, t}, q.options().dtype(at::kBool)).triu(1);
  scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity());
  return at::matmul(at::softmax(scores, -1), v.to(at::kFloat)).to(q.scalar_type());
#endif
}

}  // namespace

at::Tensor GPT2::hidden(const at::Tensor& ids_in, const std::vector<int64_t>& past,
                        const std::vector<int64_t>& lens, KVCache* cache,
                        const std::vector<int64_t>& seqs) const {
  ELI_CHECK(ids_in.dim() == 2, "input ids must be 2-D [batch, tokens], got {}-D", ids_in.dim());
  ELI_CHECK(ids_in.scalar_type() == at::kLong, "input ids must be int64, got {}",
            c10::toString(ids_in.scalar_type()));
  const int64_t batch = ids_in.size(0), t = ids_in.size(1);
  ELI_CHECK(batch >= 1 && t >= 1, "input ids must be non-empty, got [{}, {}]", batch, t);
  ELI_CHECK(past.size() == 1 || static_cast<int64_t>(past.size()) == batch,
            "{} past lengths for a batch of {}", past.size(), batch);
  ELI_CHECK(lens.empty() || static_cast<int64_t>(lens.size()) == batch,
            "{} row lengths for a batch of {}", lens.size(), batch);
  for (size_t b = 0; b < std::max(past.size(), lens.size()); ++b) {
    const int64_t p = past[past.size() == 1 ? 0 : b], n = lens.empty() ? t : lens[b];
    ELI_CHECK(p >= 0, "past = {} must be >= 0 (sequence {})", p, b);
    ELI_CHECK(n >= 0 && n <= t, "sequence {} has {} tokens, outside [0, {}] (the row length)", b, n,
              t);
    ELI_CHECK(p + n <= cfg_.n_positions,
              "sequence of {} tokens ({} cached + {} new) exceeds the model's n_positions = {}",
              p + n, p, n, cfg_.n_positions);
    ELI_CHECK(cache != nullptr || p == 0, "past = {} without a cache (sequence {})", p, b);
  }
  {
    const int64_t lo = ids_in.min().item<int64_t>(), hi = ids_in.max().item<int64_t>();
    ELI_CHECK(lo >= 0 && hi < cfg_.vocab_size, "token id {} out of range [0, {})", lo < 0 ? lo : hi,
              cfg_.vocab_size);
  }
  const at::Tensor ids = ids_in.to(device_);
  const bool one_past =
      std::all_of(past.begin(), past.end(), [&](int64_t p) { return p == past[0]; });
  if (fused()) {
    const at::Tensor pos0 = at::tensor(one_past ? std::vector<int64_t>{past[0]} : past,
                                       at::TensorOptions().dtype(at::kLong))
                                .to(device_);
    return blocks(ops::embed_layernorm(wte_, wpe_, ids, pos0, blocks_[0].ln_1_w, blocks_[0].ln_1_b,
                                       cfg_.layer_norm_epsilon),
                  lens, cache, seqs);
  }
  at::Tensor x;
  if (one_past) {
    x = at::embedding(wte_, ids) + wpe_.narrow(0, past[0], t).unsqueeze(0);
  } else {
    // Position past[b] + i of row b; padding past the model's positions reads the last one.
    const auto opts = at::TensorOptions().dtype(at::kLong);
    const at::Tensor pos = (at::tensor(past, opts).unsqueeze(1) + at::arange(t, opts).unsqueeze(0))
                               .clamp_max(cfg_.n_positions - 1)
                               .to(device_);
    x = at::embedding(wte_, ids) + at::embedding(wpe_, pos);
  }
  at::Tensor a = layer_norm(x, blocks_[0].ln_1_w, blocks_[0].ln_1_b, cfg_.layer_norm_epsilon);
  return blocks({x, a}, lens, cache, seqs);
}

bool GPT2::fused() const {
  return device_.is_cuda() && ops::has_cuda_ops() && (dtype_ == at::kHalf || dtype_ == at::kFloat);
}

at::Tensor GPT2::blocks(std::pair<at::Tensor, at::Tensor> embedded,
                        const std::vector<int64_t>& lens, KVCache* cache,
                        const std::vector<int64_t>& seqs) const {
  ELI_CHECK(seqs.empty() || static_cast<int64_t>(seqs.size()) == embedded.first.size(0),
            "{} sequence indices for {} rows", seqs.size(), embedded.first.size(0));
  at::Tensor x = std::move(embedded.first), a = std::move(embedded.second);
  const int64_t batch = x.size(0), t = x.size(1);
  const int64_t e = cfg_.n_embd, h = cfg_.n_head, d = cfg_.head_dim();
  const double eps = cfg_.layer_norm_epsilon;
  // CUDA: each projection's bias, the residual add and the next LayerNorm in one kernel
  // (ops::bias_residual_layernorm), the MLP's bias and GELU inside its product (ops::linear); a
  // decode step is launch-bound, so ~5 launches fewer per layer. The CPU keeps plain ATen.
  const bool fused = this->fused();
  for (int64_t l = 0; l < cfg_.n_layer; ++l) {
    const Block& blk = blocks_[l];
    at::Tensor q, k, v;
    if (fused) {
      // A decode step's product stores q, k and v in head layout itself; a prompt's is
      // followed by one launch for the three head splits.
      std::tie(q, k, v) = ops::qkv_heads(a, blk.c_attn_w, blk.c_attn_b, h);
    } else {
      const at::Tensor qkv = at::linear(a, blk.c_attn_w, blk.c_attn_b);
      const auto parts = qkv.split(e, -1);
      auto heads = [&](const at::Tensor& z) { return z.view({batch, t, h, d}).transpose(1, 2); };
      q = heads(parts[0]);
      k = heads(parts[1]).contiguous();
      v = heads(parts[2]).contiguous();
    }
    at::Tensor att;
    if (cache != nullptr) {
      if (lens.empty() && seqs.empty()) {
        cache->append(static_cast<int>(l), k, v);
      } else {
        cache->append_ragged(static_cast<int>(l), k, v, lens, seqs);
      }
      att = cache->attend(static_cast<int>(l), q.contiguous());
    } else {
      att = causal_attention(q, k, v);
    }
    att = att.transpose(1, 2).reshape({batch, t, e});
    const bool last = l + 1 == cfg_.n_layer;
    const at::Tensor& next_w = last ? ln_f_w_ : blocks_[l + 1].ln_1_w;
    const at::Tensor& next_b = last ? ln_f_b_ : blocks_[l + 1].ln_1_b;
    if (fused) {
      // ops::linear: a decode step's skinny products as one weight-streaming kernel each.
      at::Tensor m = ops::bias_residual_layernorm(x, ops::linear(att, blk.c_proj_w, {}),
                                                  blk.c_proj_b, blk.ln_2_w, blk.ln_2_b, eps);
      const at::Tensor f = ops::linear(m, blk.fc_w, blk.fc_b, /*gelu=*/true);
      a = ops::bias_residual_layernorm(x, ops::linear(f, blk.mlp_proj_w, {}), blk.mlp_proj_b,
                                       next_w, next_b, eps);
    } else {
      x = x + at::linear(att, blk.c_proj_w, blk.c_proj_b);
      at::Tensor m = layer_norm(x, blk.ln_2_w, blk.ln_2_b, eps);
      m = at::gelu(at::linear(m, blk.fc_w, blk.fc_b), "tanh");
      x = x + at::linear(m, blk.mlp_proj_w, blk.mlp_proj_b);
      a = layer_norm(x, next_w, next_b, eps);
    }
  }
  return a;
}

at::Tensor GPT2::forward(const at::Tensor& ids, int64_t past, KVCache* cache) const {
  c10::InferenceMode guard;
  return at::linear(hidden(ids, {past}, {}, cache), lm_head_);
}

at::Tensor GPT2::decode_logits(const at::Tensor& ids, const at::Tensor& pos, KVCache* cache) const {
  c10::InferenceMode guard;
  // The same kernels as hidden() at past = pos, the position read from device memory: the
  // eager and the graph step agree bit for bit.
  std::pair<at::Tensor, at::Tensor> embedded;
  if (fused()) {
    embedded = ops::embed_layernorm(wte_, wpe_, ids, pos, blocks_[0].ln_1_w, blocks_[0].ln_1_b,
                                    cfg_.layer_norm_epsilon);
  } else {
    embedded.first = at::embedding(wte_, ids) + at::embedding(wpe_, pos).unsqueeze(0);
    embedded.second =
        layer_norm(embedded.first, blocks_[0].ln_1_w, blocks_[0].ln_1_b, cfg_.layer_norm_epsilon);
  }
  const at::Tensor x = blocks(std::move(embedded), {}, cache);
  return ops::linear(x.select(1, 0), lm_head_, {});
}

at::Tensor GPT2::forward_last(const at::Tensor& ids, int64_t past, KVCache* cache) const {
  c10::InferenceMode guard;
  at::Tensor x = hidden(ids, {past}, {}, cache);
  // ops::linear is at::linear off CUDA; on CUDA the kernel decode_logits uses (bit-equal steps).
  return fused() ? ops::linear(x.select(1, x.size(1) - 1), lm_head_, {})
                 : at::linear(x.select(1, x.size(1) - 1), lm_head_);
}

at::Tensor GPT2::forward_last(const at::Tensor& ids, const std::vector<int64_t>& past,
                              const std::vector<int64_t>& lens, KVCache* cache,
                              const std::vector<int64_t>& seqs) const {
  c10::InferenceMode guard;
  ELI_CHECK(ids.dim() == 2 && static_cast<int64_t>(past.size()) == ids.size(0) &&
                static_cast<int64_t>(lens.size()) == ids.size(0),
            "forward_last: ids [B, T] with B past lengths and B row lengths, got {}-D ids, {} and "
            "{}",
            ids.dim(), past.size(), lens.size());
  at::Tensor x = hidden(ids, past, lens, cache, seqs);
  std::vector<int64_t> last(lens.size());
  for (size_t b = 0; b < lens.size(); ++b) last[b] = std::max<int64_t>(lens[b] - 1, 0);
  for (size_t b = 0; b < last.size(); ++b) last[b] += static_cast<int64_t>(b) * x.size(1);
  x = x.reshape({-1, x.size(2)}).index_select(0, at::tensor(last, at::kLong).to(device_));
  return fused() ? ops::linear(x.contiguous(), lm_head_, {}) : at::linear(x, lm_head_);
}

int64_t GPT2::num_parameters() const {
  int64_t n = wte_.numel() + wpe_.numel() + ln_f_w_.numel() + ln_f_b_.numel();
  if (!tied_) n += lm_head_.numel();
  for (const auto& b : blocks_) {
    for (const auto* t : {&b.ln_1_w, &b.ln_1_b, &b.c_attn_w, &b.c_attn_b, &b.c_proj_w, &b.c_proj_b,
                          &b.ln_2_w, &b.ln_2_b, &b.fc_w, &b.fc_b, &b.mlp_proj_w, &b.mlp_proj_b}) {
      n += t->numel();
    }
  }
  return n;
}

int64_t GPT2::weight_bytes() const {
  return num_parameters() * static_cast<int64_t>(c10::elementSize(dtype_));
}

GPT2 GPT2::random(const GPT2Config& cfg, uint64_t seed, at::Device device, at::ScalarType dtype) {
  cfg.validate();
  c10::InferenceMode guard;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  auto normal = [&](std::vector<int64_t> shape, double std) {
    return at::empty(shape, opts).normal_(0.0, std, gen).to(device, dtype);
  };
  auto zeros = [&](int64_t n) { return at::zeros({n}, opts.device(device).dtype(dtype)); };
  auto ones = [&](int64_t n) { return at::ones({n}, opts.device(device).dtype(dtype)); };
  const int64_t e = cfg.n_embd, inner = cfg.inner();
  const double proj_std = 0.02 / std::sqrt(2.0 * static_cast<double>(cfg.n_layer));
  GPT2 m;
  m.cfg_ = cfg;
  m.device_ = device;
  m.dtype_ = dtype;
  m.wte_ = normal({cfg.vocab_size, e}, 0.02);
  m.wpe_ = normal({cfg.n_positions, e}, 0.01);
  for (int64_t l = 0; l < cfg.n_layer; ++l) {
    Block b;
    b.ln_1_w = ones(e), b.ln_1_b = zeros(e);
    b.c_attn_w = normal({3 * e, e}, 0.02), b.c_attn_b = zeros(3 * e);
    b.c_proj_w = normal({e, e}, proj_std), b.c_proj_b = zeros(e);
    b.ln_2_w = ones(e), b.ln_2_b = zeros(e);
    b.fc_w = normal({inner, e}, 0.02), b.fc_b = zeros(inner);
    b.mlp_proj_w = normal({e, inner}, proj_std), b.mlp_proj_b = zeros(e);
    m.blocks_.push_back(std::move(b));
  }
  m.ln_f_w_ = ones(e), m.ln_f_b_ = zeros(e);
  m.lm_head_ = m.wte_;
  m.tied_ = true;
  return m;
}

GPT2 GPT2::load(const std::string& dir, at::Device device, at::ScalarType dtype,
                const LoadOptions& options) {
  const GPT2Config cfg = GPT2Config::from_json_file(dir + "/config.json");
  const std::string path = dir + "/model.safetensors";
  const auto file = safetensors::File::open(path);
  c10::InferenceMode guard;

  // HF checkpoints name tensors with or without the "transformer." prefix.
  std::map<std::string, std::string> by_name;  // canonical name -> stored name
  for (const auto& stored : file.names()) {
    std::string n = stored;
    if (n.rfind("transformer.", 0) == 0) n = n.substr(12);
    auto ends_with = [&](const char* suffix) {
      const std::string sfx(suffix);
      return n.size() >= sfx.size() && n.compare(n.size() - sfx.size(), sfx.size(), sfx) == 0;
    };
    if (ends_with(".attn.bias") || ends_with(".attn.masked_bias")) continue;  // mask buffers
    ELI_CHECK(by_name.emplace(n, stored).second,
              "{}: tensor '{}' appears twice (with and without "
              "the 'transformer.' prefix)",
              path, n);
  }
  std::set<std::string> used;
  auto take = [&](const std::string& name, std::vector<int64_t> shape) {
    auto it = by_name.find(name);
    ELI_CHECK(it != by_name.end(), "{}: missing tensor '{}'", path, name);
    const auto& info = file.info(it->second);
    ELI_CHECK(info.shape == shape, "{}: tensor '{}' has shape [{}], config.json implies [{}]", path,
              it->second, fmt::join(info.shape, ", "), fmt::join(shape, ", "));
    ELI_CHECK(info.dtype == safetensors::DType::kF32 || info.dtype == safetensors::DType::kF16 ||
                  info.dtype == safetensors::DType::kBF16 || info.dtype == safetensors::DType::kF64,
              "{}: tensor '{}' has dtype {}, expected a floating-point type", path, it->second,
              safetensors::dtype_name(info.dtype));
    used.insert(name);
    at::Tensor t = file.tensor(it->second).to(device, dtype).contiguous();
    if (!options.allow_non_finite) {
      const int64_t bad = t.numel() - at::isfinite(t).sum().item<int64_t>();
      ELI_CHECK(bad == 0,
                "{}: tensor '{}' has {} non-finite values (NaN or Inf as stored, or beyond the "
                "range of {}); LoadOptions::allow_non_finite loads it anyway",
                path, it->second, bad, c10::toString(dtype));
    }
    return t;
  };
  // Conv1D stores [in, out]; at::linear wants [out, in].
  auto take_conv1d = [&](const std::string& name, int64_t in, int64_t out) {
    return take(name, {in, out}).t().contiguous();
  };
  const int64_t e = cfg.n_embd, inner = cfg.inner();
  GPT2 m;
  m.cfg_ = cfg;
  m.device_ = device;
  m.dtype_ = dtype;
  m.wte_ = take("wte.weight", {cfg.vocab_size, e});
  m.wpe_ = take("wpe.weight", {cfg.n_positions, e});
  for (int64_t l = 0; l < cfg.n_layer; ++l) {
    const std::string p = fmt::format("h.{}.", l);
    Block b;
    b.ln_1_w = take(p + "ln_1.weight", {e}), b.ln_1_b = take(p + "ln_1.bias", {e});
    b.c_attn_w = take_conv1d(p + "attn.c_attn.weight", e, 3 * e);
    b.c_attn_b = take(p + "attn.c_attn.bias", {3 * e});
    b.c_proj_w = take_conv1d(p + "attn.c_proj.weight", e, e);
    b.c_proj_b = take(p + "attn.c_proj.bias", {e});
    b.ln_2_w = take(p + "ln_2.weight", {e}), b.ln_2_b = take(p + "ln_2.bias", {e});
    b.fc_w = take_conv1d(p + "mlp.c_fc.weight", e, inner);
    b.fc_b = take(p + "mlp.c_fc.bias", {inner});
    b.mlp_proj_w = take_conv1d(p + "mlp.c_proj.weight", inner, e);
    b.mlp_proj_b = take(p + "mlp.c_proj.bias", {e});
    m.blocks_.push_back(std::move(b));
  }
  m.ln_f_w_ = take("ln_f.weight", {e});
  m.ln_f_b_ = take("ln_f.bias", {e});
  if (by_name.count("lm_head.weight")) {
    m.lm_head_ = take("lm_head.weight", {cfg.vocab_size, e});
    m.tied_ = false;
  } else {
    m.lm_head_ = m.wte_;
    m.tied_ = true;
  }
  for (const auto& [name, stored] : by_name) {
    ELI_CHECK(used.count(name), "{}: unexpected tensor '{}' (not part of GPT-2 with n_layer = {})",
              path, stored, cfg.n_layer);
  }
  return m;
}

}  // namespace eli::model
