// libFuzzer target: arbitrary text as config.json. Either an eli::Error, or a config that
// validates (every accepted value inside its documented range).
#include <cstddef>
#include <cstdint>
#include <string>

#include "eli/error.h"
#include "eli/model_config.h"
#include "fuzz_options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto c = eli::GPT2Config::from_json_string(
        std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    c.validate();  // must not throw: from_json_string returned it
  } catch (const eli::Error&) {
  }
  return 0;
}
