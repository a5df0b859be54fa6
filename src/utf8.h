#pragma once
// UTF-8 well-formedness as the Unicode standard defines it (Table 3-7): no overlong forms, no
// surrogates, nothing above U+10FFFF. Shared by the tokenizer and the safetensors reader.

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace eli::utf8 {

// Length of the well-formed character starting at s[i], or 0 when the bytes there do not
// start one. If `incomplete` is given, it is set when s[i..] is a proper prefix of some
// well-formed character that the end of `s` cut short (more bytes could still complete it).
inline size_t char_len(std::string_view s, size_t i, bool* incomplete = nullptr) {
  if (incomplete) *incomplete = false;
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) return 1;
  size_t need;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;  // continuation byte, C0, C1 or F5..FF: never starts a character
  }
  for (size_t k = 1; k < need; ++k) {
    if (i + k >= s.size()) {
      if (incomplete) *incomplete = true;
      return 0;
    }
    const auto b = static_cast<uint8_t>(s[i + k]);
    const uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) return 0;
  }
  return need;
}

// Offset of the first byte that is not part of a well-formed character, or s.size().
inline size_t valid_prefix(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const size_t n = char_len(s, i);
    if (n == 0) return i;
    i += n;
  }
  return i;
}

inline bool is_valid(std::string_view s) { return valid_prefix(s) == s.size(); }

}  // namespace eli::utf8
