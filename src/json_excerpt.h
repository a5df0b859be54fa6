#pragma once
// A JSON value as error messages quote it: scalars as written (strings cut to a bounded
// prefix), arrays and objects by their size only. dump() of a value nested 100k levels deep
// recurses once per level and overflows the stack; this never recurses.

#include <nlohmann/json.hpp>
#include <string>

namespace eli::detail {

inline std::string json_excerpt(const nlohmann::json& v, size_t max_chars = 64) {
  if (v.is_array()) return "an array of " + std::to_string(v.size()) + " elements";
  if (v.is_object()) return "an object of " + std::to_string(v.size()) + " members";
  if (v.is_string()) {
    // Invalid UTF-8 (allowed inside JSON strings by the parser) printed as U+FFFD: dump() would
    // throw on it.
    const auto quote = [](const std::string& s) {
      return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    };
    const auto& s = v.get_ref<const std::string&>();
    if (s.size() <= max_chars) return quote(s);
    return quote(s.substr(0, max_chars)) + " (cut; " + std::to_string(s.size()) + " bytes)";
  }
  return v.dump();  // a number, bool or null: short, no nesting
}

}  // namespace eli::detail
