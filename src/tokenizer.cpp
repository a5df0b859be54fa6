// GPT-2 byte-level BPE, following OpenAI's gpt-2/src/encoder.py step for step:
//  1. pre-tokenize with GPT-2's regex;
//  2. map each piece's bytes to vocabulary symbols (bytes_to_unicode);
//  3. repeatedly merge every occurrence of the adjacent pair of lowest merge rank.
// Two choices are ours:
//  - `\s` is spelled out as the Unicode White_Space set, which is what the Python `regex`
//    module that encoder.py uses matches. PCRE2 10.42's own `\s` under UCP also matches
//    U+180E (a space in old Unicode), which would split "a \u180eb" differently.
//  - Invalid UTF-8: the text is cut into maximal well-formed runs; each run goes through the
//    regex on its own and every byte outside them is a piece of its own (one byte token). We
//    do not use PCRE2_MATCH_INVALID_UTF: it would skip the bad bytes silently, and we would
//    still have to find them to keep them. Any byte string thus round-trips through
//    decode(encode(bytes)).

#include "eli/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <climits>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>
#include <unordered_map>

#include "bpe.h"
#include "eli/error.h"
#include "json_excerpt.h"
#include "utf8.h"

namespace eli {
namespace {

constexpr std::string_view kEndOfTextText = "<|endoftext|>";
constexpr size_t kMaxCachedPiece = 64;
constexpr size_t kMaxScanPiece = 64;  // longer pieces merge through bpe_merge_heap
constexpr size_t kMaxCacheEntries = 1 << 17;

// GPT-2's pattern with `\s` written out as White_Space (see the top of the file).
constexpr const char* kWhite =
    R"(\t\n\x{0B}\f\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F})"
    R"(\x{205F}\x{3000})";

std::string gpt2_pattern() {
  const std::string ws = kWhite;
  return R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^)" + ws + R"(\p{L}\p{N}]+|[)" + ws +
         "]+(?![^" + ws + "])|[" + ws + "]+";
}

// GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the other 68
// bytes for U+0100 onwards, in byte order.
std::array<uint32_t, 256> bytes_to_unicode() {
  std::array<uint32_t, 256> map{};
  std::array<bool, 256> printable{};
  for (int b = '!'; b <= '~'; ++b) printable[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) printable[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) printable[b] = true;
  uint32_t n = 0;
  for (int b = 0; b < 256; ++b) map[b] = printable[b] ? b : 256 + n++;
  return map;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  ELI_CHECK(f.good(), "tokenizer file '{}': cannot open", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  ELI_CHECK(!f.bad(), "tokenizer file '{}': read failed", path);
  return ss.str();
}

}  // namespace

struct Tokenizer::Impl {
  std::vector<std::string> id_bytes;
  std::array<int32_t, 256> byte_id{};
  std::unordered_map<uint64_t, detail::BpeMerge> merges;
  int32_t eot_id = -1;
  pcre2_code* re = nullptr;
  mutable std::mutex mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() { pcre2_code_free(re); }

  // text: the file's contents; path: its name in error messages.
  void load_vocab(const std::string& text, const std::string& path,
                  std::unordered_map<std::string, int32_t>* by_bytes);
  void load_merges(const std::string& text, const std::string& path,
                   const std::unordered_map<std::string, int32_t>& by_bytes);
  void compile_regex();
  void bpe(std::string_view piece, std::vector<int64_t>& out) const;
  void encode_ordinary(std::string_view text, std::vector<int64_t>& out) const;
  void encode_valid_run(std::string_view run, pcre2_match_data* md,
                        std::vector<int64_t>& out) const;
};

namespace {

// A vocabulary symbol (UTF-8 of byte-standing code points) back to raw bytes; false if a
// code point stands for no byte.
bool symbol_to_bytes(std::string_view sym, const std::unordered_map<uint32_t, uint8_t>& decoder,
                     std::string* out) {
  out->clear();
  size_t i = 0;
  while (i < sym.size()) {
    const size_t n = utf8::char_len(sym, i);
    if (n == 0) return false;
    auto b0 = static_cast<uint8_t>(sym[i]);
    uint32_t cp = n == 1 ? b0 : (b0 & (0xFF >> (n + 1)));
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<uint8_t>(sym[i + k]) & 0x3F);
    const auto it = decoder.find(cp);
    if (it == decoder.end()) return false;
    out->push_back(static_cast<char>(it->second));
    i += n;
  }
  return !out->empty();
}

std::unordered_map<uint32_t, uint8_t> byte_decoder() {
  std::unordered_map<uint32_t, uint8_t> d;
  const auto enc = bytes_to_unicode();
  for (int b = 0; b < 256; ++b) d[enc[b]] = static_cast<uint8_t>(b);
  return d;
}

}  // namespace

