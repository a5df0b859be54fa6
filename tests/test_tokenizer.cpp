// GPT-2 tokenizer: known ids, reference ids from OpenAI's encoder.py algorithm
// (tests/data/tokenizer_cases.json, made by gen_tokenizer_cases.py), byte round trips with
// invalid UTF-8, streaming decode, and refusal of malformed files.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "eli/error.h"
#include "eli/tokenizer.h"
#include "utf8.h"

namespace fs = std::filesystem;
using Ids = std::vector<int64_t>;

namespace {

const std::string kAssets = std::string(ELI_SOURCE_DIR) + "/assets/tokenizer";

const eli::Tokenizer& gpt2() {
  static const eli::Tokenizer tok = eli::Tokenizer::from_dir(kAssets);
  return tok;
}

std::string show(const std::string& s) {
  std::string out;
  for (const unsigned char c : s) {
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  return out;
}

// A temporary directory, removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("eli_tok_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name, std::ios::binary) << text;
    return (path / name).string();
  }
};

// The symbol GPT-2's bytes_to_unicode gives byte b, as UTF-8.
std::string byte_symbol(int b) {
  const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
  int cp = b;
  if (!printable) {
    cp = 256;
    for (int x = 0; x < b; ++x)
      if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE)) ++cp;
  }
  if (cp < 0x80) return std::string(1, static_cast<char>(cp));
  return {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
}

// A small byte-level vocabulary: the 256 byte symbols (ids 0..255) then `extra`.
std::string tiny_vocab(const std::vector<std::string>& extra) {
  nlohmann::json j = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) j[byte_symbol(b)] = b;
  for (size_t i = 0; i < extra.size(); ++i) j[extra[i]] = 256 + i;
  return j.dump();
}

void expect_load_error(const std::string& vocab, const std::string& merges,
                       const std::string& bad_file, const std::string& word) {
  TempDir dir;
  const std::string v = dir.write("vocab.json", vocab), m = dir.write("merges.txt", merges);
  try {
    eli::Tokenizer::from_files(v, m);
    ADD_FAILURE() << "loaded a malformed " << bad_file;
  } catch (const eli::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(bad_file), std::string::npos) << msg;
    EXPECT_NE(msg.find(word), std::string::npos) << "expected '" << word << "' in: " << msg;
  }
}

}  // namespace

TEST(Tokenizer, KnownGpt2Ids) {
  const auto& tok = gpt2();
  EXPECT_EQ(tok.vocab_size(), 50257);
  EXPECT_EQ(tok.encode("Hello world"), (Ids{15496, 995}));
  EXPECT_EQ(tok.encode("The dog"), (Ids{464, 3290}));
  EXPECT_EQ(tok.encode("a  b"), (Ids{64, 220, 275}));
  EXPECT_EQ(tok.encode(""), Ids{});
}

TEST(Tokenizer, MatchesReferenceCases) {
  std::ifstream f(std::string(ELI_TEST_DATA_DIR) + "/tokenizer_cases.json");
  ASSERT_TRUE(f.good());
  const nlohmann::json cases = nlohmann::json::parse(f);
  ASSERT_GE(cases.size(), 60u);
  for (const auto& c : cases) {
    const std::string text = c.at("text");
    const bool special = c.value("allow_special", false);
    const Ids want = c.at("ids").get<Ids>();
    const Ids got = gpt2().encode(text, special);
    EXPECT_EQ(got, want) << "text: \"" << show(text) << "\" allow_special=" << special;
    EXPECT_EQ(gpt2().decode(want), text) << show(text);
  }
}

TEST(Tokenizer, EndOfTextIsSpecialOnlyWhenAllowed) {
  const auto& tok = gpt2();
  EXPECT_EQ(tok.encode("<|endoftext|>", true), Ids{eli::Tokenizer::kEndOfText});
  const Ids plain = tok.encode("<|endoftext|>");
  EXPECT_GT(plain.size(), 1u);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), eli::Tokenizer::kEndOfText), 0);
  const Ids mixed = tok.encode("a<|endoftext|>b", true);
  EXPECT_EQ(mixed, (Ids{64, eli::Tokenizer::kEndOfText, 65}));
  EXPECT_EQ(tok.decode(mixed), "a<|endoftext|>b");
}

