#pragma once
/// eli::Error and the ELI_CHECK macro: every bad input to the library surfaces as an
/// eli::Error whose message names the problem (field, value, allowed range).

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace eli {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
[[noreturn]] inline void throw_error(const char* file, int line, const std::string& msg) {
  (void)file;
  (void)line;
  throw Error(msg);
}
}  // namespace detail

}  // namespace eli

/// ELI_CHECK(cond, "format {}", args...) throws eli::Error with the formatted message.
#define ELI_CHECK(cond, ...)                                                                 \
  do {                                                                                       \
    if (!(cond)) ::eli::detail::throw_error(__FILE__, __LINE__, ::fmt::format(__VA_ARGS__)); \
  } while (0)

/// ELI_FAIL("format {}", args...) throws unconditionally.
#define ELI_FAIL(...) ::eli::detail::throw_error(__FILE__, __LINE__, ::fmt::format(__VA_ARGS__))
