// The text tables of a benchmark report and the progress line.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <ostream>

#include "benchmark/report_columns.h"
#include "eli/benchmark/report.h"
#include "eli/error.h"

namespace eli::benchmark {

using nlohmann::json;

namespace {

using detail::column;
using detail::number;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A table column: a header, the result column it shows and how.
enum class Style { kText, kFixed, kCvPercent, kRatio, kRange };
struct TableColumn {
  const char* header;
  const char* key;
  Style style;
  int precision;
  bool always;  // shown even when empty in every row
};

std::string cell(const TableColumn& tc, const MethodResult& r) {
  const json v = column(tc.key).get(r);
  if (tc.style == Style::kText) {
    return v.is_string() ? v.get<std::string>() : v.dump();
  }
  if (tc.style == Style::kRange) {  // a list of integers: "23", or "5..400" when they differ
    if (!v.is_array() || v.empty()) return "-";
    int64_t lo = v[0].get<int64_t>(), hi = lo;
    for (const json& x : v) {
      lo = std::min(lo, x.get<int64_t>());
      hi = std::max(hi, x.get<int64_t>());
    }
    return lo == hi ? std::to_string(lo) : fmt::format("{}..{}", lo, hi);
  }
  const double d = number(v);
  if (!std::isfinite(d)) return "-";
  switch (tc.style) {
    case Style::kCvPercent:
      return fmt::format("{:.1f}%{}", 100.0 * d, d > kNoisyCv ? "!" : "");
    case Style::kRatio:
      return format_number(d, tc.precision) + "x";
    default:
      return v.is_number_integer() ? std::to_string(v.get<int64_t>())
                                   : format_number(d, tc.precision);
  }
}

// The cells of a table: one line per shown row, and which columns are kept (those not empty
// ("-") in every row, and the `always` ones). Error rows keep only their message.
struct Grid {
  std::vector<std::vector<std::string>> cells;
  std::vector<const MethodResult*> shown;
  std::vector<size_t> keep;
  std::vector<size_t> width;  // widest cell or header of each column (for the text table)
};

Grid grid_of(const std::vector<TableColumn>& cols, const std::vector<MethodResult>& rows,
             bool with_errors) {
  Grid g;
  for (const MethodResult& r : rows) {
    if (!r.error.empty() && !with_errors) continue;
    g.shown.push_back(&r);
    std::vector<std::string> line;
    for (const TableColumn& tc : cols)
      line.push_back(r.error.empty() || tc.always ? cell(tc, r) : "");
    g.cells.push_back(std::move(line));
  }
  for (size_t c = 0; c < cols.size(); ++c) {
    bool any = cols[c].always;
    size_t w = std::string(cols[c].header).size();
    for (size_t i = 0; i < g.cells.size(); ++i) {
      if (!g.shown[i]->error.empty()) continue;
      any = any || g.cells[i][c] != "-";
      w = std::max(w, g.cells[i][c].size());
    }
    if (any) g.keep.push_back(c);
    g.width.push_back(w);
  }
  return g;
}

std::string error_text(const MethodResult& r) {
  return fmt::format("ERROR (batch {}, prompt {}): {}", r.batch, prompt_lens_label(r), r.error);
}

// Fixed width: the first column left-aligned, the rest right-aligned.
std::string render_text(const std::vector<TableColumn>& cols, const Grid& g) {
  auto line_of = [&](const std::vector<std::string>& v) {
    std::string out;
    for (size_t k = 0; k < g.keep.size(); ++k) {
      const size_t c = g.keep[k];
      out += k == 0 ? fmt::format("{:<{}}", v[c], g.width[c])
                    : fmt::format("  {:>{}}", v[c], g.width[c]);
    }
    return out + "\n";
  };
  std::vector<std::string> headers;
  for (const TableColumn& tc : cols) headers.push_back(tc.header);
  std::string out = line_of(headers);
  out += std::string(out.size() - 1, '-') + "\n";
  for (size_t i = 0; i < g.cells.size(); ++i) {
    const MethodResult& r = *g.shown[i];
    out += r.error.empty()
               ? line_of(g.cells[i])
               : fmt::format("{:<{}}  {}\n", r.method, g.width[g.keep[0]], error_text(r));
  }
  return out;
}

// A Markdown cell: '|' escaped, line breaks as spaces.
std::string md_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '|') {
      out += "\\|";
    } else {
      out += ch == '\n' || ch == '\r' ? ' ' : ch;
    }
  }
  return out;
}

