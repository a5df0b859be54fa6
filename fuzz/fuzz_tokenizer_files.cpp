// libFuzzer target: arbitrary vocab.json + merges.txt (the input split at its first NUL byte).
// Either an eli::Error, or a tokenizer that encodes a fixed text and decodes what it encoded.
#include <cstddef>
#include <cstdint>
#include <string>

#include "eli/error.h"
#include "eli/tokenizer.h"
#include "fuzz_options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string in(reinterpret_cast<const char*>(data), size);
  const size_t cut = in.find('\0');
  const std::string vocab = in.substr(0, cut);
  const std::string merges = cut == std::string::npos ? "" : in.substr(cut + 1);
  try {
    const auto tok = eli::Tokenizer::from_strings(vocab, merges, "fuzz");
    const std::string text = "Hello world, 123!";
    std::vector<int64_t> ids;
    try {
      ids = tok.encode(text);
    } catch (const eli::Error&) {
      return 0;  // a vocabulary without every byte cannot encode everything: an error is fine
    }
    if (tok.decode(ids) != text) __builtin_trap();
  } catch (const eli::Error&) {
  }
  return 0;
}
