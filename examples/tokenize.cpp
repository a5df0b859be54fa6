// tokenize: text -> GPT-2 ids as a JSON array, or (--decode) a JSON array of ids -> text.
#include <CLI/CLI.hpp>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "eli/error.h"
#include "eli/model.h"
#include "eli/tokenizer.h"
#include "exit_status.h"

namespace {

std::string read_stdin() {
  std::cin >> std::noskipws;
  return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}

std::vector<int64_t> parse_ids(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    ELI_FAIL("--decode expects a JSON array of token ids: {}", e.what());
  }
  ELI_CHECK(j.is_array(), "--decode expects a JSON array of token ids, got a JSON {}",
            j.type_name());
  std::vector<int64_t> ids;
  for (const auto& v : j) {
    ELI_CHECK(v.is_number_integer(), "--decode: got a JSON {} where an integer token id belongs",
              v.type_name());
    ids.push_back(v.get<int64_t>());
  }
  return ids;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "eli tokenize: GPT-2 byte-level BPE.\n"
      "Reads text from --text or stdin (taken byte for byte: a trailing newline is text too)\n"
      "and prints its token ids as a JSON array; with --decode, reads a JSON array of ids\n"
      "and prints their bytes exactly (no newline added)."};
  std::string text, tokenizer_dir;
  bool have_text = false, allow_special = false, decode = false;
  app.add_option("--text", text, "Input (instead of stdin)")->each([&](const std::string&) {
    have_text = true;
  });
  app.add_option("--tokenizer", tokenizer_dir,
                 "Directory with vocab.json + merges.txt or encoder.json + vocab.bpe "
                 "(default: eli's assets/tokenizer)");
  app.add_flag("--allow-special", allow_special,
               "Encode \"<|endoftext|>\" as the special token 50256 (else it is plain text)");
  app.add_flag("--decode", decode, "Input is a JSON array of ids; print the text");
  if (const auto rc = examples::parse_command_line(app, argc, argv)) return *rc;

  try {
    if (tokenizer_dir.empty()) tokenizer_dir = eli::model::assets_dir() + "/tokenizer";
    const auto tok = eli::Tokenizer::from_dir(tokenizer_dir);
    if (!have_text) text = read_stdin();
    if (decode) {
      const std::string out = tok.decode(parse_ids(text));
      std::cout.write(out.data(), static_cast<std::streamsize>(out.size()));
    } else {
      std::cout << nlohmann::json(tok.encode(text, allow_special)).dump() << "\n";
    }
    std::cout.flush();
    return std::cout.good() ? examples::kExitOk : examples::kExitError;
  } catch (const std::exception& e) {
    std::cerr << "tokenize: error: " << e.what() << "\n";
    return examples::kExitError;
  }
}
