#pragma once
/// GPT-2 byte-level BPE tokenizer: the GPT-2 pre-tokenizer regex (PCRE2, UTF + UCP), merge
/// ranks, and the byte<->unicode map. Any byte string, invalid UTF-8 included, round-trips.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace eli {

class Tokenizer {
 public:
  static constexpr int64_t kEndOfText = 50256;

  /// vocab: vocab.json or encoder.json; merges: merges.txt or vocab.bpe.
  static Tokenizer from_files(const std::string& vocab_path, const std::string& merges_path);
  /// A directory holding vocab.json + merges.txt or encoder.json + vocab.bpe.
  static Tokenizer from_dir(const std::string& dir);
  /// The same from the two files' contents (vocab.json text, merges.txt text); `origin` names
  /// them in error messages.
  static Tokenizer from_strings(const std::string& vocab_json, const std::string& merges_text,
                                const std::string& origin = "<memory>");

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  /// allow_special: "<|endoftext|>" in the text becomes 50256; otherwise it is plain text.
  std::vector<int64_t> encode(const std::string& text, bool allow_special = false) const;
  /// Raw bytes of the tokens concatenated (may be invalid UTF-8 if cut mid-character).
  std::string decode(const std::vector<int64_t>& ids) const;
  /// Bytes of one token. Throws eli::Error for ids out of range.
  std::string token_bytes(int64_t id) const;
  int64_t vocab_size() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Streaming detokenizer: feed ids one at a time; emits only complete UTF-8 characters
/// (bytes that can never become valid are emitted as they are once that is certain).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(&tok) {}
  /// Returns the text that became complete with this token (possibly empty).
  std::string push(int64_t id);
  /// Returns whatever is still pending (possibly an incomplete UTF-8 sequence).
  std::string flush();

 private:
  const Tokenizer* tok_;
  std::string pending_;
};

}  // namespace eli
