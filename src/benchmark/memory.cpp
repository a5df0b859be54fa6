#include "eli/benchmark/memory.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <thread>

#ifdef ELI_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace eli::benchmark {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Value of a "Key:   1234 kB" line of /proc/self/status, in MB; NaN if absent.
double status_field_mb(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(key) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    std::istringstream fields(line.substr(prefix.size()));
    double kb = 0;
    if (fields >> kb) return kb / 1024.0;
  }
  return kNaN;
}

bool reset_hwm() {
  std::ofstream out("/proc/self/clear_refs");
  if (!out) return false;
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

}  // namespace

double current_rss_mb() { return status_field_mb("VmRSS"); }

// Samples VmRSS every `ms` from construction until stop(), keeping the maximum.
struct CpuPeakMeter::Sampler {
  std::atomic<bool> running{true};
  std::atomic<double> peak;
  std::thread thread;
  Sampler(double start_mb, int ms) : peak(start_mb) {
    thread = std::thread([this, ms] {
      while (running) {
        const double rss = current_rss_mb();
        if (rss > peak) peak = rss;
        std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      }
    });
  }
  double stop() {
    running = false;
    if (thread.joinable()) thread.join();
    return peak.load();
  }
  ~Sampler() { stop(); }
};

CpuPeakMeter::CpuPeakMeter(int sample_ms) : sample_ms_(sample_ms) {}

CpuPeakMeter::~CpuPeakMeter() = default;

void CpuPeakMeter::start() {
  sampler_.reset();
  cur_ = CpuPeak{};
  cur_.start_mb = current_rss_mb();
  if (std::isnan(cur_.start_mb)) {
    cur_.source = "unavailable";
    return;
  }
  if (reset_hwm() && !std::isnan(status_field_mb("VmHWM"))) {
    // RSS may have shrunk since the read above; the reset HWM starts from the RSS now.
    cur_.start_mb = current_rss_mb();
    cur_.source = "vmhwm";
    return;
  }
  cur_.source = "vmrss_sampled";
  sampler_ = std::make_unique<Sampler>(cur_.start_mb, sample_ms_);
}

CpuPeak CpuPeakMeter::stop() {
  if (cur_.source == "vmhwm") {
    // The kernel's RSS counters are batched per thread (a few hundred KB of slack), so the HWM
    // can read a little below the RSS read at start(); the region's peak is at least that.
    cur_.peak_mb = std::max(status_field_mb("VmHWM"), cur_.start_mb);
  } else if (cur_.source == "vmrss_sampled" && sampler_) {
    const double peak = sampler_->stop();
    sampler_.reset();
    cur_.peak_mb = std::max(peak, current_rss_mb());
  } else {
    cur_.peak_mb = kNaN;
  }
  return cur_;
}

bool built_with_cuda() {
#ifdef ELI_WITH_CUDA
  return true;
#else
  return false;
#endif
}

bool GpuPeakMeter::available() const { return built_with_cuda() && device_.is_cuda(); }

void GpuPeakMeter::start() {
#ifdef ELI_WITH_CUDA
  if (!available()) return;
  synchronize(device_);
  c10::cuda::CUDACachingAllocator::resetPeakStats(device_.has_index() ? device_.index() : 0);
#endif
}

double GpuPeakMeter::stop_mb() {
#ifdef ELI_WITH_CUDA
  if (!available()) return kNaN;
  synchronize(device_);
  const auto stats =
      c10::cuda::CUDACachingAllocator::getDeviceStats(device_.has_index() ? device_.index() : 0);
  // Index 0 is StatType::AGGREGATE (all pools) in LibTorch 1.13 and 2.x.
  return static_cast<double>(stats.allocated_bytes[0].peak) / (1024.0 * 1024.0);
#else
  return kNaN;
#endif
}

void synchronize(at::Device device) {
#ifdef ELI_WITH_CUDA
  if (device.is_cuda()) c10::cuda::device_synchronize();
#else
  (void)device;
#endif
}

std::string device_name(at::Device device) {
#ifdef ELI_WITH_CUDA
  if (device.is_cuda()) {
    return at::cuda::getDeviceProperties(device.has_index() ? device.index() : 0)->name;
  }
#endif
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(colon + 1);
        name.erase(0, name.find_first_not_of(' '));
        return name;
      }
    }
  }
  return device.is_cuda() ? "cuda" : "cpu";
}

}  // namespace eli::benchmark
