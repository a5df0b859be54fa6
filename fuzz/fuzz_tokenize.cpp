// libFuzzer target: arbitrary bytes through the shipped GPT-2 tokenizer. encode never fails on
// any bytes (invalid UTF-8 included), decode(encode(x)) == x, and ids from the input decode
// without failing.
#include <cstddef>
#include <cstdint>
#include <string>

#include "eli/error.h"
#include "eli/model.h"
#include "eli/tokenizer.h"
#include "fuzz_options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const eli::Tokenizer tok =
      eli::Tokenizer::from_dir(eli::model::assets_dir() + "/tokenizer");
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto ids = tok.encode(text);
  if (tok.decode(ids) != text) __builtin_trap();
  std::vector<int64_t> raw;
  for (size_t i = 0; i + 1 < size; i += 2) raw.push_back((data[i] << 8 | data[i + 1]) % 50257);
  (void)tok.decode(raw);
  return 0;
}
