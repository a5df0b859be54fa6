#pragma once
// The output layer of the tools whose rows are not Benchmarker results (quality_report,
// cache_memory): one list of fields gives the text table, the Markdown table, the JSON rows and
// the CSV columns, and every JSON / CSV carries the run's context (provenance).
#include <cstdio>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "eli/benchmark/report.h"

namespace examples {

struct Field {
  std::string name;    // JSON key and CSV header
  std::string header;  // table header
  int precision = 3;   // decimals of a number in the tables (small values in scientific notation)
};

struct RowReport {
  eli::benchmark::RunContext context;
  nlohmann::json config = nlohmann::json::object();  // the tool's settings
  std::vector<Field> fields;
  std::vector<std::vector<nlohmann::json>> rows;  // one value per field: number, string or null
};

inline std::string cell_text(const nlohmann::json& v, const Field& f) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number()) return eli::benchmark::format_number(v.get<double>(), f.precision);
  return v.dump();
}

/// Fixed-width text table: first column left-aligned, the others right-aligned.
inline std::string text_table(const RowReport& r) {
  std::vector<size_t> w;
  for (const Field& f : r.fields) w.push_back(f.header.size());
  for (const auto& row : r.rows) {
    for (size_t c = 0; c < r.fields.size(); ++c) {
      w[c] = std::max(w[c], cell_text(row[c], r.fields[c]).size());
    }
  }
  auto line = [&](auto cell) {
    std::string out;
    for (size_t c = 0; c < r.fields.size(); ++c) {
      out += c == 0 ? fmt::format("{:<{}}", cell(c), w[c]) : fmt::format("  {:>{}}", cell(c), w[c]);
    }
    return out + "\n";
  };
  std::string out = line([&](size_t c) { return r.fields[c].header; });
  out += std::string(out.size() - 1, '-') + "\n";
  for (const auto& row : r.rows)
    out += line([&](size_t c) { return cell_text(row[c], r.fields[c]); });
  return out;
}

/// Markdown table (docs/QUALITY.md): the same fields and rows as the text table, JSON and CSV.
inline std::string markdown_table(const RowReport& r) {
  std::string head = "|", rule = "|";
  for (const Field& f : r.fields) {
    head += " " + f.header + " |";
    rule += "---|";
  }
  std::string out = head + "\n" + rule + "\n";
  for (const auto& row : r.rows) {
    out += "|";
    for (size_t c = 0; c < r.fields.size(); ++c) {
      const std::string t = cell_text(row[c], r.fields[c]);
      out += " " + (c == 0 ? "`" + t + "`" : t) + " |";
    }
    out += "\n";
  }
  return out;
}

/// The run line of a Markdown report: version, revision, device, threads, when, the command.
inline std::string markdown_provenance(const eli::benchmark::RunContext& c) {
  return fmt::format("eli {} ({}), {} ({}), {}, {} threads, at {}: `{}`\n\n", c.eli_version,
                     c.git_revision, c.device.empty() ? "cpu" : c.device, c.device_name,
                     c.dtype.empty() ? "-" : c.dtype, c.threads, c.timestamp, c.command);
}

inline std::string row_json(const RowReport& r) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& row : r.rows) {
    nlohmann::json o = nlohmann::json::object();
    for (size_t c = 0; c < r.fields.size(); ++c) o[r.fields[c].name] = row[c];
    rows.push_back(std::move(o));
  }
  const nlohmann::json j = {{"schema_version", r.context.schema_version},
                            {"context", nlohmann::json::parse(context_to_json(r.context))},
                            {"config", r.config},
                            {"results", rows}};
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

inline std::string csv_text(const nlohmann::json& v) {
  std::string s;
  if (v.is_null()) return "";
  if (v.is_string()) {
    s = v.get<std::string>();
  } else if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i) {
      s += (i ? ";" : "") + (v[i].is_string() ? v[i].get<std::string>() : v[i].dump());
    }
  } else if (v.is_number_float()) {
    s = fmt::format("{:.6g}", v.get<double>());
  } else {
    s = v.dump();
  }
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char ch : s) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return q + "\"";
}

/// CSV: the fields, then the context repeated in every row.
inline std::string row_csv(const RowReport& r) {
  const nlohmann::json ctx = nlohmann::json::parse(context_to_json(r.context));
  std::string out;
  for (const Field& f : r.fields) out += (out.empty() ? "" : ",") + f.name;
  for (const auto& [k, v] : ctx.items()) out += "," + k;
  out += "\n";
  for (const auto& row : r.rows) {
    std::string line;
    for (size_t c = 0; c < r.fields.size(); ++c) line += (c ? "," : "") + csv_text(row[c]);
    for (const auto& [k, v] : ctx.items()) line += "," + csv_text(v);
    out += line + "\n";
  }
  return out;
}

/// Writes JSON / CSV / Markdown (`markdown_head`, then the table) where asked ("-" = stdout) and
/// says so on `text`.
inline void write_rows(RowReport r, const std::string& json, const std::string& csv,
                       const std::string& markdown, const std::string& markdown_head,
                       std::ostream& text) {
  r.context.stop_clock();
  if (!markdown.empty()) {
    eli::benchmark::write_text_file(markdown, markdown_head + markdown_table(r));
    if (markdown != "-") text << "wrote " << markdown << "\n";
  }
  if (!json.empty()) {
    eli::benchmark::write_text_file(json, row_json(r));
    if (json != "-") text << "wrote " << json << "\n";
  }
  if (!csv.empty()) {
    eli::benchmark::write_text_file(csv, row_csv(r));
    if (csv != "-") text << "wrote " << csv << "\n";
  }
}

}  // namespace examples
