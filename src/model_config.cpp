#include "eli/model_config.h"

#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "eli/error.h"
#include "json_excerpt.h"

namespace eli {

void GPT2Config::validate() const {
  // Upper bounds far above any GPT-2 (vocab 50257, 1024 positions, 48 layers, n_embd 1600) and
  // low enough that sizes such as 4 * n_embd or vocab * n_embd cannot overflow int64 or int32
  // kernel arguments.
  constexpr int64_t kMaxVocab = int64_t{1} << 24, kMaxPositions = int64_t{1} << 20;
  constexpr int64_t kMaxLayers = 1024, kMaxHeads = 1024, kMaxEmbd = int64_t{1} << 16;
  ELI_CHECK(vocab_size >= 1 && vocab_size <= kMaxVocab,
            "GPT2Config.vocab_size = {} must be in [1, {}]", vocab_size, kMaxVocab);
  ELI_CHECK(n_positions >= 1 && n_positions <= kMaxPositions,
            "GPT2Config.n_positions = {} must be in [1, {}]", n_positions, kMaxPositions);
  ELI_CHECK(n_layer >= 1 && n_layer <= kMaxLayers, "GPT2Config.n_layer = {} must be in [1, {}]",
            n_layer, kMaxLayers);
  ELI_CHECK(n_head >= 1 && n_head <= kMaxHeads, "GPT2Config.n_head = {} must be in [1, {}]", n_head,
            kMaxHeads);
  ELI_CHECK(n_embd >= 1 && n_embd <= kMaxEmbd && n_embd % n_head == 0,
            "GPT2Config.n_embd = {} must be a multiple of n_head = {} in [1, {}]", n_embd, n_head,
            kMaxEmbd);
  ELI_CHECK(head_dim() % 2 == 0, "GPT2Config head_dim = n_embd / n_head = {} must be even",
            head_dim());
  ELI_CHECK(n_inner >= 0 && n_inner <= 4 * kMaxEmbd,
            "GPT2Config.n_inner = {} must be in [0, {}] (0 = 4 * n_embd)", n_inner, 4 * kMaxEmbd);
  ELI_CHECK(layer_norm_epsilon > 0 && layer_norm_epsilon < 1,
            "GPT2Config.layer_norm_epsilon = {} must be in (0, 1)", layer_norm_epsilon);
}

namespace {

int64_t get_int(const nlohmann::json& j, const char* key, int64_t fallback,
                const std::string& origin) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  ELI_CHECK(j[key].is_number_integer(), "{}: '{}' must be an integer, got {}", origin, key,
            ::eli::detail::json_excerpt(j[key]));
  // Above 2^63 - 1 nlohmann holds an unsigned value that get<int64_t> would wrap.
  ELI_CHECK(
      !j[key].is_number_unsigned() || j[key].get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX),
      "{}: '{}' = {} is out of range", origin, key, j[key].get<uint64_t>());
  return j[key].get<int64_t>();
}

}  // namespace

GPT2Config GPT2Config::from_json_string(const std::string& text, const std::string& origin) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    ELI_FAIL("{}: config.json is not valid JSON: {}", origin, e.what());
  }
  ELI_CHECK(j.is_object(), "{}: config.json must be a JSON object", origin);
  if (j.contains("model_type")) {
    ELI_CHECK(j["model_type"] == "gpt2", "{}: model_type {} is not supported (only gpt2)", origin,
              ::eli::detail::json_excerpt(j["model_type"]));
  }
  if (j.contains("activation_function")) {
    ELI_CHECK(j["activation_function"].is_string(),
              "{}: activation_function must be a string, got {}", origin,
              ::eli::detail::json_excerpt(j["activation_function"]));
    const auto act = j["activation_function"].get<std::string>();
    ELI_CHECK(act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "gelu_fast",
              "{}: activation_function '{}' is not supported (GPT-2 uses gelu_new)", origin, act);
  }
  for (const char* flag : {"scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"}) {
    if (j.contains(flag) && j[flag].is_boolean()) {
      ELI_CHECK(!j[flag].get<bool>(), "{}: '{}' = true is not supported", origin, flag);
    }
  }
  if (j.contains("scale_attn_weights") && j["scale_attn_weights"].is_boolean()) {
    ELI_CHECK(j["scale_attn_weights"].get<bool>(),
              "{}: scale_attn_weights = false is not supported", origin);
  }
  GPT2Config c;
  c.vocab_size = get_int(j, "vocab_size", c.vocab_size, origin);
  c.n_positions = get_int(j, "n_positions", get_int(j, "n_ctx", c.n_positions, origin), origin);
  c.n_embd = get_int(j, "n_embd", c.n_embd, origin);
  c.n_layer = get_int(j, "n_layer", c.n_layer, origin);
  c.n_head = get_int(j, "n_head", c.n_head, origin);
  c.n_inner = get_int(j, "n_inner", 0, origin);
  if (j.contains("eos_token_id") && j["eos_token_id"].is_number_integer()) {
    c.eos_token_id = j["eos_token_id"].get<int64_t>();
  }
  if (j.contains("layer_norm_epsilon")) {
    ELI_CHECK(j["layer_norm_epsilon"].is_number(), "{}: layer_norm_epsilon must be a number",
              origin);
    c.layer_norm_epsilon = j["layer_norm_epsilon"].get<double>();
  }
  try {
    c.validate();
  } catch (const Error& e) {
    ELI_FAIL("{}: {}", origin, e.what());
  }
  return c;
}

GPT2Config GPT2Config::from_json_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  ELI_CHECK(f.good(), "cannot open config file '{}'", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return from_json_string(ss.str(), path);
}

GPT2Config GPT2Config::named(const std::string& name) {
  GPT2Config c;
  if (name == "gpt2") return c;
  if (name == "gpt2-medium") {
    c.n_layer = 24, c.n_embd = 1024, c.n_head = 16;
    return c;
  }
  if (name == "gpt2-large") {
    c.n_layer = 36, c.n_embd = 1280, c.n_head = 20;
    return c;
  }
  if (name == "gpt2-xl") {
    c.n_layer = 48, c.n_embd = 1600, c.n_head = 25;
    return c;
  }
  if (name == "tiny") return named("L2-E64-H2-V1000-P256");
  static const std::regex re(R"(L(\d+)-E(\d+)-H(\d+)(?:-V(\d+))?(?:-P(\d+))?)");
  std::smatch m;
  ELI_CHECK(std::regex_match(name, m, re),
            "unknown model shape '{}' (valid: gpt2, gpt2-medium, gpt2-large, gpt2-xl, tiny, or "
            "L<layers>-E<embd>-H<heads>[-V<vocab>][-P<positions>])",
            name);
  try {
    c.n_layer = std::stoll(m[1]);
    c.n_embd = std::stoll(m[2]);
    c.n_head = std::stoll(m[3]);
    if (m[4].matched) c.vocab_size = std::stoll(m[4]);
    if (m[5].matched) c.n_positions = std::stoll(m[5]);
  } catch (const std::exception&) {
    ELI_FAIL("model shape '{}': a number is out of range", name);
  }
  ELI_CHECK(c.vocab_size > 0, "model shape '{}': vocab must be >= 1", name);
  c.eos_token_id = c.vocab_size - 1;
  c.validate();
  return c;
}

}  // namespace eli
