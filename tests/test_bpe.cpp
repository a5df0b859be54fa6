// The two BPE merge loops (src/bpe.h) agree: on random merge tables (consistent or not, many
// ties of overlapping pairs) and on GPT-2's own merges over random letter strings up to 3000
// letters; and the tokenizer encodes one 320,000-letter word (12 s with the quadratic loop)
// into ids that decode back to it.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <unordered_map>

#include "bpe.h"
#include "eli/model.h"
#include "eli/tokenizer.h"

namespace {

using eli::detail::bpe_merge_heap;
using eli::detail::bpe_merge_scan;
using eli::detail::bpe_pair_key;
using eli::detail::BpeMerge;
using Table = std::unordered_map<uint64_t, BpeMerge>;

void expect_same(const std::vector<int32_t>& in, const Table& t, const std::string& what) {
  const auto find = [&](uint64_t k) -> const BpeMerge* {
    const auto it = t.find(k);
    return it == t.end() ? nullptr : &it->second;
  };
  std::vector<int32_t> a = in, b = in;
  bpe_merge_scan(a, find);
  bpe_merge_heap(b, find);
  ASSERT_EQ(a, b) << what << ", input of " << in.size() << " tokens";
}

TEST(Bpe, HeapEqualsScanOnRandomTables) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 300; ++trial) {
    const int alphabet = 2 + trial % 4;  // few symbols: long runs of equal, overlapping pairs
    Table t;
    int32_t next_id = alphabet;
    std::vector<int32_t> ids;
    for (int i = 0; i < alphabet; ++i) ids.push_back(i);
    const int n_merges = 1 + static_cast<int>(rng() % 40);
    std::vector<int32_t> ranks(static_cast<size_t>(n_merges));
    for (int i = 0; i < n_merges; ++i) ranks[static_cast<size_t>(i)] = i;
    if (trial % 2) std::shuffle(ranks.begin(), ranks.end(), rng);  // inconsistent tables too
    for (int i = 0; i < n_merges; ++i) {
      const int32_t a = ids[rng() % ids.size()], b = ids[rng() % ids.size()];
      if (t.count(bpe_pair_key(a, b))) continue;
      t.emplace(bpe_pair_key(a, b), BpeMerge{ranks[static_cast<size_t>(i)], next_id});
      ids.push_back(next_id++);
    }
    for (int len : {1, 2, 3, 7, 64, 65, 300}) {
      std::vector<int32_t> in(static_cast<size_t>(len));
      for (auto& x : in) x = static_cast<int32_t>(rng() % alphabet);
      expect_same(in, t, "random table " + std::to_string(trial));
    }
  }
}

TEST(Bpe, HeapEqualsScanOnGpt2Merges) {
  const std::string dir = eli::model::assets_dir() + "/tokenizer";
  std::ifstream vf(dir + "/encoder.json");  // = vocab.json
  ASSERT_TRUE(vf.good()) << dir;
  const auto vocab = nlohmann::json::parse(vf);
  std::ifstream mf(dir + "/vocab.bpe");  // = merges.txt
  Table t;
  std::string line;
  int32_t rank = 0;
  while (std::getline(mf, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto sp = line.find(' ');
    const std::string a = line.substr(0, sp), b = line.substr(sp + 1);
    t.emplace(bpe_pair_key(vocab.at(a).get<int32_t>(), vocab.at(b).get<int32_t>()),
              BpeMerge{rank++, vocab.at(a + b).get<int32_t>()});
  }
  ASSERT_GT(t.size(), 40000u);
  std::mt19937 rng(7);
  const std::string letters = "etaoinshrdlucmfwypvbgkjqxz";
  for (int trial = 0; trial < 200; ++trial) {
    const int len = trial < 190 ? 1 + static_cast<int>(rng() % 200) : 3000;
    std::vector<int32_t> in;
    const int spread = 1 + trial % 26;  // few letters: repeats; all letters: English-like pairs
    for (int i = 0; i < len; ++i) {
      in.push_back(vocab.at(std::string(1, letters[rng() % spread])).get<int32_t>());
    }
    expect_same(in, t, "gpt2 merges");
  }
}

TEST(Bpe, LongWordEncodesAndRoundTrips) {
  const auto tok = eli::Tokenizer::from_dir(eli::model::assets_dir() + "/tokenizer");
  std::string word;
  std::mt19937 rng(3);
  for (int i = 0; i < 320000; ++i) word += static_cast<char>('a' + rng() % 26);
  const auto ids = tok.encode(word);
  EXPECT_GT(ids.size(), 1000u);
  EXPECT_EQ(tok.decode(ids), word);
}

}  // namespace
