#pragma once
/// Output of benchmark runs: the run's context, a readable table, JSON and CSV.
/// The JSON schema (top-level keys "context", "config", "sweep", "results") is documented in
/// docs/BENCHMARKER.md; scripts/plot_results.py reads it.

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "eli/benchmark/benchmarker.h"
#include "eli/model.h"

namespace eli::benchmark {

/// Version of the JSON / CSV layout below (bumped when a key changes meaning or goes away).
/// 3: results carry prompt_lens and prompt_tokens, prompt_len is the longest prompt (ragged
/// batches); config.cache has pool_blocks and prefix_reuse.
constexpr int kSchemaVersion = 3;

/// Where, on what and from which code a run happened (its provenance).
struct RunContext {
  int schema_version = kSchemaVersion;
  std::string model;        // spec as given ("default", "random:tiny", a directory)
  std::string model_shape;  // "L12-E768-H12-V50257-P1024"
  int64_t n_params = 0;
  std::string device;        // "cpu", "cuda:0"
  std::string device_name;   // GPU card name on CUDA, CPU model name otherwise
  std::string dtype;         // "float32" | "float16"
  std::string eli_version;   // ELI_VERSION
  std::string git_revision;  // `git describe --always --dirty` when eli was configured
  std::string torch_version;
  std::string cuda_version;        // CUDA runtime of the torch build ("" without CUDA)
  std::string blas;                // the torch build's BLAS_INFO and the BLAS library loaded
  bool cuda_build = false;         // compiled with ELI_WITH_CUDA
  int threads = 0;                 // at::get_num_threads() (intra-op threads)
  std::string timestamp;           // UTC, ISO 8601, when of() ran
  double wall_s = 0;               // seconds from of() to stop_clock() (the run's wall time)
  double start_s = 0;              // steady-clock seconds at of()
  std::string command;             // the command line, for reproduction
  std::vector<std::string> notes;  // e.g. fallbacks taken

  /// Fills everything but `model`, `command` and `notes` from the model and this build, and
  /// starts the wall clock.
  static RunContext of(const model::GPT2& model, const std::string& model_spec);
  /// The same without a model (model fields empty).
  static RunContext here();
  /// Sets wall_s to the seconds since of() / here().
  void stop_clock();
};

struct Report {
  RunContext context;
  BenchmarkConfig config;
  SweepConfig sweep;
  std::vector<MethodResult> results;
};

/// eli's version (the CMake project version).
const char* version();

/// The columns of a result row, in CSV order: JSON key (inside `group` when non-empty, e.g.
/// "quality"), which is also the CSV header. The JSON rows, the CSV and the tables all read
/// the results through this one list.
struct ColumnInfo {
  std::string name;
  std::string group;
};
std::vector<ColumnInfo> result_columns();

/// How a table is written: fixed-width text (stdout) or a GitHub-flavoured Markdown table (docs).
/// Both show the same columns and rows, read through result_columns().
enum class TableFormat { kText, kMarkdown };

/// A column of the tables below: its header, and the result column (JSON key and CSV header,
/// see result_columns()) whose value it shows.
struct TableColumnInfo {
  std::string header;
  std::string column;
};
/// The columns of format_table / format_quality_table, in order (a table leaves out those empty
/// in every row, as said there).
std::vector<TableColumnInfo> table_columns();
std::vector<TableColumnInfo> quality_table_columns();

/// Table of speed and memory, one row per point (decode and prefill apart, spread over the
/// repetitions, ratios against full_cache). Columns that are empty in every row (GPU peak on the
/// CPU, quality when not measured) are left out. A failed point is one row with its error.
std::string format_table(const std::vector<MethodResult>& results,
                         TableFormat format = TableFormat::kText);
/// Quality per method (measured once per method on the evaluation stream), with the
/// context it was measured at; "" when no result has stream quality.
std::string format_quality_table(const std::vector<MethodResult>& results,
                                 TableFormat format = TableFormat::kText);
/// The whole report: run line, notes, both tables and a legend. In Markdown the run line also
/// says when, how long and the command line (code), and the notes are a list.
std::string format_report(const Report& report, TableFormat format = TableFormat::kText);
/// Pretty-printed JSON with every number (NaN -> null), the context and the config.
std::string to_json(const Report& report);
/// The context as a JSON object (for tools that write their own rows).
std::string context_to_json(const RunContext& context);
/// CSV, one row per point, header line first; the context is repeated in columns.
std::string to_csv(const Report& report);
/// Writes `text` to `path`, creating parent directories; "-" writes to stdout. Errors ->
/// eli::Error naming the path.
void write_text_file(const std::string& path, const std::string& text);

/// Formats v with `precision` decimals, or in scientific notation when it is non-zero and would
/// print as 0 that way (KL 3e-5 -> "3.00e-05"); NaN -> "-".
std::string format_number(double v, int precision);

/// Progress of a long run on `out` (stderr in the examples): "[3/16] quant_int4 B=1 P=128
/// 12.3s, ETA 40s". On a terminal (`tty`) one line rewritten in place with '\r'; otherwise a
/// plain line per update, so logs stay readable. finish() ends the line.
class ProgressLine {
 public:
  ProgressLine(std::ostream& out, bool tty);
  void update(int64_t done, int64_t total, const std::string& what);
  void finish();

 private:
  std::ostream* out_;
  bool tty_;
  double start_s_;
  size_t last_len_ = 0;
};

}  // namespace eli::benchmark
