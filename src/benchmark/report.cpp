#include "eli/benchmark/report.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/version.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "benchmark/report_columns.h"
#include "eli/benchmark/memory.h"
#include "eli/error.h"

#ifndef ELI_VERSION
#define ELI_VERSION "unknown"
#endif
#ifndef ELI_GIT_REVISION
#define ELI_GIT_REVISION "unknown"
#endif

namespace eli::benchmark {

using nlohmann::json;

const char* version() { return ELI_VERSION; }

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// CUDA runtime version torch was built with, "13.0"; "" where torch has no CUDA.
std::string cuda_runtime_version() {
  try {
    if (!at::hasCUDA()) return "";
    const long v = at::detail::getCUDAHooks().versionCUDART();
    return fmt::format("{}.{}", v / 1000, (v % 1000) / 10);
  } catch (const std::exception&) {
    return "";
  }
}

// The BLAS torch was configured with (BLAS_INFO in at::show_config()) and the BLAS library
// this process actually loaded (Debian selects it through alternatives at run time).
std::string blas_info() {
  std::string info;
  const std::string cfg = at::show_config();
  const size_t at_info = cfg.find("BLAS_INFO=");
  if (at_info != std::string::npos) {
    const size_t b = at_info + 10;
    info = cfg.substr(b, cfg.find_first_of(", \n", b) - b);
  }
  std::ifstream maps("/proc/self/maps");
  std::string loaded;
  for (std::string line; std::getline(maps, line);) {
    const size_t slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    const std::string base = std::filesystem::path(path).filename().string();
    if (base.find("blas") == std::string::npos && base.find("mkl_rt") == std::string::npos)
      continue;
    std::error_code ec;
    const std::string real = std::filesystem::canonical(path, ec).string();
    const std::string lib = ec ? path : real;
    if (loaded.find(lib) == std::string::npos) loaded += (loaded.empty() ? "" : " ") + lib;
  }
  if (!loaded.empty()) info += (info.empty() ? "" : ", loaded ") + loaded;
  return info.empty() ? "unknown" : info;
}

}  // namespace

RunContext RunContext::here() {
  RunContext c;
  c.start_s = now_s();
  c.eli_version = version();
  c.git_revision = ELI_GIT_REVISION;
  c.torch_version = TORCH_VERSION;
  c.cuda_version = cuda_runtime_version();
  c.blas = blas_info();
  c.cuda_build = built_with_cuda();
  c.threads = at::get_num_threads();
  c.device = "cpu";
  c.device_name = benchmark::device_name(at::kCPU);
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  c.timestamp = buf;
  return c;
}

RunContext RunContext::of(const model::GPT2& model, const std::string& model_spec) {
  RunContext c = here();
  c.model = model_spec;
  const GPT2Config& mc = model.config();
  c.model_shape = fmt::format("L{}-E{}-H{}-V{}-P{}", mc.n_layer, mc.n_embd, mc.n_head,
                              mc.vocab_size, mc.n_positions);
  c.n_params = model.num_parameters();
  c.device = model.device().str();
  c.device_name = benchmark::device_name(model.device());
  c.dtype = model.dtype() == at::kHalf       ? "float16"
            : model.dtype() == at::kBFloat16 ? "bfloat16"
                                             : "float32";
  return c;
}

void RunContext::stop_clock() { wall_s = now_s() - start_s; }

namespace {

// Text that may end mid UTF-8 character (a decoded sample cut at a token): invalid bytes become
// U+FFFD so that the JSON stays valid.
json safe_text(const std::string& text) {
  return json::parse(json(text).dump(-1, ' ', false, json::error_handler_t::replace));
}

}  // namespace

