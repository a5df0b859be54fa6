#include "eli/bench/report.h"

#include <ATen/Parallel.h>
#include <torch/version.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "eli/bench/memory.h"
#include "eli/error.h"

#ifndef ELI_VERSION
#define ELI_VERSION "unknown"
#endif

namespace eli::bench {

using nlohmann::json;

const char* version() { return ELI_VERSION; }

RunContext RunContext::of(const model::GPT2& model, const std::string& model_spec) {
  RunContext c;
  c.model = model_spec;
  const GPT2Config& mc = model.config();
  c.model_shape = fmt::format("L{}-E{}-H{}-V{}-P{}", mc.n_layer, mc.n_embd, mc.n_head,
                              mc.vocab_size, mc.n_positions);
  c.n_params = model.num_parameters();
  c.device = model.device().str();
  c.device_name = bench::device_name(model.device());
  c.dtype = model.dtype() == at::kHalf       ? "float16"
            : model.dtype() == at::kBFloat16 ? "bfloat16"
                                             : "float32";
  c.eli_version = version();
  c.torch_version = TORCH_VERSION;
  c.cuda_build = built_with_cuda();
  c.threads = at::get_num_threads();
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  c.timestamp = buf;
  return c;
}

namespace {

json stats_json(const CacheStats& s) {
  return {{"tokens_seen", s.tokens_seen},          {"tokens_stored", s.tokens_stored},
          {"tokens_evicted", s.tokens_evicted},    {"payload_bytes", s.payload_bytes},
          {"scale_bytes", s.scale_bytes},          {"residual_bytes", s.residual_bytes},
          {"metadata_bytes", s.metadata_bytes},    {"reserved_bytes", s.reserved_bytes},
          {"blocks_in_use", s.blocks_in_use},      {"blocks_total", s.blocks_total},
          {"padding_bytes", s.padding_bytes},      {"total_bytes", s.total_bytes()},
          {"allocated_bytes", s.allocated_bytes()}};
}

json quality_json(const Quality& q) {
  return {{"eval_tokens", q.eval_tokens},
          {"perplexity", q.perplexity},
          {"full_perplexity", q.full_perplexity},
          {"kl_vs_full", q.kl_vs_full},
          {"top1_agreement", q.top1_agreement},
          {"first_divergence", q.first_divergence},
          {"rouge_l", q.rouge_l},
          {"edit_similarity", q.edit_similarity}};
}

json result_json(const MethodResult& r) {
  json j = {
      {"method", r.method},
      {"cache_name", r.cache_name},
      {"batch", r.batch},
      {"prompt_len", r.prompt_len},
      {"new_tokens", r.new_tokens},
      {"context_len", r.prompt_len + r.new_tokens},
      {"warmup", r.warmup},
      {"repetitions", r.repetitions},
      {"total_ms", r.total_ms},
      {"total_ms_reps", r.total_ms_reps},
      {"ttft_ms", r.ttft_ms},
      {"decode_mean_ms", r.decode_mean_ms},
      {"decode_p50_ms", r.decode_p50_ms},
      {"decode_p90_ms", r.decode_p90_ms},
      {"decode_p99_ms", r.decode_p99_ms},
      {"tokens_per_sec", r.tokens_per_sec},
      {"decode_tokens_per_sec", r.decode_tokens_per_sec},
      {"cpu_peak_mb", r.cpu_peak_mb},
      {"cpu_start_mb", r.cpu_start_mb},
      {"cpu_peak_source", r.cpu_peak_source},
      {"gpu_peak_mb", r.gpu_peak_mb},
      {"cache_mb", r.cache_mb},
      {"cache_allocated_mb", r.cache_allocated_mb},
      {"bytes_per_token", r.bytes_per_token},
      {"bytes_per_stored_token", r.bytes_per_stored_token},
      {"cache", stats_json(r.cache)},
      {"quality", quality_json(r.quality)},
      {"sample_text", json(r.sample_text).dump(-1, ' ', false, json::error_handler_t::replace)},
      {"error", r.error}};
  // Decoded text may be cut mid UTF-8 character; dump() above replaced bad bytes, parse back.
  j["sample_text"] = json::parse(j["sample_text"].get<std::string>());
  return j;
}

json context_json(const RunContext& c) {
  return {{"model", c.model},
          {"model_shape", c.model_shape},
          {"n_params", c.n_params},
          {"device", c.device},
          {"device_name", c.device_name},
          {"dtype", c.dtype},
          {"eli_version", c.eli_version},
          {"torch_version", c.torch_version},
          {"cuda_build", c.cuda_build},
          {"threads", c.threads},
          {"timestamp", c.timestamp},
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

std::string num(double v, int prec) {
  if (std::isnan(v)) return "-";
  return fmt::format("{:.{}f}", v, prec);
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string csv_num(double v) { return std::isnan(v) ? "" : fmt::format("{:.6g}", v); }

}  // namespace

std::string to_json(const Report& report) {
  json results = json::array();
  for (const auto& r : report.results) results.push_back(result_json(r));
  json j = {{"context", context_json(report.context)},
            {"config", config_json(report.config)},
            {"sweep",
             {{"prompt_lens", report.sweep.prompt_lens},
              {"batch_sizes", report.sweep.batch_sizes},
              {"max_new_tokens", report.sweep.max_new_tokens}}},
            {"results", results}};
  return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string to_csv(const Report& report) {
  const RunContext& c = report.context;
  std::ostringstream out;
  out << "method,cache_name,batch,prompt_len,new_tokens,context_len,tokens_per_sec,"
         "decode_tokens_per_sec,total_ms,ttft_ms,decode_mean_ms,decode_p50_ms,decode_p90_ms,"
         "decode_p99_ms,cpu_peak_mb,cpu_start_mb,cpu_peak_source,gpu_peak_mb,cache_mb,"
         "cache_allocated_mb,bytes_per_token,bytes_per_stored_token,tokens_seen,tokens_stored,"
         "tokens_evicted,payload_bytes,scale_bytes,residual_bytes,metadata_bytes,reserved_bytes,"
         "perplexity,full_perplexity,kl_vs_full,top1_agreement,first_divergence,rouge_l,"
         "edit_similarity,error,model,model_shape,device,device_name,dtype,eli_version\n";
  for (const auto& r : report.results) {
    const Quality& q = r.quality;
    const CacheStats& s = r.cache;
    std::vector<std::string> f = {csv_field(r.method),
                                  csv_field(r.cache_name),
                                  std::to_string(r.batch),
                                  std::to_string(r.prompt_len),
                                  std::to_string(r.new_tokens),
                                  std::to_string(r.prompt_len + r.new_tokens),
                                  csv_num(r.tokens_per_sec),
                                  csv_num(r.decode_tokens_per_sec),
                                  csv_num(r.total_ms),
                                  csv_num(r.ttft_ms),
                                  csv_num(r.decode_mean_ms),
                                  csv_num(r.decode_p50_ms),
                                  csv_num(r.decode_p90_ms),
                                  csv_num(r.decode_p99_ms),
                                  csv_num(r.cpu_peak_mb),
                                  csv_num(r.cpu_start_mb),
                                  r.cpu_peak_source,
                                  csv_num(r.gpu_peak_mb),
                                  csv_num(r.cache_mb),
                                  csv_num(r.cache_allocated_mb),
                                  csv_num(r.bytes_per_token),
                                  csv_num(r.bytes_per_stored_token),
                                  std::to_string(s.tokens_seen),
                                  std::to_string(s.tokens_stored),
                                  std::to_string(s.tokens_evicted),
                                  std::to_string(s.payload_bytes),
                                  std::to_string(s.scale_bytes),
                                  std::to_string(s.residual_bytes),
                                  std::to_string(s.metadata_bytes),
                                  std::to_string(s.reserved_bytes),
                                  csv_num(q.perplexity),
                                  csv_num(q.full_perplexity),
                                  csv_num(q.kl_vs_full),
                                  csv_num(q.top1_agreement),
                                  std::to_string(q.first_divergence),
                                  csv_num(q.rouge_l),
                                  csv_num(q.edit_similarity),
                                  csv_field(r.error),
                                  csv_field(c.model),
                                  c.model_shape,
                                  c.device,
                                  csv_field(c.device_name),
                                  c.dtype,
                                  c.eli_version};
    for (size_t i = 0; i < f.size(); ++i) out << (i ? "," : "") << f[i];
    out << "\n";
  }
  return out.str();
}

std::string format_table(const std::vector<MethodResult>& results) {
  std::string out = fmt::format(
      "{:<22} {:>3} {:>5} {:>4} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8} {:>9} {:>9} {:>8} {:>8} "
      "{:>6} {:>7}\n",
      "method", "B", "P", "new", "tok/s", "TTFT ms", "p50 ms", "p90 ms", "cache MB", "B/tok",
      "CPU pk MB", "GPU pk MB", "PPL", "KL", "top1", "ROUGE-L");
  out += std::string(out.size() - 1, '-') + "\n";
  for (const auto& r : results) {
    if (!r.error.empty()) {
      out +=
          fmt::format("{:<22} {:>3} {:>5} ERROR: {}\n", r.method, r.batch, r.prompt_len, r.error);
      continue;
    }
    const Quality& q = r.quality;
    out += fmt::format(
        "{:<22} {:>3} {:>5} {:>4} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8} {:>9} {:>9} {:>8} {:>8} "
        "{:>6} {:>7}\n",
        r.method, r.batch, r.prompt_len, r.new_tokens, num(r.tokens_per_sec, 1), num(r.ttft_ms, 2),
        num(r.decode_p50_ms, 2), num(r.decode_p90_ms, 2), num(r.cache_mb, 3),
        num(r.bytes_per_token, 0), num(r.cpu_peak_mb, 0), num(r.gpu_peak_mb, 1),
        num(q.perplexity, 2), num(q.kl_vs_full, 4), num(q.top1_agreement, 3), num(q.rouge_l, 3));
  }
  return out;
}

void write_text_file(const std::string& path, const std::string& text) {
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

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

ProgressLine::ProgressLine(std::ostream& out) : out_(&out), start_s_(now_s()) {}

void ProgressLine::update(int64_t done, int64_t total, const std::string& what) {
  std::string line = fmt::format("[{}/{}] {}  {:.1f}s", done, total, what, now_s() - start_s_);
  const size_t len = line.size();
  if (len < last_len_) line += std::string(last_len_ - len, ' ');
  last_len_ = len;
  *out_ << '\r' << line << std::flush;
}

void ProgressLine::finish() {
  if (last_len_ > 0) *out_ << '\n' << std::flush;
  last_len_ = 0;
}

}  // namespace eli::bench
