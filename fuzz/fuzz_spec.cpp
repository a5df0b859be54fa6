// libFuzzer target: arbitrary method specs. Either an eli::Error, or a cache whose name parses
// back into a cache of the same name.
#include <cstddef>
#include <cstdint>
#include <string>

#include "eli/error.h"
#include "eli/kv_cache.h"
#include "fuzz_options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 256) return 0;
  const std::string spec(reinterpret_cast<const char*>(data), size);
  const eli::ModelShape shape{1, 2, 64, 64};
  try {
    const auto c = eli::make_cache(spec, shape, 1, {}, {}, at::kFloat, at::kCPU);
    const auto again = eli::make_cache(c->name(), shape, 1, {}, {}, at::kFloat, at::kCPU);
    if (again->name() != c->name()) __builtin_trap();
  } catch (const eli::Error&) {
  }
  return 0;
}