void Tokenizer::Impl::load_vocab(const std::string& text, const std::string& path,
                                 std::unordered_map<std::string, int32_t>* by_bytes) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& ex) {
    ELI_FAIL("tokenizer vocabulary '{}': not valid JSON: {}", path, ex.what());
  }
  ELI_CHECK(j.is_object() && !j.empty(),
            "tokenizer vocabulary '{}': expected a non-empty JSON object of token -> id", path);
  const auto n = static_cast<int64_t>(j.size());
  ELI_CHECK(n < INT32_MAX, "tokenizer vocabulary '{}': too many tokens ({})", path, n);
  id_bytes.assign(n, std::string());
  std::vector<bool> seen(n, false);
  const auto decoder = byte_decoder();
  std::string bytes;
  for (const auto& [sym, v] : j.items()) {
    ELI_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < n,
              "tokenizer vocabulary '{}': token '{}' has id {}; ids must be integers in [0, {})",
              path, sym, ::eli::detail::json_excerpt(v), n);
    const auto id = static_cast<int32_t>(v.get<int64_t>());
    ELI_CHECK(!seen[id], "tokenizer vocabulary '{}': id {} is used twice", path, id);
    seen[id] = true;
    ELI_CHECK(symbol_to_bytes(sym, decoder, &bytes),
              "tokenizer vocabulary '{}': token '{}' (id {}) is not a byte-level BPE symbol", path,
              sym, id);
    ELI_CHECK(by_bytes->emplace(bytes, id).second,
              "tokenizer vocabulary '{}': token '{}' duplicates the bytes of another token", path,
              sym);
    id_bytes[id] = bytes;
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = by_bytes->find(std::string(1, static_cast<char>(b)));
    ELI_CHECK(it != by_bytes->end(),
              "tokenizer vocabulary '{}': no token for byte 0x{:02X}; byte-level BPE needs all 256",
              path, b);
    byte_id[b] = it->second;
  }
  const auto eot = by_bytes->find(std::string(kEndOfTextText));
  if (eot != by_bytes->end()) eot_id = eot->second;
}

void Tokenizer::Impl::load_merges(const std::string& text, const std::string& path,
                                  const std::unordered_map<std::string, int32_t>& by_bytes) {
  const auto decoder = byte_decoder();
  std::string a_bytes, b_bytes;
  size_t pos = 0;
  int64_t line_no = 0;
  int32_t rank = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string_view line(text.data() + pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || (line_no == 1 && line.substr(0, 8) == "#version")) continue;
    const size_t sp = line.find(' ');
    const bool two = sp != std::string_view::npos && sp > 0 && sp + 1 < line.size() &&
                     line.find(' ', sp + 1) == std::string_view::npos;
    ELI_CHECK(two, "tokenizer merges '{}' line {}: expected two symbols separated by a space", path,
              line_no);
    const std::string_view a = line.substr(0, sp), b = line.substr(sp + 1);
    ELI_CHECK(symbol_to_bytes(a, decoder, &a_bytes) && symbol_to_bytes(b, decoder, &b_bytes),
              "tokenizer merges '{}' line {}: not byte-level BPE symbols", path, line_no);
    const auto ia = by_bytes.find(a_bytes), ib = by_bytes.find(b_bytes),
               im = by_bytes.find(a_bytes + b_bytes);
    ELI_CHECK(ia != by_bytes.end() && ib != by_bytes.end() && im != by_bytes.end(),
              "tokenizer merges '{}' line {}: '{}', '{}' or their merge is not in the vocabulary",
              path, line_no, a, b);
    ELI_CHECK(merges
                  .emplace(detail::bpe_pair_key(ia->second, ib->second),
                           detail::BpeMerge{rank, im->second})
                  .second,
              "tokenizer merges '{}' line {}: the pair '{}' '{}' is listed twice", path, line_no, a,
              b);
    ++rank;
  }
}

void Tokenizer::Impl::compile_regex() {
  const std::string pat = gpt2_pattern();
  int err = 0;
  PCRE2_SIZE err_off = 0;
  re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pat.c_str()), pat.size(), PCRE2_UTF | PCRE2_UCP,
                     &err, &err_off, nullptr);
  if (!re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    ELI_FAIL("tokenizer: PCRE2 rejected the GPT-2 pattern at offset {}: {}", err_off,
             reinterpret_cast<const char*>(msg));
  }
  pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);  // without JIT, pcre2_match interprets
}

