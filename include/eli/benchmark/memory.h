#pragma once
/// Memory probes and device facts for the Benchmarker.
///
/// CPU peak: the peak resident set size (RSS) of the process during a measured region.
///  - Preferred ("vmhwm"): write "5" to /proc/self/clear_refs, which resets the kernel's
///    high-water mark VmHWM to the current RSS (Linux >= 4.0); at the end read VmHWM from
///    /proc/self/status. Exact, no sampling.
///  - Fallback ("vmrss_sampled") where clear_refs is not writable (some containers): a thread
///    samples VmRSS every `sample_ms` and keeps the maximum; short spikes between samples are
///    missed, so it is a lower bound.
///  - "unavailable" where /proc/self/status cannot be read (not Linux): NaN.
/// The peak is process-wide (weights, allocator caches and everything else resident), so the
/// reports also give `start_mb` (RSS when the region began) and the delta.
///
/// GPU peak: the CUDA caching allocator's peak allocated bytes (allocated_bytes.all.peak, what
/// torch.cuda.max_memory_allocated reports) for the device, reset at start(). Only with a CUDA
/// build (ELI_WITH_CUDA) and a CUDA device; NaN otherwise.

#include <ATen/ATen.h>

#include <memory>
#include <string>

namespace eli::benchmark {

/// Current VmRSS of this process in MB (2^20 bytes); NaN when /proc/self/status is unreadable.
double current_rss_mb();

struct CpuPeak {
  double peak_mb = 0;   // peak RSS during the region (NaN if unavailable)
  double start_mb = 0;  // RSS at start()
  std::string source;   // "vmhwm" | "vmrss_sampled" | "unavailable"
  double delta_mb() const { return peak_mb - start_mb; }
};

class CpuPeakMeter {
 public:
  explicit CpuPeakMeter(int sample_ms = 2);
  ~CpuPeakMeter();
  CpuPeakMeter(const CpuPeakMeter&) = delete;
  CpuPeakMeter& operator=(const CpuPeakMeter&) = delete;
  void start();
  CpuPeak stop();

 private:
  struct Sampler;  // the fallback's sampling thread (memory.cpp)
  int sample_ms_;
  CpuPeak cur_;
  std::unique_ptr<Sampler> sampler_;
};

class GpuPeakMeter {
 public:
  explicit GpuPeakMeter(at::Device device) : device_(device) {}
  /// Synchronizes the device and resets the allocator's peak statistics.
  void start();
  /// Synchronizes and returns the peak allocated MB since start(); NaN without CUDA.
  double stop_mb();
  /// Whether this build and device give GPU numbers.
  bool available() const;

 private:
  at::Device device_;
};

/// Waits for all work queued on `device` (no-op on the CPU).
void synchronize(at::Device device);
/// "NVIDIA H100 80GB HBM3" for CUDA devices; the CPU model name from /proc/cpuinfo otherwise.
std::string device_name(at::Device device);
/// Whether eli was compiled with CUDA support.
bool built_with_cuda();

}  // namespace eli::benchmark