// GitHub-flavoured Markdown: the first column (the method, as code) left-aligned, numbers right.
// An error row has its message in the second cell and the others empty.
std::string render_markdown(const std::vector<TableColumn>& cols, const Grid& g) {
  std::string head = "|", rule = "|";
  for (size_t k = 0; k < g.keep.size(); ++k) {
    head += " " + md_escape(cols[g.keep[k]].header) + " |";
    rule += k == 0 ? ":---|" : "---:|";
  }
  std::string out = head + "\n" + rule + "\n";
  for (size_t i = 0; i < g.cells.size(); ++i) {
    const MethodResult& r = *g.shown[i];
    out += "|";
    for (size_t k = 0; k < g.keep.size(); ++k) {
      std::string v = g.cells[i][g.keep[k]];
      if (k == 0) v = "`" + v + "`";
      if (!r.error.empty() && k > 0) v = k == 1 ? error_text(r) : "";
      out += " " + md_escape(v) + " |";
    }
    out += "\n";
  }
  return out;
}

std::string render(const std::vector<TableColumn>& cols, const std::vector<MethodResult>& rows,
                   bool with_errors, TableFormat format) {
  const Grid g = grid_of(cols, rows, with_errors);
  return format == TableFormat::kMarkdown ? render_markdown(cols, g) : render_text(cols, g);
}

const std::vector<TableColumn>& speed_columns() {
  static const std::vector<TableColumn> cols = {
      {"method", "method", Style::kText, 0, true},
      {"batch", "batch", Style::kFixed, 0, true},
      {"prompt", "prompt_lens", Style::kRange, 0, true},
      {"new", "new_tokens", Style::kFixed, 0, true},
      {"decode tok/s", "decode_tokens_per_sec", Style::kFixed, 1, true},
      {"cv", "decode_tokens_per_sec_cv", Style::kCvPercent, 1, false},
      {"min", "decode_tokens_per_sec_min", Style::kFixed, 1, false},
      {"max", "decode_tokens_per_sec_max", Style::kFixed, 1, false},
      {"step p50 ms", "decode_p50_ms", Style::kFixed, 3, false},
      {"step p90 ms", "decode_p90_ms", Style::kFixed, 3, false},
      {"TTFT ms", "ttft_ms", Style::kFixed, 2, true},
      {"prefill tok/s", "prefill_tokens_per_sec", Style::kFixed, 0, false},
      {"KV MB", "cache_mb", Style::kFixed, 3, false},
      {"KV bytes/token", "bytes_per_token", Style::kFixed, 0, false},
      {"memory vs full", "memory_vs_full", Style::kRatio, 3, false},
      {"speed vs full", "speed_vs_full", Style::kRatio, 2, false},
      {"ROUGE-L vs full", "rouge_l", Style::kFixed, 3, false},
      {"CPU peak MB", "cpu_peak_mb", Style::kFixed, 0, false},
      {"GPU peak MB", "gpu_peak_mb", Style::kFixed, 1, false},
  };
  return cols;
}

const std::vector<TableColumn>& quality_columns() {
  static const std::vector<TableColumn> cols = {
      {"method", "method", Style::kText, 0, true},
      {"perplexity", "perplexity", Style::kFixed, 3, true},
      {"PPL vs full %", "ppl_delta_pct", Style::kFixed, 2, true},
      {"KL vs full (nats/token)", "kl_vs_full", Style::kFixed, 4, true},
      {"top-1 agreement", "top1_agreement", Style::kFixed, 4, true},
  };
  return cols;
}

std::vector<TableColumnInfo> infos(const std::vector<TableColumn>& cols) {
  std::vector<TableColumnInfo> out;
  for (const TableColumn& c : cols) out.push_back({c.header, c.key});
  return out;
}

}  // namespace

std::string format_number(double v, int precision) {
  if (std::isnan(v)) return "-";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v != 0 && std::fabs(v) < 0.5 * std::pow(10.0, -precision)) return fmt::format("{:.2e}", v);
  return fmt::format("{:.{}f}", v, precision);
}

std::vector<TableColumnInfo> table_columns() { return infos(speed_columns()); }

std::vector<TableColumnInfo> quality_table_columns() { return infos(quality_columns()); }

std::string format_table(const std::vector<MethodResult>& results, TableFormat format) {
  return render(speed_columns(), results, true, format);
}

