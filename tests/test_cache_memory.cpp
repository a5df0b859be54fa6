// A cache whose storage does not fit: make_cache allocates up front, so running out of memory
// is an eli::Error naming the request (method, device, batch x tokens, shape), nothing of the
// cache stays allocated, and the next call works. CPU here; tests/gpu/test_cache_oom.cpp
// does the same on a GPU.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "eli/error.h"
#include "eli/kv_cache.h"

#if defined(__SANITIZE_ADDRESS__)
#define ELI_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ELI_UNDER_ASAN 1
#endif
#endif

namespace eli {
namespace {

TEST(CacheMemory, OutOfMemoryIsAnErrorAndTheNextCallWorks) {
#ifdef ELI_UNDER_ASAN
  GTEST_SKIP() << "AddressSanitizer aborts on allocations this large instead of failing them";
#else
  // 2^36 positions x 64 x 4 bytes x (K + V) = 32 TiB for one layer and head, past any machine.
  const ModelShape huge{1, 1, 64, int64_t(1) << 36};
  for (const std::string method : {"full_cache", "quant_int8"}) {
    try {
      make_cache(method, huge, 1, CacheConfig{}, QuantizationConfig{}, at::kFloat, at::kCPU);
      ADD_FAILURE() << method << ": a 32 TiB cache was allocated";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("out of memory"), std::string::npos) << msg;
      EXPECT_NE(msg.find("make_cache '" + method + "'"), std::string::npos) << msg;
      EXPECT_NE(msg.find(std::to_string(int64_t(1) << 36) + " tokens"), std::string::npos) << msg;
    }
    const auto small = make_cache(method, ModelShape{2, 2, 64, 32}, 1, CacheConfig{},
                                  QuantizationConfig{}, at::kFloat, at::kCPU);
    ASSERT_NE(small, nullptr);
    const at::Tensor kv = at::randn({1, 2, 3, 64});
    small->append(0, kv, kv);
    const at::Tensor out = small->attend(0, at::randn({1, 2, 3, 64}));
    EXPECT_EQ(out.sizes(), (std::vector<int64_t>{1, 2, 3, 64})) << method;
    EXPECT_TRUE(at::isfinite(out).all().item<bool>()) << method;
  }
#endif
}

}  // namespace
}  // namespace eli
