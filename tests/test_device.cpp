// Device names: `resolve_device` accepts auto / cpu / cuda / cuda:N and refuses anything else
// with an eli::Error that names the value; asking for CUDA where there is none (a CPU-only
// build, or no GPU) says so instead of failing later inside LibTorch.

#include <gtest/gtest.h>

#include <string>

#include "eli/error.h"
#include "eli/model.h"

namespace eli {
namespace {

using model::resolve_device;

std::string message_of(const std::string& spec) {
  try {
    resolve_device(spec);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Device, NamesResolve) {
  EXPECT_EQ(resolve_device("cpu"), at::Device(at::kCPU));
  const at::Device a = resolve_device("auto");
  EXPECT_EQ(a.is_cuda(), at::hasCUDA());
}

TEST(Device, UnknownNamesAreErrors) {
  for (const std::string spec : {"gpu", "", "CPU", "cuda:x", "cuda:-1", "tpu:0"}) {
    if (at::hasCUDA() && spec.rfind("cuda", 0) == 0) continue;  // parsed by LibTorch there
    const std::string msg = message_of(spec);
    EXPECT_NE(msg.find("device '" + spec + "'"), std::string::npos) << spec << ": " << msg;
  }
}

TEST(Device, CudaWithoutCudaSaysSo) {
  if (at::hasCUDA()) GTEST_SKIP() << "this machine has CUDA";
  for (const std::string spec : {"cuda", "cuda:0", "cuda:3"}) {
    const std::string msg = message_of(spec);
    EXPECT_NE(msg.find("no CUDA"), std::string::npos) << spec << ": " << msg;
  }
  // The library still works for the next call.
  EXPECT_EQ(resolve_device("cpu"), at::Device(at::kCPU));
}

}  // namespace
}  // namespace eli