TEST(Tokenizer, InvalidUtf8BytesAreTheirOwnTokens) {
  const auto& tok = gpt2();
  const std::string bad = "\xff";
  const Ids ff = tok.encode(bad);
  ASSERT_EQ(ff.size(), 1u);
  EXPECT_EQ(tok.token_bytes(ff[0]), bad);
  Ids want = tok.encode("ab");
  want.push_back(ff[0]);
  for (const int64_t id : tok.encode("cd")) want.push_back(id);
  EXPECT_EQ(tok.encode("ab\xff"
                       "cd"),
            want);
  for (const std::string s : {"\xe4\xb8", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80", "x\x80y",
                              " \xe2\x82 \xf0\x9f\x98"})
    EXPECT_EQ(tok.decode(tok.encode(s)), s) << show(s);
}

TEST(Tokenizer, RandomBytesRoundTrip) {
  const auto& tok = gpt2();
  std::mt19937_64 rng(20240611);
  const std::vector<std::string> atoms = {" ",
                                          "  ",
                                          "\n",
                                          "\t",
                                          "'s",
                                          "'ll",
                                          "a",
                                          "Z",
                                          "7",
                                          "42",
                                          ".",
                                          "é",
                                          "中",
                                          "\xf0\x9f\x8d\x95",
                                          "\xe2\x80\x8d",
                                          "ー",
                                          "\xd9\x85",
                                          "\r\n",
                                          "!?",
                                          "<|",
                                          "endof",
                                          "\xe4",
                                          "\xb8",
                                          "\xff",
                                          "\xc3",
                                          "\x00"};
  int invalid = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string s;
    const int n = static_cast<int>(rng() % 48);
    for (int k = 0; k < n; ++k) {
      if (rng() % 3 == 0) {
        s += static_cast<char>(rng() & 0xFF);
      } else {
        s += atoms[rng() % atoms.size()];
      }
    }
    invalid += !eli::utf8::is_valid(s);
    const Ids ids = tok.encode(s);
    for (const int64_t id : ids) ASSERT_TRUE(id >= 0 && id < tok.vocab_size());
    ASSERT_EQ(tok.decode(ids), s) << "bytes: " << show(s);
    ASSERT_EQ(tok.decode(tok.encode(s, true)), s) << "bytes: " << show(s);
  }
  EXPECT_GT(invalid, 1000) << "the sample must include invalid UTF-8";
}

TEST(Tokenizer, DecodeOfRandomIdsRoundTrips) {
  const auto& tok = gpt2();
  std::mt19937_64 rng(7);
  for (int iter = 0; iter < 500; ++iter) {
    Ids ids(1 + rng() % 20);
    for (auto& id : ids) id = static_cast<int64_t>(rng() % (tok.vocab_size() - 1));
    const std::string s = tok.decode(ids);
    const Ids again = tok.encode(s);
    ASSERT_EQ(tok.decode(again), s) << show(s);
    ASSERT_LE(again.size(), s.size());
  }
}

TEST(Tokenizer, LongInputs) {
  const auto& tok = gpt2();
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "lorem ipsum 你好 ";
  const std::string spaces(200000, ' '), letters(200000, 'a');
  for (const std::string* s : std::vector<const std::string*>{&text, &spaces, &letters}) {
    const Ids ids = tok.encode(*s);
    EXPECT_LE(ids.size(), s->size());
    EXPECT_EQ(tok.decode(ids), *s);
  }
}

