// SPDX-License-Identifier: MIT
// tests/io/io_test_util.hpp — temporary folders, raw file helpers and an IoError check macro.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "ddpm/core/assert.hpp"

namespace ddpm::io::test {

/// A fresh folder under the system temporary directory, removed with its contents on scope exit.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("ddpm_io_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" +
             std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::filesystem::path operator/(const std::string& name) const {
    return path_ / name;
  }
  /// Names of the entries in the folder (to check that no temporary file is left behind).
  [[nodiscard]] std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(path_))
      out.push_back(e.path().filename().string());
    return out;
  }

 private:
  std::filesystem::path path_;
};

inline void write_bytes(const std::filesystem::path& p, const std::vector<std::uint8_t>& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  REQUIRE(f.good());
}

inline void write_text(const std::filesystem::path& p, const std::string& text) {
  write_bytes(p, std::vector<std::uint8_t>(text.begin(), text.end()));
}

inline std::vector<std::uint8_t> read_bytes(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  REQUIRE(f.good());
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(f),
                                   std::istreambuf_iterator<char>());
}

inline std::vector<std::byte> as_bytes(const std::vector<std::uint8_t>& v) {
  std::vector<std::byte> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = std::byte(v[i]);
  return out;
}

}  // namespace ddpm::io::test

/// Checks that `expr` throws ddpm::IoError whose message starts with `file` and contains `problem`.
#define DDPM_CHECK_IO_ERROR(expr, file, problem)                       \
  do {                                                                 \
    bool ddpm_thrown_ = false;                                         \
    try {                                                              \
      (void)(expr);                                                    \
    } catch (const ::ddpm::IoError& ddpm_e_) {                         \
      ddpm_thrown_ = true;                                             \
      const std::string ddpm_msg_ = ddpm_e_.what();                    \
      INFO("message: ", ddpm_msg_);                                    \
      CHECK(ddpm_msg_.rfind(std::string(file), 0) == 0);               \
      CHECK(ddpm_e_.path() == std::string(file));                      \
      CHECK(ddpm_msg_.find(problem) != std::string::npos);             \
    }                                                                  \
    CHECK_MESSAGE(ddpm_thrown_, "expected ddpm::IoError from " #expr); \
  } while (0)
