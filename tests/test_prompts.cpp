// Prompt sets from files (--prompts-file): plain text one per line, JSONL with a "prompt" string;
// bad files are errors naming the file and the line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "eli/benchmark/prompts.h"
#include "eli/error.h"

using eli::benchmark::load_prompts;
using eli::benchmark::parse_prompts;
using Prompts = std::vector<std::string>;

namespace {

// A file under a fresh temporary directory, removed with it.
class PromptFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("eli_prompts_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& bytes) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }
  std::filesystem::path dir_;
};

// The eli::Error message of f(), "" when it does not throw one.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const eli::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_F(PromptFiles, TextOnePromptPerLineBlankLinesSkipped) {
  const std::string p = write("p.txt", "In the beginning\n\n   \nAnd God said \n\tAmen");
  EXPECT_EQ(load_prompts(p), (Prompts{"In the beginning", "And God said ", "\tAmen"}));
}

TEST_F(PromptFiles, CrlfLineEndsAndByteOrderMark) {
  const std::string p = write("p.txt",
                              "\xEF\xBB\xBF"
                              "first\r\n\r\nsecond\r\n");
  EXPECT_EQ(load_prompts(p), (Prompts{"first", "second"}));
  const std::string j =
      write("p.jsonl", "\xEF\xBB\xBF{\"prompt\": \"a\"}\r\n\r\n{\"prompt\": \"b\\r\\n\"}\r\n");
  EXPECT_EQ(load_prompts(j), (Prompts{"a", "b\r\n"}));  // escapes inside JSON are kept
}

TEST_F(PromptFiles, Utf8PassesThroughUnchanged) {
  const std::string text =
      "Καὶ εἶπεν ὁ θεός\n天地\nЛюбовь долготерпит 🙂\n";
  EXPECT_EQ(load_prompts(write("u.txt", text)),
            (Prompts{"Καὶ εἶπεν ὁ θεός", "天地", "Любовь долготерпит 🙂"}));
  EXPECT_EQ(load_prompts(write("u.jsonl", "{\"prompt\": \"天地 \\u00e9\"}\n{\"prompt\": \"é\"}")),
            (Prompts{"天地 é", "é"}));
}

TEST_F(PromptFiles, JsonlTakesThePromptKeyOfEachObject) {
  const std::string p = write("set.JSONL",
                              "{\"id\": 1, \"prompt\": \"line one\\nline two\", \"x\": [1]}\n"
                              "\n"
                              "  {\"prompt\": \"  spaced  \"}  \n");
  EXPECT_EQ(load_prompts(p), (Prompts{"line one\nline two", "  spaced  "}));
  // Not .jsonl: the same lines are plain text prompts.
  EXPECT_EQ(load_prompts(write("set.json", "{\"prompt\": \"a\"}\n")),
            (Prompts{"{\"prompt\": \"a\"}"}));
}

TEST_F(PromptFiles, BadJsonLinesNameTheFileAndLine) {
  const std::string good = "{\"prompt\": \"ok\"}\n\n";
  struct Case {
    std::string line, says;
  };
  const std::vector<Case> cases{
      {"{\"prompt\": \"unterminated}", "not JSON"},
      {"not json at all", "not JSON"},
      {"[\"prompt\", \"x\"]", "got array"},
      {"\"just a string\"", "got string"},
      {"{\"text\": \"x\"}", "no \"prompt\" key"},
      {"{\"prompt\": 42}", "\"prompt\" is number"},
      {"{\"prompt\": null}", "\"prompt\" is null"},
      {"{\"prompt\": [\"a\"]}", "\"prompt\" is array"},
      {"{\"prompt\": \"\"}", "\"prompt\" is empty"},
      {"{\"prompt\": \"a\"} trailing", "not JSON"},
      {std::string(100000, '[') + std::string(100000, ']'), "got array"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.line.substr(0, 40));
    const std::string p = write("bad.jsonl", good + c.line + "\n" + good);
    const std::string msg = error_of([&] { load_prompts(p); });
    EXPECT_NE(msg.find("'" + p + "' line 3"), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.says), std::string::npos) << msg;
    EXPECT_LT(msg.size(), 600u) << "a message quotes at most a short piece of the line";
  }
}

TEST_F(PromptFiles, EmptyBlankMissingAndDirectoryAreErrors) {
  const std::string empty = write("empty.txt", "");
  EXPECT_NE(error_of([&] { load_prompts(empty); }).find("'" + empty + "' is empty"),
            std::string::npos);
  const std::string blank = write("blank.jsonl", "\n  \r\n\t\n");
  EXPECT_NE(error_of([&] { load_prompts(blank); }).find("its 3 lines are all blank"),
            std::string::npos)
      << error_of([&] { load_prompts(blank); });
  const std::string missing = (dir_ / "nope.txt").string();
  EXPECT_NE(error_of([&] { load_prompts(missing); }).find("cannot read prompts file '" + missing),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_prompts(dir_.string()); }).find("is a directory"),
            std::string::npos);
}

TEST(Prompts, ParseTextWithoutAFile) {
  EXPECT_EQ(parse_prompts("a\nb", "inline", false), (Prompts{"a", "b"}));
  EXPECT_EQ(parse_prompts("{\"prompt\":\"a\"}", "inline", true), (Prompts{"a"}));
  EXPECT_THROW(parse_prompts("", "inline", false), eli::Error);
}
