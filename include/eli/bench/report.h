#pragma once
/// Output of benchmark runs: the run's context, a readable table, JSON and CSV.
/// The JSON schema (top-level keys "context", "config", "sweep", "results") is documented in
/// docs/BENCHMARKER.md; scripts/plot_results.py reads it.

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "eli/bench/benchmarker.h"
#include "eli/model.h"

namespace eli::bench {

/// Where and on what a run happened.
struct RunContext {
  std::string model;        // spec as given ("default", "random:tiny", a directory)
  std::string model_shape;  // "L12-E768-H12-V50257-P1024"
  int64_t n_params = 0;
  std::string device;       // "cpu", "cuda:0"
  std::string device_name;  // GPU card name on CUDA, CPU model name otherwise
  std::string dtype;        // "float32" | "float16"
  std::string eli_version;  // ELI_VERSION
  std::string torch_version;
  bool cuda_build = false;         // compiled with ELI_WITH_CUDA
  int threads = 0;                 // at::get_num_threads()
  std::string timestamp;           // UTC, ISO 8601
  std::string command;             // the command line, for reproduction
  std::vector<std::string> notes;  // e.g. fallbacks taken

  /// Fills everything but `model`, `command` and `notes` from the model and this build.
  static RunContext of(const model::GPT2& model, const std::string& model_spec);
};

struct Report {
  RunContext context;
  BenchmarkConfig config;
  SweepConfig sweep;
  std::vector<MethodResult> results;
};

/// eli's version (the CMake project version).
const char* version();

/// Fixed-width table of the results (one row per point), for stdout.
std::string format_table(const std::vector<MethodResult>& results);
/// Pretty-printed JSON with every number (NaN -> null) and the context.
std::string to_json(const Report& report);
/// CSV, one row per point, header line first; the context is repeated in columns.
std::string to_csv(const Report& report);
/// Writes `text` to `path`, creating parent directories. Errors -> eli::Error naming the path.
void write_text_file(const std::string& path, const std::string& text);

/// A one-line progress indicator ("[3/16] quant_int4 B=1 P=128  12.3s") rewritten in place
/// with '\r' on `out` (stderr in the examples); finish() ends the line.
class ProgressLine {
 public:
  explicit ProgressLine(std::ostream& out);
  void update(int64_t done, int64_t total, const std::string& what);
  void finish();

 private:
  std::ostream* out_;
  double start_s_;
  size_t last_len_ = 0;
};

}  // namespace eli::bench