namespace detail {

const std::vector<Column>& columns() {
  using R = const MethodResult&;
  static const std::vector<Column> cols = {
      {"method", "", [](R r) { return json(r.method); }},
      {"cache_name", "", [](R r) { return json(r.cache_name); }},
      {"batch", "", [](R r) { return json(r.batch); }},
      {"prompt_len", "", [](R r) { return json(r.prompt_len); }},
      {"prompt_lens", "", [](R r) { return json(r.prompt_lens); }},
      {"prompt_tokens", "", [](R r) { return json(r.prompt_tokens); }},
      {"new_tokens", "", [](R r) { return json(r.new_tokens); }},
      {"context_len", "", [](R r) { return json(r.prompt_len + r.new_tokens); }},
      {"warmup", "", [](R r) { return json(r.warmup); }},
      {"repetitions", "", [](R r) { return json(r.repetitions); }},
      {"decode_tokens_per_sec", "", [](R r) { return json(r.decode_tokens_per_sec); }},
      {"decode_tokens_per_sec_stddev", "",
       [](R r) { return json(r.decode_tokens_per_sec_stddev); }},
      {"decode_tokens_per_sec_min", "", [](R r) { return json(r.decode_tokens_per_sec_min); }},
      {"decode_tokens_per_sec_max", "", [](R r) { return json(r.decode_tokens_per_sec_max); }},
      {"decode_tokens_per_sec_cv", "", [](R r) { return json(r.decode_tokens_per_sec_cv); }},
      {"decode_mean_ms", "", [](R r) { return json(r.decode_mean_ms); }},
      {"decode_p50_ms", "", [](R r) { return json(r.decode_p50_ms); }},
      {"decode_p90_ms", "", [](R r) { return json(r.decode_p90_ms); }},
      {"decode_p99_ms", "", [](R r) { return json(r.decode_p99_ms); }},
      {"ttft_ms", "", [](R r) { return json(r.ttft_ms); }},
      {"prefill_tokens_per_sec", "", [](R r) { return json(r.prefill_tokens_per_sec); }},
      {"total_ms", "", [](R r) { return json(r.total_ms); }},
      {"tokens_per_sec", "", [](R r) { return json(r.tokens_per_sec); }},
      {"memory_vs_full", "", [](R r) { return json(r.memory_vs_full); }},
      {"speed_vs_full", "", [](R r) { return json(r.speed_vs_full); }},
      {"cpu_peak_mb", "", [](R r) { return json(r.cpu_peak_mb); }},
      {"cpu_start_mb", "", [](R r) { return json(r.cpu_start_mb); }},
      {"cpu_peak_source", "", [](R r) { return json(r.cpu_peak_source); }},
      {"gpu_peak_mb", "", [](R r) { return json(r.gpu_peak_mb); }},
      {"cache_mb", "", [](R r) { return json(r.cache_mb); }},
      {"cache_allocated_mb", "", [](R r) { return json(r.cache_allocated_mb); }},
      {"bytes_per_token", "", [](R r) { return json(r.bytes_per_token); }},
      {"bytes_per_stored_token", "", [](R r) { return json(r.bytes_per_stored_token); }},
      {"tokens_seen", "cache", [](R r) { return json(r.cache.tokens_seen); }},
      {"tokens_stored", "cache", [](R r) { return json(r.cache.tokens_stored); }},
      {"tokens_evicted", "cache", [](R r) { return json(r.cache.tokens_evicted); }},
      {"payload_bytes", "cache", [](R r) { return json(r.cache.payload_bytes); }},
      {"scale_bytes", "cache", [](R r) { return json(r.cache.scale_bytes); }},
      {"residual_bytes", "cache", [](R r) { return json(r.cache.residual_bytes); }},
      {"metadata_bytes", "cache", [](R r) { return json(r.cache.metadata_bytes); }},
      {"reserved_bytes", "cache", [](R r) { return json(r.cache.reserved_bytes); }},
      {"blocks_in_use", "cache", [](R r) { return json(r.cache.blocks_in_use); }},
      {"blocks_total", "cache", [](R r) { return json(r.cache.blocks_total); }},
      {"padding_bytes", "cache", [](R r) { return json(r.cache.padding_bytes); }},
      {"total_bytes", "cache", [](R r) { return json(r.cache.total_bytes()); }},
      {"allocated_bytes", "cache", [](R r) { return json(r.cache.allocated_bytes()); }},
      {"eval_prefix", "quality", [](R r) { return json(r.quality.eval_prefix); }},
      {"eval_tokens", "quality", [](R r) { return json(r.quality.eval_tokens); }},
      {"perplexity", "quality", [](R r) { return json(r.quality.perplexity); }},
      {"full_perplexity", "quality", [](R r) { return json(r.quality.full_perplexity); }},
      {"ppl_delta_pct", "quality", [](R r) { return json(r.quality.ppl_delta_pct); }},
      {"kl_vs_full", "quality", [](R r) { return json(r.quality.kl_vs_full); }},
      {"top1_agreement", "quality", [](R r) { return json(r.quality.top1_agreement); }},
      {"first_divergence", "quality", [](R r) { return json(r.quality.first_divergence); }},
      {"rouge_l", "quality", [](R r) { return json(r.quality.rouge_l); }},
      {"edit_similarity", "quality", [](R r) { return json(r.quality.edit_similarity); }},
      {"error", "", [](R r) { return json(r.error); }},
      {"total_ms_reps", "", [](R r) { return json(r.total_ms_reps); }},
      {"ttft_ms_reps", "", [](R r) { return json(r.ttft_ms_reps); }},
      {"decode_tokens_per_sec_reps", "", [](R r) { return json(r.decode_tokens_per_sec_reps); }},
      {"sample_text", "", [](R r) { return safe_text(r.sample_text); }},
  };
  return cols;
}

const Column& column(const std::string& name) {
  for (const Column& c : columns()) {
    if (name == c.name) return c;
  }
  ELI_FAIL("report: no column '{}'", name);
}

double number(const json& v) {
  return v.is_number() ? v.get<double>() : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace detail

namespace {

using detail::column;
using detail::Column;
using detail::columns;

json result_json(const MethodResult& r) {
  json j = json::object();
  for (const Column& c : columns()) {
    if (*c.group) {
      j[c.group][c.name] = c.get(r);
    } else {
      j[c.name] = c.get(r);
    }
  }
  return j;
}

json context_json(const RunContext& c) {
  return {{"schema_version", c.schema_version},
          {"model", c.model},
          {"model_shape", c.model_shape},
          {"n_params", c.n_params},
          {"device", c.device},
          {"device_name", c.device_name},
          {"dtype", c.dtype},
          {"eli_version", c.eli_version},
          {"git_revision", c.git_revision},
          {"torch_version", c.torch_version},
          {"cuda_version", c.cuda_version},
          {"blas", c.blas},
          {"cuda_build", c.cuda_build},
          {"threads", c.threads},
          {"timestamp", c.timestamp},
          {"wall_s", c.wall_s},
          {"command", c.command},
          {"notes", c.notes}};
}

json config_json(const BenchmarkConfig& b) {
  const GenerationConfig& g = b.generation;
  return {{"warmup", b.warmup},
          {"warmup_tokens", b.warmup_tokens},
          {"repetitions", b.repetitions},
          {"quality", b.quality},
          {"eval_prefix", b.eval_prefix},
          {"eval_tokens", b.eval_tokens},
          {"eval_stream_tokens", b.eval_ids.size()},
          {"sampling",
           {{"temperature", g.sampling.temperature},
            {"top_k", g.sampling.top_k},
            {"top_p", g.sampling.top_p},
            {"seed", g.sampling.seed}}},
          {"cache",
           {{"window_size", g.cache.window_size},
            {"sink_tokens", g.cache.sink_tokens},
            {"block_size", g.cache.block_size},
            {"pool_blocks", g.cache.pool_blocks},
            {"prefix_reuse", g.cache.prefix_reuse},
            {"chunk_size", g.cache.chunk_size},
            {"keep_last", g.cache.keep_last},
            {"summary_log_bias", g.cache.summary_log_bias},
            {"max_tokens", g.cache.max_tokens}}},
          {"quant",
           {{"mode", to_string(g.quant.mode)},
            {"granularity", to_string(g.quant.granularity)},
            {"group_size", g.quant.group_size},
            {"zero_point", g.quant.zero_point},
            {"eps", g.quant.eps},
            {"residual_tokens", g.quant.residual_tokens},
            {"rotate", g.quant.rotate}}}};
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

// One CSV cell: null -> empty, numbers in %.6g, arrays joined with ';'.
std::string csv_cell(const json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return csv_field(v.get<std::string>());
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number()) {
    const double d = v.get<double>();
    return std::isfinite(d) ? fmt::format("{:.6g}", d) : "";
  }
  if (v.is_array()) {
    std::string out;
    for (size_t i = 0; i < v.size(); ++i) {
      const json& e = v[i];
      out += (i ? ";" : "") + (e.is_string() ? e.get<std::string>() : csv_cell(e));
    }
    return csv_field(out);
  }
  return csv_field(v.dump());
}

}  // namespace

std::vector<ColumnInfo> result_columns() {
  std::vector<ColumnInfo> out;
  for (const Column& c : columns()) out.push_back({c.name, c.group});
  return out;
}

std::string to_json(const Report& report) {
  json results = json::array();
  for (const auto& r : report.results) results.push_back(result_json(r));
  json j = {{"schema_version", report.context.schema_version},
            {"context", context_json(report.context)},
            {"config", config_json(report.config)},
            {"sweep",
             {{"prompt_lens", report.sweep.prompt_lens},
              {"batch_sizes", report.sweep.batch_sizes},
              {"max_new_tokens", report.sweep.max_new_tokens}}},
            {"results", results}};
  return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string context_to_json(const RunContext& context) {
  return context_json(context).dump(2, ' ', false, json::error_handler_t::replace);
}

std::string to_csv(const Report& report) {
  const json ctx = context_json(report.context);
  std::string out;
  for (const Column& c : columns()) out += std::string(out.empty() ? "" : ",") + c.name;
  for (const auto& [key, v] : ctx.items()) out += "," + key;
  out += "\n";
  for (const auto& r : report.results) {
    std::string line;
    for (const Column& c : columns()) line += (line.empty() ? "" : ",") + csv_cell(c.get(r));
    for (const auto& [key, v] : ctx.items()) line += "," + csv_cell(v);
    out += line + "\n";
  }
  return out;
}

void write_text_file(const std::string& path, const std::string& text) {
  if (path == "-") {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    return;
  }
  namespace fs = std::filesystem;
  const fs::path p(path);
  std::error_code ec;
  if (p.has_parent_path()) fs::create_directories(p.parent_path(), ec);
  ELI_CHECK(!ec, "cannot create directory '{}': {}", p.parent_path().string(), ec.message());
  std::ofstream out(path, std::ios::binary);
  ELI_CHECK(static_cast<bool>(out), "cannot open '{}' for writing", path);
  out << text;
  out.flush();
  ELI_CHECK(static_cast<bool>(out), "failed writing '{}'", path);
}

}  // namespace eli::benchmark