std::string format_quality_table(const std::vector<MethodResult>& results, TableFormat format) {
  std::vector<MethodResult> per_method;
  for (const MethodResult& r : results) {
    if (!r.error.empty() || r.quality.eval_tokens <= 0) continue;
    bool seen = false;
    for (const MethodResult& p : per_method) seen = seen || p.method == r.method;
    if (!seen) per_method.push_back(r);
  }
  if (per_method.empty()) return "";
  const Quality& q = per_method.front().quality;
  return fmt::format(
             "Quality through each cache (batch 1, once per method, the same for every batch and "
             "prompt above): {} tokens of held-out text prefilled, then {} scored one at a time, "
             "so the context grows from {} to {} tokens. Full-cache perplexity {}.\n{}",
             q.eval_prefix, q.eval_tokens, q.eval_prefix, q.eval_prefix + q.eval_tokens,
             format_number(q.full_perplexity, 3), format == TableFormat::kMarkdown ? "\n" : "") +
         render(quality_columns(), per_method, false, format);
}

std::string format_report(const Report& report, TableFormat format) {
  const RunContext& c = report.context;
  const bool md = format == TableFormat::kMarkdown;
  // In Markdown the run line is a paragraph: no '|' (a line of them may read as a table row).
  const char* sep = md ? ", " : " | ";
  std::string out = fmt::format(
      "eli {} ({}){}model {} ({}, {:.1f}M params){}{} ({}){}{}{}{} threads{}{} repetitions\n",
      c.eli_version, c.git_revision, sep, c.model, c.model_shape, c.n_params / 1e6, sep, c.device,
      c.device_name, sep, c.dtype, sep, c.threads, sep, report.config.repetitions);
  if (md) {
    out += fmt::format("at {}, {:.0f} s{}\n\n", c.timestamp, c.wall_s,
                       c.command.empty() ? "" : ": `" + c.command + "`");
  }
  for (const auto& n : c.notes) out += (md ? "- note: " : "note: ") + n + "\n";
  if (md && !c.notes.empty()) out += "\n";
  out += format_table(report.results, format);
  if (md) out += "\n";
  bool noisy = false, ragged = false;
  for (const MethodResult& r : report.results) {
    noisy = noisy || r.decode_tokens_per_sec_cv > kNoisyCv;
    ragged = ragged || prompt_lens_label(r).find("..") != std::string::npos;
  }
  out += fmt::format(
      "decode tok/s: batch x decode steps / decode time (prefill excluded), median of the "
      "repetitions;\n"
      "  cv = its stddev / mean, min / max over the repetitions{}.\n"
      "step p50 / p90: latency of one decode step. TTFT: prefill of the prompt up to the first "
      "token;\n"
      "  prefill tok/s = the batch's prompt tokens / TTFT.\n"
      "KV bytes/token: cache bytes / context tokens summed over the batch. vs full: against "
      "full_cache at\n"
      "  the same batch and prompts.\n{}",
      noisy ? fmt::format(" (! = cv above {:.0f}%: noisy; more --repetitions or a quieter machine)",
                          100 * kNoisyCv)
            : "",
      ragged ? "prompt a..b: prompts of different lengths, run as given (shortest..longest; the "
               "JSON and CSV list each).\n"
             : "");
  const std::string quality = format_quality_table(report.results, format);
  if (!quality.empty()) out += "\n" + quality;
  return out;
}

ProgressLine::ProgressLine(std::ostream& out, bool tty)
    : out_(&out), tty_(tty), start_s_(now_s()) {}

void ProgressLine::update(int64_t done, int64_t total, const std::string& what) {
  const double elapsed = now_s() - start_s_;
  std::string line = fmt::format("[{}/{}] {}  {:.1f}s", done, total, what, elapsed);
  if (done > 0 && done < total) {
    line += fmt::format(", ETA {:.0f}s",
                        elapsed / static_cast<double>(done) * static_cast<double>(total - done));
  }
  if (!tty_) {
    *out_ << line << '\n' << std::flush;
    return;
  }
  const size_t len = line.size();
  if (len < last_len_) line += std::string(last_len_ - len, ' ');
  last_len_ = len;
  *out_ << '\r' << line << std::flush;
}

void ProgressLine::finish() {
  if (tty_ && last_len_ > 0) *out_ << '\n' << std::flush;
  last_len_ = 0;
}

}  // namespace eli::benchmark
