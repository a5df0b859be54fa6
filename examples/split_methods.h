#pragma once
// --methods values of the example binaries: a list of method names and specs.

#include <string>
#include <vector>

namespace examples {

// "a,b(x=1,y=2);c,paged+k:int8,v:int4" -> {"a", "b(x=1,y=2)", "c", "paged+k:int8,v:int4"}:
// methods separated by commas or semicolons; a comma inside parentheses belongs to the spec,
// and so does the one before the `v:` of a `k:...,v:...` codec pair.
inline std::vector<std::string> split_methods(const std::string& methods) {
  std::vector<std::string> specs;
  std::string cur;
  int depth = 0;
  auto push = [&] {
    if (cur.rfind("v:", 0) == 0 && !specs.empty() && specs.back().find("k:") != std::string::npos &&
        specs.back().find(",v:") == std::string::npos) {
      specs.back() += "," + cur;
    } else if (!cur.empty()) {
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

// Whether `methods` (non-empty) has an empty item: two separators in a row, or one at either
// end ("a,,b", ",a", "a;"). split_methods drops such items; the tools refuse them instead, so a
// typo in a list is not silently a shorter list.
inline bool has_empty_method(const std::string& methods) {
  if (methods.empty()) return false;
  int depth = 0;
  size_t len = 0;  // characters of the current item
  for (char c : methods) {
    depth += (c == '(') - (c == ')');
    if ((c == ',' || c == ';') && depth == 0) {
      if (len == 0) return true;
      len = 0;
    } else {
      ++len;
    }
  }
  return len == 0;
}

}  // namespace examples
