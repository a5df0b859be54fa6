// GPU out of memory while a cache is allocated: an eli::Error naming the request, nothing of
// the cache left allocated, and the next cache on the same GPU works (label gpu; skipped
// without a GPU).

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "eli/error.h"
#include "eli/kv_cache.h"
#include "eli/ops.h"

namespace eli {
namespace {

TEST(GpuCacheMemory, OutOfMemoryIsAnErrorAndTheNextCallWorks) {
  if (!at::hasCUDA() || !ops::has_cuda_ops()) GTEST_SKIP() << "no CUDA GPU";
  const at::Device cuda(at::kCUDA, 0);
  // 2^31 positions x 64 x 2 bytes x (K + V) = 512 GiB: more than any GPU holds.
  const ModelShape huge{1, 1, 64, int64_t(1) << 31};
  for (const std::string method : {"full_cache", "quant_int4", "paged_attention"}) {
    try {
      make_cache(method, huge, 1, CacheConfig{}, QuantizationConfig{}, at::kHalf, cuda);
      ADD_FAILURE() << method << ": a 512 GiB cache was allocated";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("out of memory on cuda:0"), std::string::npos) << msg;
      EXPECT_NE(msg.find("make_cache '" + method + "'"), std::string::npos) << msg;
    }
    const auto small = make_cache(method, ModelShape{2, 2, 64, 64}, 1, CacheConfig{},
                                  QuantizationConfig{}, at::kHalf, cuda);
    const at::Tensor kv = at::randn({1, 2, 3, 64}, at::TensorOptions(cuda).dtype(at::kHalf));
    small->append(0, kv, kv);
    const at::Tensor out = small->attend(0, kv);
    EXPECT_EQ(out.sizes(), (std::vector<int64_t>{1, 2, 3, 64})) << method;
    EXPECT_TRUE(at::isfinite(out).all().item<bool>()) << method;
  }
}

}  // namespace
}  // namespace eli
