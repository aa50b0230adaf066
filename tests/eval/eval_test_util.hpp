// tests/eval/eval_test_util.hpp — a temporary folder, the bundled data and the committed
// classifier for the eval tests.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <random>
#include <string>

#include "ddpm/io/idx.hpp"
#include "ddpm/io/types.hpp"

namespace ddpm::eval::test {

/// A fresh folder under the system temporary directory, removed with its contents on scope exit.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("ddpm_eval_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) +
             "_" + std::to_string(rd()));
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

 private:
  std::filesystem::path path_;
};

/// data/mnist10k of the source tree.
inline std::filesystem::path mnist_dir() {
  return std::filesystem::path(DDPM_SOURCE_DIR) / "data" / "mnist10k";
}
/// The committed classifier, trained by `ddpm-eval train-classifier` on data/mnist10k/train.
inline std::filesystem::path committed_classifier() {
  return std::filesystem::path(DDPM_SOURCE_DIR) / "data" / "classifiers" /
         "mnist_classifier.safetensors";
}

/// Images [begin, begin + count) of a data set (labels too, if any).
inline io::ImageDataset slice(const io::ImageDataset& d, std::size_t begin, std::size_t count) {
  REQUIRE(begin + count <= d.n);
  io::ImageDataset s;
  s.n = count;
  s.c = d.c;
  s.h = d.h;
  s.w = d.w;
  const std::size_t item = d.c * d.h * d.w;
  s.pixels.assign(d.pixels.begin() + std::ptrdiff_t(begin * item),
                  d.pixels.begin() + std::ptrdiff_t((begin + count) * item));
  if (!d.labels.empty())
    s.labels.assign(d.labels.begin() + std::ptrdiff_t(begin),
                    d.labels.begin() + std::ptrdiff_t(begin + count));
  return s;
}

}  // namespace ddpm::eval::test
