// Host helpers shared by the launchers: error messages and device properties.
#include <cstdlib>
#include <cstring>
#include <string>

#include "common.cuh"

namespace eli::cuda {

namespace {
thread_local std::string g_last_error;
}  // namespace

cudaError_t invalid_argument(const char* what, long long value) {
  g_last_error = std::string("invalid ") + what + ": " + std::to_string(value);
  return cudaErrorInvalidValue;
}

const char* last_error_message() { return g_last_error.c_str(); }

int device_sm_count() {
  // Cached per thread and device: the attribute query is cheap but not free per decode step.
  thread_local int cached_dev = -1, cached_n = 0;
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return 132;
  if (dev != cached_dev) {
    int n = 0;
    if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n <= 0)
      n = 132;
    cached_dev = dev;
    cached_n = n;
  }
  return cached_n;
}

bool programmatic_launch_enabled() {
  static const bool env_off = [] {
    const char* v = std::getenv("ELI_PDL");
    return v != nullptr && std::strcmp(v, "0") == 0;
  }();
  if (env_off) return false;
  thread_local int cached_dev = -1;
  thread_local bool cached_ok = false;
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  if (dev != cached_dev) {
    int major = 0;
    cached_ok =
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
        major >= 9;
    cached_dev = dev;
  }
  return cached_ok;
}

}  // namespace eli::cuda
