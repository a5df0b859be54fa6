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

namespace {
/// An attribute of the current device, cached per thread and device (the query is cheap but not
/// free per decode step); `fallback` where a query fails (its error cleared).
template <cudaDeviceAttr kAttr>
int current_device_attribute(int fallback) {
  thread_local int cached_dev = -1, cached_v = 0;
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return fallback;
  }
  if (dev != cached_dev) {
    int v = 0;
    if (cudaDeviceGetAttribute(&v, kAttr, dev) != cudaSuccess || v <= 0) {
      (void)cudaGetLastError();
      v = fallback;
    }
    cached_dev = dev;
    cached_v = v;
  }
  return cached_v;
}
}  // namespace

int device_sm_count() { return current_device_attribute<cudaDevAttrMultiProcessorCount>(132); }

int device_smem_per_sm() {
  return current_device_attribute<cudaDevAttrMaxSharedMemoryPerMultiprocessor>(0);
}

bool programmatic_launch_enabled() {
  static const bool env_off = [] {
    const char* v = std::getenv("ELI_PDL");
    return v != nullptr && std::strcmp(v, "0") == 0;
  }();
  return !env_off && current_device_attribute<cudaDevAttrComputeCapabilityMajor>(0) >= 9;
}

}  // namespace eli::cuda
