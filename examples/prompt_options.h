#pragma once
// --prompt (repeatable) and --prompts-file, the same in every tool that takes prompts: the
// prompts, in order (every --prompt, then the file's), tokenized and checked against the model.
// Prompts of your own run as given, one sequence each, whatever their lengths.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <string>
#include <vector>

#include "eli/benchmark/prompts.h"
#include "eli/error.h"
#include "eli/model_config.h"
#include "eli/tokenizer.h"

namespace examples {

struct PromptOptions {
  std::vector<std::string> prompts;  // --prompt, in order (a tool's default, if any, first)
  std::string file;                  // --prompts-file
  const CLI::Option* prompt_opt = nullptr;
};

inline void add_prompt_options(CLI::App& app, PromptOptions& p, const std::string& prompt_help) {
  // One value per --prompt: `--prompt a b` is refused (naming b) rather than read as two.
  p.prompt_opt =
      app.add_option("--prompt", p.prompts, prompt_help + "; repeatable")->allow_extra_args(false);
  if (!p.prompts.empty()) app.get_option("--prompt")->capture_default_str();
  app.add_option("--prompts-file", p.file,
                 "Prompts from a file, after any --prompt: one per line (blank lines skipped), or "
                 "JSONL with a \"prompt\" string in each line's object when the name ends in "
                 ".jsonl");
}

/// True when --prompt or --prompts-file was given on the command line.
inline bool prompts_given(const PromptOptions& p) {
  return (p.prompt_opt != nullptr && p.prompt_opt->count() > 0) || !p.file.empty();
}

/// Every --prompt, then the file's prompts. A tool's default --prompt is dropped when only
/// --prompts-file was given; without either, the default alone (or nothing).
inline std::vector<std::string> prompt_texts(const PromptOptions& p) {
  const bool given = p.prompt_opt != nullptr && p.prompt_opt->count() > 0;
  std::vector<std::string> texts;
  if (given || p.file.empty()) texts = p.prompts;
  if (!p.file.empty()) {
    for (auto& t : eli::benchmark::load_prompts(p.file)) texts.push_back(std::move(t));
  }
  return texts;
}

/// The first characters of a prompt, for messages.
inline std::string prompt_excerpt(const std::string& text) {
  std::string s = text.size() > 40 ? text.substr(0, 40) + "..." : text;
  for (char& c : s) c = c == '\n' || c == '\r' ? ' ' : c;
  return s;
}

/// The prompts as token ids for `model`; eli::Error naming the prompt (its number, from 1, and
/// its first characters) when one is empty, holds an id outside the model's vocabulary, or
/// with max_new_tokens does not fit in n_positions.
inline std::vector<std::vector<int64_t>> encode_prompts(const std::vector<std::string>& texts,
                                                        const eli::Tokenizer& tok,
                                                        const eli::GPT2Config& model,
                                                        int max_new_tokens) {
  std::vector<std::vector<int64_t>> ids;
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string what = fmt::format("prompt {} (\"{}\")", i + 1, prompt_excerpt(texts[i]));
    ids.push_back(tok.encode(texts[i]));
    const auto& p = ids.back();
    ELI_CHECK(!p.empty(), "{} is empty", what);
    for (int64_t id : p) {
      ELI_CHECK(id < model.vocab_size,
                "{}: token {} is outside the model's vocabulary of {} (random models with a "
                "small vocab need a matching tokenizer)",
                what, id, model.vocab_size);
    }
    const int64_t needed = static_cast<int64_t>(p.size()) + std::max(0, max_new_tokens - 1);
    ELI_CHECK(needed <= model.n_positions,
              "{} has {} tokens: with {} new tokens it needs {} positions, but the model has "
              "n_positions = {}",
              what, p.size(), max_new_tokens, needed, model.n_positions);
  }
  return ids;
}

}  // namespace examples
