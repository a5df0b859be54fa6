#pragma once
/// Prompt sets read from a file, for the tools' --prompts-file and for programs of your own.
///
/// Two formats, chosen by the file name:
///   - "*.jsonl" (any case): one JSON object per line with a "prompt" string (other keys are ignored),
///     e.g. {"id": 7, "prompt": "And God said"}; the text is the string as JSON decodes it, so
///     a prompt may hold line breaks ("\n").
///   - anything else: plain text, one prompt per line, kept as written (leading and trailing
///     spaces included: GPT-2 tokenizes them).
/// In both, blank lines (nothing or only whitespace) are skipped, a line ending in "\r\n" loses
/// its "\r", and a UTF-8 byte-order mark at the start of the file is dropped. The bytes are
/// otherwise passed on unchanged (UTF-8 stays UTF-8).

#include <string>
#include <vector>

namespace eli::benchmark {

/// The prompts in `path`, in file order. Throws eli::Error naming the file (and the line, a
/// 1-based physical line number) when the file cannot be read, holds no prompt, or, for
/// .jsonl, a line is not a JSON object with a non-empty "prompt" string.
std::vector<std::string> load_prompts(const std::string& path);

/// The same on text already read: `source` names it in error messages; `jsonl` selects the
/// format.
std::vector<std::string> parse_prompts(const std::string& text, const std::string& source,
                                       bool jsonl);

}  // namespace eli::benchmark
