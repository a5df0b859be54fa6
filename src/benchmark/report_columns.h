#pragma once
// The one list of result fields: report.cpp writes the JSON rows and CSV columns from it,
// report_table.cpp the table cells, so that the three cannot drift apart.

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eli/benchmark/benchmarker.h"

namespace eli::benchmark::detail {

struct Column {
  const char* name;   // JSON key and CSV header
  const char* group;  // JSON object it sits in ("quality", "cache"); "" = the row itself
  std::function<nlohmann::json(const MethodResult&)> get;
};

/// Every result field, in CSV order.
const std::vector<Column>& columns();
/// The column called `name`; an unknown name -> eli::Error.
const Column& column(const std::string& name);
/// A JSON number as a double; NaN for null and non-numbers.
double number(const nlohmann::json& v);

}  // namespace eli::benchmark::detail
