#pragma once
// --methods values of the example binaries: a list of method names and specs.

#include <string>
#include <vector>

namespace examples {

namespace detail {
// The one scan behind split_methods and empty_method_error; *empty_item is set when an item is
// empty (two separators in a row, or one at either end).
inline std::vector<std::string> split_methods(const std::string& methods, bool* empty_item) {
  std::vector<std::string> specs;
  std::string cur;
  int depth = 0;
  auto push = [&] {
    if (cur.empty()) {
      if (empty_item != nullptr) *empty_item = true;
    } else if (cur.rfind("v:", 0) == 0 && !specs.empty() &&
               specs.back().find("k:") != std::string::npos &&
               specs.back().find(",v:") == std::string::npos) {
      specs.back() += "," + cur;
    } else {
      specs.push_back(cur);
    }
    cur.clear();
  };
  for (char c : methods) {
    depth += (c == '(') - (c == ')');
    if ((c == ',' || c == ';') && depth == 0) {
      push();
    } else {
      cur += c;
    }
  }
  push();
  return specs;
}
}  // namespace detail

// "a,b(x=1,y=2);c,paged+k:int8,v:int4" -> {"a", "b(x=1,y=2)", "c", "paged+k:int8,v:int4"}:
// methods separated by commas or semicolons; a comma inside parentheses belongs to the spec,
// and so does the one before the `v:` of a `k:...,v:...` codec pair. Empty items are dropped.
inline std::vector<std::string> split_methods(const std::string& methods) {
  return detail::split_methods(methods, nullptr);
}

// The tools refuse an empty item ("a,,b", ",a", "a;"), so that a typo in a list is not silently
// a shorter list: the message for `methods` (a --methods value), or "" when it has none. An
// empty value is not an empty item (the tools say it names no method).
inline std::string empty_method_error(const std::string& methods) {
  bool empty_item = false;
  detail::split_methods(methods, &empty_item);
  if (methods.empty() || !empty_item) return "";
  return "'" + methods.substr(0, 200) +
         "' has an empty method name (two commas in a row, or one at an end)";
}

}  // namespace examples
