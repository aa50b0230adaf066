// SPDX-License-Identifier: MIT
// ddpm/core/assert.hpp — error reporting: every user-facing error names the parameter or the file.
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace ddpm {

/// Thrown for I/O problems (missing file, corrupt data, failed write). The message always
/// starts with the path of the file concerned.
class IoError : public std::runtime_error {
 public:
  IoError(const std::string& path, const std::string& problem)
      : std::runtime_error(path + ": " + problem), path_(path) {}
  [[nodiscard]] const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
};

/// Thrown when training meets a non-finite loss or gradient too often (see train/trainer.hpp).
class NumericalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  os.precision(9);
  (os << ... << args);
  return os.str();
}

/// Throws std::invalid_argument("ddpm: <param>: <problem>") unless `ok`.
template <class... Args>
inline void require(bool ok, std::string_view param, const Args&... problem) {
  if (!ok) throw std::invalid_argument(cat("ddpm: ", param, ": ", problem...));
}

/// Throws std::invalid_argument("ddpm: <param>: <problem>") unconditionally.
template <class... Args>
[[noreturn]] inline void fail_argument(std::string_view param, const Args&... problem) {
  throw std::invalid_argument(cat("ddpm: ", param, ": ", problem...));
}

/// Throws std::invalid_argument naming `param` unless x is finite.
inline void require_finite(double x, std::string_view param) {
  if (!std::isfinite(x)) throw std::invalid_argument(cat("ddpm: ", param, ": must be finite, got ", x));
}

[[noreturn]] inline void assert_fail(const char* expr, const char* file, int line, const char* msg) {
  std::fprintf(stderr, "ddpm: internal assertion failed: %s (%s) at %s:%d\n", expr, msg, file, line);
  std::abort();
}

}  // namespace detail
}  // namespace ddpm

/// Argument check for hot paths: the message arguments are evaluated only when `cond` fails.
#define DDPM_REQUIRE(cond, param, ...) \
  do {                                 \
    if (!(cond)) ::ddpm::detail::fail_argument(param, __VA_ARGS__); \
  } while (0)

/// Internal invariant (a bug in ddpm if it fires). Active unless NDEBUG or DDPM_NO_ASSERT.
#if defined(NDEBUG) || defined(DDPM_NO_ASSERT)
#define DDPM_ASSERT(expr, msg) ((void)0)
#else
#define DDPM_ASSERT(expr, msg) \
  ((expr) ? (void)0 : ::ddpm::detail::assert_fail(#expr, __FILE__, __LINE__, msg))
#endif
