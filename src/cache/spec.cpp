#include "cache/spec.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <vector>

#include "eli/error.h"
#include "eli/kv_cache.h"

namespace eli::cache {
namespace {

std::string codec_help() {
  std::string custom = custom_codec_list();
  return "fp, int8[/opts], int4[/opts], mixed, cfg, " + (custom.empty() ? "" : custom + ", ") +
         "k:CODEC,v:CODEC; opts: per_tensor, per_token_head, group, group32, group64, zp, sym; "
         "options: rotate, residual=N";
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  int depth = 0;
  for (char c : s) {
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (c == sep && depth == 0) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

int to_int(const std::string& key, const std::string& value, const std::string& spec) {
  size_t used = 0;
  int v = 0;
  try {
    v = std::stoi(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  ELI_CHECK(used == value.size() && !value.empty(), "cache spec '{}': {}={} is not an integer",
            spec, key, value);
  return v;
}

LayoutInfo canonical_layout(const std::string& name, const std::string& spec) {
  if (auto info = find_layout(name)) return *info;
  std::string methods;
  for (const auto& m : method_names()) methods += (methods.empty() ? "" : ", ") + m;
  for (const auto& m : registered_methods()) methods += ", " + m;
  ELI_FAIL(
      "unknown cache method or layout '{}' in '{}' (methods: {}; layouts: {}; see "
      "docs/CACHES.md)",
      name, spec, methods, layout_list());
}

void apply_param(CacheSpec& s, const LayoutInfo& layout, const std::string& kv,
                 const std::string& spec) {
  auto eq = kv.find('=');
  ELI_CHECK(eq != std::string::npos, "cache spec '{}': layout parameter '{}' is not key=value",
            spec, kv);
  const std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
  const int v = to_int(key, value, spec);
  if (key == "max") {
    s.cfg.max_tokens = v;
  } else if (!is_builtin_layout(s.layout)) {
    std::string valid = "max";
    for (const auto& p : layout.params) valid += ", " + p;
    ELI_CHECK(std::find(layout.params.begin(), layout.params.end(), key) != layout.params.end(),
              "cache spec '{}': unknown parameter '{}' for layout {} (valid: {})", spec, key,
              s.layout, valid);
    s.params[key] = v;
  } else if (s.layout == "sliding" && key == "window") {
    s.cfg.window_size = v;
  } else if (s.layout == "sliding" && key == "sinks") {
    s.cfg.sink_tokens = v;
  } else if (s.layout == "paged" && key == "block") {
    s.cfg.block_size = v;
  } else if (s.layout == "paged" && key == "pool") {
    s.cfg.pool_blocks = v;
  } else if (s.layout == "chunked" && key == "chunk") {
    s.cfg.chunk_size = v;
  } else if (s.layout == "chunked" && key == "keep") {
    s.cfg.keep_last = v;
  } else if (s.layout == "chunked" && key == "bias") {
    s.cfg.summary_log_bias = v != 0;
  } else {
    ELI_FAIL(
        "cache spec '{}': unknown parameter '{}' for layout {} (valid: max; sliding: window, "
        "sinks; paged: block, pool; chunked: chunk, keep, bias)",
        spec, key, s.layout);
  }
}

CodecChoice parse_codec(const std::string& text, const QuantizationConfig& q,
                        const std::string& spec) {
  auto parts = split(text, '/');
  CodecChoice c;
  c.group_size = q.group_size;
  c.zero_point = q.zero_point;
  const std::string& mode = parts[0];
  if (mode != "fp" && mode != "int8" && mode != "int4" && find_codec(mode)) {
    ELI_CHECK(parts.size() == 1, "cache spec '{}': codec '{}' takes no options", spec, mode);
    c.custom = mode;
    c.zero_point = false;
    return c;
  }
  if (mode == "fp" || mode == "fp16" || mode == "fp32" || mode == "none") {
    ELI_CHECK(parts.size() == 1, "cache spec '{}': '{}' takes no options", spec, text);
    c.zero_point = false;
    return c;
  }
  if (mode == "int8") {
    c.mode = QuantMode::kInt8;
    c.granularity = Granularity::kPerTokenHead;
  } else if (mode == "int4") {
    c.mode = QuantMode::kInt4;
    c.granularity = Granularity::kGroup;
  } else if (mode == "cfg") {
    c.mode = q.mode;
    c.granularity = q.granularity;
  } else {
    ELI_FAIL("cache spec '{}': unknown codec '{}' (valid: {})", spec, text, codec_help());
  }
  bool explicit_zp = false;
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string& o = parts[i];
    if (o == "per_tensor") {
      c.granularity = Granularity::kPerTensor;
    } else if (o == "per_token_head" || o == "per_token") {
      c.granularity = Granularity::kPerTokenHead;
    } else if (o == "group") {
      c.granularity = Granularity::kGroup;
    } else if (o == "group32" || o == "group64") {
      c.granularity = Granularity::kGroup;
      c.group_size = o == "group32" ? 32 : 64;
    } else if (o == "zp") {
      c.zero_point = explicit_zp = true;
    } else if (o == "sym") {
      c.zero_point = false;
    } else {
      ELI_FAIL("cache spec '{}': unknown codec option '{}' (valid: {})", spec, o, codec_help());
    }
  }
  if (c.granularity == Granularity::kPerTensor) {
    ELI_CHECK(!explicit_zp, "cache spec '{}': per_tensor is symmetric only", spec);
    c.zero_point = false;
  }
  return c;
}

}  // namespace

std::string CodecChoice::token() const {
  if (!custom.empty()) return custom;
  switch (mode) {
    case QuantMode::kNone:
      return "fp";
    case QuantMode::kInt8:
      return "int8";
    case QuantMode::kInt4:
      return "int4";
  }
  return "fp";
}

CacheSpec parse_cache_spec(const std::string& method, const CacheConfig& cfg,
                           const QuantizationConfig& quant) {
  ELI_CHECK(method != "no_cache",
            "'no_cache' is not a cache: the generator recomputes the sequence instead");
  ELI_CHECK(!method.empty(), "empty cache method");
  // The eight method names are shorthands for specs.
  static const std::map<std::string, std::string> presets{
      {"quant_int8", "full+int8/per_token_head"},
      {"quant_int4", "full+int4/group"},
      {"quant_mixed", "full+mixed"}};
  std::string text = method;
  if (auto it = presets.find(method); it != presets.end()) {
    text = it->second;
  } else if (auto registered = find_method(method)) {
    text = *registered;
  }

  auto tokens = split(text, '+');
  CacheSpec s;
  s.cfg = cfg;
  s.residual_tokens = quant.residual_tokens;
  s.rotate = quant.rotate;

  std::string head = tokens[0], params;
  if (auto open = head.find('('); open != std::string::npos) {
    ELI_CHECK(head.back() == ')', "cache spec '{}': unbalanced '(' in '{}'", method, head);
    params = head.substr(open + 1, head.size() - open - 2);
    head = head.substr(0, open);
  }
  const LayoutInfo layout = canonical_layout(head, method);
  s.layout = layout.name;
  if (!params.empty()) {
    for (const auto& kv : split(params, ',')) apply_param(s, layout, kv, method);
  }

  bool codec_set = false;
  for (size_t i = 1; i < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    if (t == "rotate" || t == "hadamard") {
      s.rotate = true;
    } else if (t.rfind("residual=", 0) == 0) {
      s.residual_tokens = to_int("residual", t.substr(9), method);
    } else {
      ELI_CHECK(!codec_set, "cache spec '{}': more than one codec ('{}')", method, t);
      codec_set = true;
      if (t == "mixed") {
        s.k = parse_codec("int8/per_token_head", quant, method);
        s.v = parse_codec("int4/group", quant, method);
      } else if (t.rfind("k:", 0) == 0 || t.rfind("v:", 0) == 0) {
        for (const auto& side : split(t, ',')) {
          ELI_CHECK(side.size() > 2 && side[1] == ':' && (side[0] == 'k' || side[0] == 'v'),
                    "cache spec '{}': '{}' should read k:CODEC,v:CODEC", method, t);
          (side[0] == 'k' ? s.k : s.v) = parse_codec(side.substr(2), quant, method);
        }
      } else {
        s.k = s.v = parse_codec(t, quant, method);
      }
    }
  }
  s.cfg.validate();
  ELI_CHECK(s.residual_tokens >= 0, "cache spec '{}': residual must be >= 0", method);
  return s;
}

}  // namespace eli::cache
