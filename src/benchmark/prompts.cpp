#include "eli/benchmark/prompts.h"

#include <cctype>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "eli/error.h"

namespace eli::benchmark {

namespace {

bool blank(const std::string& line) {
  return line.find_first_not_of(" \t\v\f\r") == std::string::npos;
}

// ".jsonl", ".JSONL", ...
bool jsonl_name(const std::string& path) {
  const std::string ext = std::filesystem::path(path).extension().string();
  std::string lower;
  for (char c : ext) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower == ".jsonl";
}

// nlohmann's messages quote what was last read, which can be a whole long line.
std::string shortened(const std::string& s) {
  constexpr size_t kMax = 160;
  return s.size() <= kMax ? s : s.substr(0, kMax) + "...";
}

std::string prompt_of_json_line(const std::string& line, const std::string& source, size_t no) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    ELI_FAIL("prompts file '{}' line {}: not JSON ({})", source, no, shortened(e.what()));
  }
  ELI_CHECK(j.is_object(),
            "prompts file '{}' line {}: expected a JSON object with a \"prompt\" string, got {}",
            source, no, j.type_name());
  const auto it = j.find("prompt");
  ELI_CHECK(it != j.end(), "prompts file '{}' line {}: the object has no \"prompt\" key", source,
            no);
  ELI_CHECK(it->is_string(), "prompts file '{}' line {}: \"prompt\" is {}, expected a string",
            source, no, it->type_name());
  std::string prompt = it->get<std::string>();
  ELI_CHECK(!prompt.empty(), "prompts file '{}' line {}: \"prompt\" is empty", source, no);
  return prompt;
}

}  // namespace

std::vector<std::string> parse_prompts(const std::string& text, const std::string& source,
                                       bool jsonl) {
  std::vector<std::string> prompts;
  std::istringstream in(text);
  size_t no = 0;
  for (std::string line; std::getline(in, line);) {
    ++no;
    if (no == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (blank(line)) continue;
    prompts.push_back(jsonl ? prompt_of_json_line(line, source, no) : line);
  }
  ELI_CHECK(no > 0, "prompts file '{}' is empty", source);
  ELI_CHECK(!prompts.empty(), "prompts file '{}' holds no prompt: its {} lines are all blank",
            source, no);
  return prompts;
}

std::vector<std::string> load_prompts(const std::string& path) {
  ELI_CHECK(!std::filesystem::is_directory(path), "prompts file '{}' is a directory", path);
  std::ifstream in(path, std::ios::binary);
  ELI_CHECK(static_cast<bool>(in), "cannot read prompts file '{}'", path);
  std::ostringstream text;
  text << in.rdbuf();
  ELI_CHECK(!in.bad(), "failed reading prompts file '{}'", path);
  return parse_prompts(text.str(), path, jsonl_name(path));
}

}  // namespace eli::benchmark
