// JSON nested far deeper than any real file (100k levels, a 200 KB input) where a config value,
// a vocabulary id or a tensor shape belongs: a clear eli::Error, no stack overflow from quoting
// the value in the message; the message stays short.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "eli/error.h"
#include "eli/model_config.h"
#include "eli/safetensors.h"
#include "eli/tokenizer.h"

namespace {

constexpr int kDepth = 100000;

std::string nested() { return std::string(kDepth, '[') + "1" + std::string(kDepth, ']'); }

template <class F>
void expect_short_error(F&& f, const char* what) {
  try {
    f();
    ADD_FAILURE() << what << ": no error";
  } catch (const eli::Error& e) {
    EXPECT_LT(std::string(e.what()).size(), 600u) << what << ": " << e.what();
  }
}

TEST(DeepJson, ConfigValue) {
  expect_short_error(
      [] { eli::GPT2Config::from_json_string("{\"n_layer\": " + nested() + "}", "deep"); },
      "config value");
  expect_short_error(
      [] { eli::GPT2Config::from_json_string("{\"model_type\": " + nested() + "}", "deep"); },
      "model_type");
  const std::string long_name(100000, 'x');
  expect_short_error(
      [&] { eli::GPT2Config::from_json_string("{\"model_type\": \"" + long_name + "\"}", "long"); },
      "a long string value");
  // Invalid UTF-8 inside a JSON string (the parser keeps it): quoted, not a json exception.
  expect_short_error(
      [] { eli::GPT2Config::from_json_string("{\"model_type\": \"gp\xe0\"}", "utf8"); },
      "a value with invalid UTF-8");
}

TEST(DeepJson, VocabularyId) {
  const auto dir = std::filesystem::temp_directory_path() / "eli_deep_json_vocab";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "vocab.json") << "{\"a\": " << nested() << "}";
  std::ofstream(dir / "merges.txt") << "#version: 0.2\n";
  expect_short_error(
      [&] {
        eli::Tokenizer::from_files((dir / "vocab.json").string(), (dir / "merges.txt").string());
      },
      "vocabulary id");
  std::filesystem::remove_all(dir);
}

TEST(DeepJson, SafetensorsShape) {
  const std::string header =
      "{\"w\": {\"dtype\": \"F32\", \"shape\": [" + nested() + "], \"data_offsets\": [0, 4]}}";
  std::vector<uint8_t> bytes(8);
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<uint8_t>(n >> (8 * i));
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.insert(bytes.end(), 4, 0);
  expect_short_error([&] { eli::safetensors::File::from_bytes(bytes, "deep"); }, "tensor shape");
}

}  // namespace
