// The Markdown tables of a benchmark report against its CSV: the same rows, and
// each cell the CSV value of the column it names, formatted as the text table
// formats it.
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "benchmark_test_util.h"
#include "eli/benchmark/benchmarker.h"
#include "eli/benchmark/report.h"

using namespace eli;
using namespace eli::benchmark;

namespace {

using eli::benchmark::testing::random_ids;

// A report over a tiny random model: quality on, two repetitions, a failed
// method among them.
Report small_report() {
  static const model::GPT2 m =
      model::GPT2::random(GPT2Config::named("L2-E64-H2-V1000"), 7, at::kCPU, at::kFloat);
  BenchmarkConfig c;
  c.warmup = 0;
  c.repetitions = 2;
  c.eval_ids = random_ids(60, 5);
  c.eval_prefix = 13;
  c.eval_tokens = 40;
  c.generation.cache.window_size = 8;
  Benchmarker b(m, c);
  Report rep;
  rep.context = RunContext::of(m, "random:L2-E64-H2-V1000");
  rep.context.command = "test | with a pipe";
  rep.config = c;
  rep.sweep.max_new_tokens = 4;
  rep.sweep.batch_sizes = {1, 2};
  rep.sweep.prompt_lens = {9};
  rep.results = b.compare_ids(
      {random_ids(40, 1)}, {"full_cache", "quant_int4", "sliding(window=6,sinks=1)+int8", "bogus"},
      rep.sweep);
  rep.context.stop_clock();
  return rep;
}

// Fields of a CSV line (fields with commas are quoted; the report has no quotes
// inside them).
std::vector<std::string> csv_fields(const std::string &s) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (char ch : s) {
    if (ch == '"') {
      quoted = !quoted;
    } else if (ch == ',' && !quoted) {
      out.emplace_back();
    } else {
      out.back() += ch;
    }
  }
  return out;
}

// Cells of a Markdown table row "| a | b \| c |" -> {"a", "b | c"}.
std::vector<std::string> md_cells(const std::string &line) {
  std::vector<std::string> out;
  std::string cur;
  for (size_t i = 1; i < line.size(); ++i) {
    if (line[i] == '\\' && i + 1 < line.size() && line[i + 1] == '|') {
      cur += '|';
      ++i;
    } else if (line[i] == '|') {
      const size_t b = cur.find_first_not_of(' '), e = cur.find_last_not_of(' ');
      out.push_back(b == std::string::npos ? "" : cur.substr(b, e - b + 1));
      cur.clear();
    } else {
      cur += line[i];
    }
  }
  return out;
}

// The table lines of a Markdown text (those starting with '|'), header first,
// without the alignment line.
std::vector<std::vector<std::string>> md_table(const std::string &md) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(md);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] != '|') continue;
    if (line.rfind("|:---|", 0) == 0) continue;
    rows.push_back(md_cells(line));
  }
  return rows;
}

struct Csv {
  std::map<std::string, size_t> index;
  std::vector<std::vector<std::string>> rows;
};

Csv parse_csv(const std::string &text) {
  Csv c;
  std::istringstream in(text);
  std::string line;
  std::getline(in, line);
  const auto names = csv_fields(line);
  for (size_t i = 0; i < names.size(); ++i) c.index[names[i]] = i;
  while (std::getline(in, line)) c.rows.push_back(csv_fields(line));
  return c;
}

// A number as the table prints it: "12.5", "3.1%", "3.1%!", "0.52x",
// "3.40e-05".
double table_number(std::string s) {
  double scale = 1;
  while (!s.empty() && (s.back() == '!' || s.back() == 'x' || s.back() == '%')) {
    if (s.back() == '%') scale = 0.01;
    s.pop_back();
  }
  return std::stod(s) * scale;
}

// Half a unit in the last place a table number is printed to: "12.5" -> 0.05,
// "1234" -> 0.5, "3.1%" -> 0.0005, "3.40e-05" -> 5e-8.
double half_unit(const std::string &cell) {
  const size_t dot = cell.find('.');
  size_t decimals = 0;
  if (dot != std::string::npos) {
    while (dot + 1 + decimals < cell.size() && std::isdigit(cell[dot + 1 + decimals])) ++decimals;
  }
  double u = 0.5 * std::pow(10.0, -static_cast<double>(decimals));
  if (const size_t e = cell.find('e'); e != std::string::npos)
    u *= std::pow(10.0, std::stod(cell.substr(e + 1)));
  if (cell.find('%') != std::string::npos) u *= 0.01;
  return u;
}

