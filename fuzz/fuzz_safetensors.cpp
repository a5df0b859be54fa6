// libFuzzer target: arbitrary bytes as a safetensors file. Either the reader refuses them with
// eli::Error, or every tensor it lists can be read back with the shape and dtype it reported.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "eli/error.h"
#include "eli/safetensors.h"
#include "fuzz_options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto f =
        eli::safetensors::File::from_bytes(std::vector<uint8_t>(data, data + size), "fuzz");
    for (const auto& name : f.names()) {
      const auto& info = f.info(name);
      const at::Tensor t = f.tensor(name);
      if (t.sizes().vec() != info.shape) __builtin_trap();
    }
  } catch (const eli::Error&) {
  }
  return 0;
}