void Tokenizer::Impl::bpe(std::string_view piece, std::vector<int64_t>& out) const {
  const bool cacheable = piece.size() <= kMaxCachedPiece;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(mu);
    const auto it = cache.find(std::string(piece));
    if (it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> w(piece.size());
  for (size_t i = 0; i < piece.size(); ++i) w[i] = byte_id[static_cast<uint8_t>(piece[i])];
  const auto find = [this](uint64_t key) -> const detail::BpeMerge* {
    const auto it = merges.find(key);
    return it == merges.end() ? nullptr : &it->second;
  };
  // Equal results (bpe.h); the queue only pays off past a few dozen bytes.
  if (w.size() <= kMaxScanPiece) {
    detail::bpe_merge_scan(w, find);
  } else {
    detail::bpe_merge_heap(w, find);
  }
  out.insert(out.end(), w.begin(), w.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(mu);
    if (cache.size() >= kMaxCacheEntries) cache.clear();
    cache.emplace(std::string(piece), std::move(w));
  }
}

void Tokenizer::Impl::encode_valid_run(std::string_view run, pcre2_match_data* md,
                                       std::vector<int64_t>& out) const {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(run.data());
  PCRE2_SIZE off = 0;
  while (off < run.size()) {
    const int rc = pcre2_match(re, subject, run.size(), off, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) {  // cannot happen (every character matches some branch)
      bpe(run.substr(off), out);
      return;
    }
    ELI_CHECK(rc >= 0, "tokenizer: PCRE2 match failed with error {}", rc);
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    PCRE2_SIZE s = ov[0], e = ov[1];
    if (s > off) bpe(run.substr(off, s - off), out);  // keep any skipped text
    if (e == s) e = s + utf8::char_len(run, s);       // never loop on an empty match
    bpe(run.substr(s, e - s), out);
    off = e;
  }
}

void Tokenizer::Impl::encode_ordinary(std::string_view text, std::vector<int64_t>& out) const {
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(re, nullptr);
  ELI_CHECK(md != nullptr, "tokenizer: out of memory for PCRE2 match data");
  try {
    size_t pos = 0;
    while (pos < text.size()) {
      const size_t valid = pos + utf8::valid_prefix(text.substr(pos));
      if (valid > pos) encode_valid_run(text.substr(pos, valid - pos), md, out);
      if (valid < text.size()) out.push_back(byte_id[static_cast<uint8_t>(text[valid])]);
      pos = valid + 1;
    }
  } catch (...) {
    pcre2_match_data_free(md);
    throw;
  }
  pcre2_match_data_free(md);
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_files(const std::string& vocab_path, const std::string& merges_path) {
  auto impl = std::make_unique<Impl>();
  std::unordered_map<std::string, int32_t> by_bytes;
  impl->load_vocab(read_file(vocab_path), vocab_path, &by_bytes);
  impl->load_merges(read_file(merges_path), merges_path, by_bytes);
  impl->compile_regex();
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::from_strings(const std::string& vocab_json, const std::string& merges_text,
                                  const std::string& origin) {
  auto impl = std::make_unique<Impl>();
  std::unordered_map<std::string, int32_t> by_bytes;
  impl->load_vocab(vocab_json, origin + " (vocabulary)", &by_bytes);
  impl->load_merges(merges_text, origin + " (merges)", by_bytes);
  impl->compile_regex();
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::from_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path d(dir);
  for (const auto& [vocab, merges] :
       {std::pair<const char*, const char*>{"vocab.json", "merges.txt"},
        {"encoder.json", "vocab.bpe"}}) {
    if (fs::is_regular_file(d / vocab) && fs::is_regular_file(d / merges))
      return from_files((d / vocab).string(), (d / merges).string());
  }
  ELI_FAIL(
      "tokenizer directory '{}' holds neither vocab.json + merges.txt nor encoder.json + "
      "vocab.bpe",
      dir);
}

std::vector<int64_t> Tokenizer::encode(const std::string& text, bool allow_special) const {
  std::vector<int64_t> out;
  out.reserve(text.size() / 3 + 1);
  const std::string_view t(text);
  size_t pos = 0;
  while (allow_special) {
    const size_t hit = t.find(kEndOfTextText, pos);
    if (hit == std::string_view::npos) break;
    ELI_CHECK(impl_->eot_id >= 0, "tokenizer: the vocabulary has no '<|endoftext|>' token");
    impl_->encode_ordinary(t.substr(pos, hit - pos), out);
    out.push_back(impl_->eot_id);
    pos = hit + kEndOfTextText.size();
  }
  impl_->encode_ordinary(t.substr(pos), out);
  return out;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  for (const int64_t id : ids) out += token_bytes(id);
  return out;
}

std::string Tokenizer::token_bytes(int64_t id) const {
  ELI_CHECK(id >= 0 && id < vocab_size(), "token id {} is out of range [0, {})", id, vocab_size());
  return impl_->id_bytes[static_cast<size_t>(id)];
}

int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(impl_->id_bytes.size()); }

std::string StreamDecoder::push(int64_t id) {
  pending_ += tok_->token_bytes(id);
  size_t i = 0;
  while (i < pending_.size()) {
    bool incomplete = false;
    const size_t n = utf8::char_len(pending_, i, &incomplete);
    if (n > 0) {
      i += n;
    } else if (incomplete) {
      break;  // a character that the next token may complete
    } else {
      ++i;  // a byte that no continuation can make valid: pass it on as it is
    }
  }
  std::string out = pending_.substr(0, i);
  pending_.erase(0, i);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace eli
