#pragma once
// Exit statuses, the same in every example tool (docs/ERRORS.md), and the command-line parse
// that maps CLI11's own codes (105 for a bad value, 109 for an unknown flag, ...) onto them.
#include <CLI/CLI.hpp>
#include <optional>
#include <string>

namespace examples {

/// Success, and --help.
constexpr int kExitOk = 0;
/// An error stopped the tool (`error: ...` on stderr says which): a usage error (a flag it does
/// not know, a flag value out of range), a file that cannot be read, a value the library refuses.
constexpr int kExitError = 1;
/// The run finished and its reports were written, but a requested method failed (its ERROR row
/// says why) or, in cache_memory, a target was missed.
constexpr int kExitFailed = 2;

/// Parses the command line. Returns the status to exit with when the tool should stop here
/// (--help: kExitOk after the usage text; a usage error: kExitError after CLI11's message),
/// nothing when it should go on.
/// CLI11 2.1 reads an empty value of a numeric option (`--batch ''`, `--seed=`) as 0: every
/// option whose value is a number (of app and its subcommands) refuses an empty one.
inline void refuse_empty_numbers(CLI::App& app) {
  static const CLI::Validator non_empty(
      [](std::string& v) { return v.empty() ? std::string("an empty value is not a number") : ""; },
      "");
  for (CLI::Option* opt : app.get_options()) {
    const std::string type = opt->get_type_name();
    if (opt->get_type_size() != 0 &&
        (type.find("INT") != std::string::npos || type.find("FLOAT") != std::string::npos ||
         type.find("NUMBER") != std::string::npos))
      opt->check(non_empty);
  }
  for (CLI::App* sub : app.get_subcommands({})) refuse_empty_numbers(*sub);
}

/// CLI11 2.1 takes the next argument as an option's value even when it is another option of the
/// tool (`--markdown --csv` wrote the markdown report to a file named `--csv`): a value that is
/// the name of one of the tool's options is refused (`--markdown=--csv` included).
inline void refuse_option_names_as_values(CLI::App& app, CLI::App& root) {
  CLI::Validator not_an_option(
      [&root](std::string& v) -> std::string {
        if (v.size() < 2 || v[0] != '-') return "";
        const std::string name = v.substr(0, v.find('='));
        if (root.get_option_no_throw(name) == nullptr) return "";
        return "'" + name + "' is an option of this tool, not a value (this option needs one)";
      },
      "");
  for (CLI::Option* opt : app.get_options()) {
    if (opt->get_type_size() != 0 && opt->get_expected_min() > 0) opt->check(not_an_option);
  }
  for (CLI::App* sub : app.get_subcommands({})) refuse_option_names_as_values(*sub, root);
}

inline std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv) {
  refuse_empty_numbers(app);
  refuse_option_names_as_values(app, app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitError;
  }
  return std::nullopt;
}

}  // namespace examples