TEST(Tokenizer, TokenIdsOutOfRangeAreRefused) {
  const auto& tok = gpt2();
  EXPECT_EQ(tok.token_bytes(15496), "Hello");
  EXPECT_EQ(tok.token_bytes(220), " ");
  for (const int64_t id : {int64_t{-1}, int64_t{50257}, int64_t{1} << 40}) {
    try {
      tok.token_bytes(id);
      ADD_FAILURE() << id;
    } catch (const eli::Error& e) {
      EXPECT_NE(std::string(e.what()).find("out of range"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(tok.decode({15496, 50257}), eli::Error);
}

TEST(Tokenizer, LoadsHuggingFaceFileNames) {
  TempDir dir;
  fs::copy_file(kAssets + "/encoder.json", dir.path / "vocab.json");
  fs::copy_file(kAssets + "/vocab.bpe", dir.path / "merges.txt");
  const eli::Tokenizer tok = eli::Tokenizer::from_dir(dir.path.string());
  EXPECT_EQ(tok.encode("Hello world"), (Ids{15496, 995}));
  TempDir empty;
  try {
    eli::Tokenizer::from_dir(empty.path.string());
    ADD_FAILURE();
  } catch (const eli::Error& e) {
    EXPECT_NE(std::string(e.what()).find("merges.txt"), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, MergesLowestRankEverywhereFirst) {
  // encoder.py merges every occurrence of the best pair before looking at new pairs: "abab"
  // -> (a b)(a b) -> abab, even though "ab a" ranks above "ab ab".
  TempDir dir;
  const std::string v = dir.write("vocab.json", tiny_vocab({"ab", "aba", "abab"}));
  const std::string m = dir.write("merges.txt", "#version: 0.2\na b\nab a\nab ab\n");
  const eli::Tokenizer tok = eli::Tokenizer::from_files(v, m);
  EXPECT_EQ(tok.encode("abab"), Ids{258});
  EXPECT_EQ(tok.encode("aba"), Ids{257});
  EXPECT_EQ(tok.encode("abc"), (Ids{256, 'c'}));
  EXPECT_EQ(tok.encode("ba"), (Ids{'b', 'a'}));
}

TEST(Tokenizer, MalformedVocabularyIsRefused) {
  const std::string merges = "#version: 0.2\na b\n";
  expect_load_error("{\"a\": 0", merges, "vocab.json", "JSON");
  expect_load_error("[1, 2]", merges, "vocab.json", "object");
  std::string v = tiny_vocab({"ab"});
  v.replace(v.find("\"ab\":256"), 8, "\"ab\":-3");
  expect_load_error(v, merges, "vocab.json", "id");
  v = tiny_vocab({"ab"});
  v.replace(v.find("\"ab\":256"), 8, "\"ab\":255");
  expect_load_error(v, merges, "vocab.json", "twice");
  expect_load_error(tiny_vocab({"a b"}), merges, "vocab.json", "byte-level");
  nlohmann::json no_x = nlohmann::json::parse(tiny_vocab({}));
  no_x.erase("x");
  no_x["ab"] = static_cast<int>('x');
  expect_load_error(no_x.dump(), merges, "vocab.json", "0x78");
}

TEST(Tokenizer, MalformedMergesAreRefused) {
  const std::string vocab = tiny_vocab({"ab", "abc"});
  expect_load_error(vocab, "#version: 0.2\nab\n", "merges.txt", "line 2");
  expect_load_error(vocab, "#version: 0.2\na b c\n", "merges.txt", "line 2");
  expect_load_error(vocab, "#version: 0.2\na b\nb c\n", "merges.txt", "not in the vocabulary");
  expect_load_error(vocab, "#version: 0.2\na b\na b\n", "merges.txt", "twice");
  expect_load_error(vocab, "a\xff b\n", "merges.txt", "line 1");
  TempDir dir;
  const std::string v = dir.write("vocab.json", vocab);
  EXPECT_THROW(eli::Tokenizer::from_files(v, (dir.path / "nope.txt").string()), eli::Error);
}

TEST(StreamDecoder, NeverEmitsHalfACharacter) {
  const auto& tok = gpt2();
  const std::vector<std::string> texts = {
      "I love 🍕 and 🐍! 👨‍👩‍👧‍👦 family 🏳️‍🌈",
      "你好，世界！今天天气很好。", "नमस्ते दुनिया", "Привет, мир! 😀😃😄", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ₀₁₂ ﬁ"};
  int held_back = 0;
  for (const auto& text : texts) {
    eli::StreamDecoder dec(tok);
    std::string out;
    for (const int64_t id : tok.encode(text)) {
      const std::string piece = dec.push(id);
      EXPECT_TRUE(eli::utf8::is_valid(piece)) << "half a character: " << show(piece);
      held_back += !eli::utf8::is_valid(tok.token_bytes(id));
      out += piece;
    }
    out += dec.flush();
    EXPECT_EQ(out, text);
  }
  EXPECT_GT(held_back, 5) << "the texts must split characters across tokens";
}

TEST(StreamDecoder, BytesThatCannotCompleteAreEmitted) {
  const auto& tok = gpt2();
  const int64_t ff = tok.encode("\xff")[0], e4 = tok.encode("\xe4")[0];
  const int64_t b8 = tok.encode("\xb8")[0], ad = tok.encode("\xad")[0];
  eli::StreamDecoder dec(tok);
  EXPECT_EQ(dec.push(ff), "\xff");  // never valid: out at once
  EXPECT_EQ(dec.push(e4), "");      // may start a 3-byte character
  EXPECT_EQ(dec.push(b8), "");      // still may
  EXPECT_EQ(dec.push(ad), "中");    // E4 B8 AD
  EXPECT_EQ(dec.push(e4), "");
  EXPECT_EQ(dec.push(64),
            "\xe4"
            "a");  // 'a' cannot continue it: both go out
  EXPECT_EQ(dec.push(e4), "");
  EXPECT_EQ(dec.flush(), "\xe4");
  EXPECT_EQ(dec.flush(), "");
  EXPECT_THROW(dec.push(-5), eli::Error);
}