// Checks one Markdown table (header + rows) against the CSV rows `csv_rows` (in
// order).
void expect_same_as_csv(const std::vector<std::vector<std::string>> &md,
                        const std::vector<TableColumnInfo> &columns, const Csv &csv,
                        const std::vector<size_t> &csv_rows) {
  ASSERT_FALSE(md.empty());
  const auto &header = md.front();
  ASSERT_EQ(md.size() - 1, csv_rows.size()) << "Markdown rows vs CSV rows";
  std::vector<size_t> col;  // CSV index of each Markdown column
  for (const std::string &h : header) {
    const TableColumnInfo *info = nullptr;
    for (const auto &c : columns) info = c.header == h ? &c : info;
    ASSERT_NE(info, nullptr) << "a Markdown column that is no table column: " << h;
    ASSERT_EQ(csv.index.count(info->column), 1u) << "no CSV column " << info->column;
    col.push_back(csv.index.at(info->column));
  }
  const size_t error_col = csv.index.at("error");
  for (size_t i = 1; i < md.size(); ++i) {
    const auto &cells = md[i];
    const auto &row = csv.rows[csv_rows[i - 1]];
    ASSERT_EQ(cells.size(), header.size());
    SCOPED_TRACE("row " + std::to_string(i) + ": " + row[col[0]]);
    EXPECT_EQ(cells[0], "`" + row[col[0]] + "`");
    if (!row[error_col].empty()) {
      EXPECT_EQ(cells[1].rfind("ERROR (batch ", 0), 0u) << cells[1];
      EXPECT_NE(cells[1].find(row[error_col]), std::string::npos) << cells[1];
      continue;
    }
    for (size_t k = 1; k < header.size(); ++k) {
      SCOPED_TRACE(header[k]);
      const std::string &v = row[col[k]];
      if (v.empty()) {
        EXPECT_EQ(cells[k], "-");
      } else if (header[k] == "prompt") {  // prompt_lens "9;9" -> "9"; a ragged batch "a..b"
        EXPECT_EQ(cells[k], v.substr(0, v.find(';')));
      } else {
        const double want = std::stod(v), got = table_number(cells[k]);
        EXPECT_NEAR(got, want, half_unit(cells[k]) + 1e-5 * std::fabs(want))
            << cells[k] << " vs CSV " << v;
      }
    }
  }
}

}  // namespace

TEST(ReportMarkdown, SpeedTableHasTheCsvRowsAndColumns) {
  c10::InferenceMode guard;
  const Report rep = small_report();
  const Csv csv = parse_csv(to_csv(rep));
  ASSERT_EQ(csv.rows.size(), 8u);  // 4 methods x 2 batch sizes
  const auto md = md_table(format_table(rep.results, TableFormat::kMarkdown));
  std::vector<size_t> all(csv.rows.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  expect_same_as_csv(md, table_columns(), csv, all);

  // The text table shows the same columns, in the same order.
  std::istringstream text(format_table(rep.results));
  std::string line;
  std::getline(text, line);
  std::vector<std::string> text_headers;
  for (size_t i = 0; i < line.size();) {
    const size_t b = line.find_first_not_of(' ', i);
    if (b == std::string::npos) break;
    size_t e = line.find("  ", b);
    if (e == std::string::npos) e = line.size();
    text_headers.push_back(line.substr(b, e - b));
    i = e;
  }
  EXPECT_EQ(text_headers, md.front());
}

TEST(ReportMarkdown, QualityTableHasOneRowPerMethodFromTheCsv) {
  c10::InferenceMode guard;
  const Report rep = small_report();
  const Csv csv = parse_csv(to_csv(rep));
  const std::string q = format_quality_table(rep.results, TableFormat::kMarkdown);
  // The first CSV row of each method that did not fail.
  std::vector<size_t> first;
  std::vector<std::string> seen;
  for (size_t i = 0; i < csv.rows.size(); ++i) {
    const std::string &m = csv.rows[i][csv.index.at("method")];
    if (!csv.rows[i][csv.index.at("error")].empty()) continue;
    if (std::find(seen.begin(), seen.end(), m) != seen.end()) continue;
    seen.push_back(m);
    first.push_back(i);
  }
  ASSERT_EQ(first.size(), 3u);
  expect_same_as_csv(md_table(q), quality_table_columns(), csv, first);
  EXPECT_NE(q.find("13 tokens of held-out text prefilled"), std::string::npos) << q;
}

TEST(ReportMarkdown, ReportSaysWhatRanAndEscapesPipes) {
  c10::InferenceMode guard;
  const Report rep = small_report();
  const std::string md = format_report(rep, TableFormat::kMarkdown);
  EXPECT_NE(md.find("`test | with a pipe`"), std::string::npos) << md;  // the command, as code
  EXPECT_NE(md.find(rep.context.timestamp), std::string::npos);
  EXPECT_NE(md.find("| `sliding(window=6,sinks=1)+int8` |"), std::string::npos) << md;
  // Every table line has as many cells as its header (an unescaped '|' would
  // add one).
  const auto rows = md_table(md);
  ASSERT_GE(rows.size(), 2u);
  size_t width = rows.front().size();
  for (const auto &r : rows) {
    if (r[0] == "method") width = r.size();  // the quality table's header
    EXPECT_EQ(r.size(), width) << r[0];
  }
  // No run line of '|' outside the tables (it could read as a table row).
  std::istringstream in(md);
  std::string first;
  std::getline(in, first);
  EXPECT_EQ(first.find('|'), std::string::npos) << first;
}
