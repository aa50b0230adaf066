// SPDX-License-Identifier: MIT
// Tests for ddpm/io/atomic_file.hpp: atomic replace, cleanup on failure, bounded reads.
#include <doctest/doctest.h>
#include <sys/resource.h>

#include <csignal>
#include <stdexcept>
#include <string>
#include <vector>

#include "ddpm/io/atomic_file.hpp"
#include "io/io_test_util.hpp"

using ddpm::io::test::TempDir;

namespace {

std::vector<std::byte> bytes_of(const std::string& s) {
  std::vector<std::byte> b(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) b[i] = std::byte(s[i]);
  return b;
}

std::string string_of(const std::vector<std::byte>& b) {
  std::string s(b.size(), '\0');
  for (std::size_t i = 0; i < b.size(); ++i) s[i] = char(b[i]);
  return s;
}

}  // namespace

TEST_CASE("atomic_file: write then read round-trips, and a rewrite replaces the file") {
  TempDir dir;
  const auto p = dir / "out.bin";
  ddpm::io::write_file_atomic(p, bytes_of("hello"));
  CHECK(string_of(ddpm::io::read_file(p)) == "hello");
  ddpm::io::write_file_atomic(p, bytes_of("a longer second version"));
  CHECK(string_of(ddpm::io::read_file(p)) == "a longer second version");
  ddpm::io::write_file_atomic(p, std::vector<std::byte>{});
  CHECK(ddpm::io::read_file(p).empty());
  CHECK(dir.entries() == std::vector<std::string>{"out.bin"});  // no temporary file left
}

TEST_CASE("atomic_file: the callback writer buffers many small and large writes in order") {
  TempDir dir;
  const auto p = dir / "big.bin";
  std::vector<std::byte> expect;
  std::uint64_t written = 0;
  ddpm::io::write_file_atomic(p, [&](ddpm::io::FileSink& sink) {
    for (int i = 0; i < 20000; ++i) {  // 20000 * 7 bytes > the 64 KiB buffer
      std::string s = std::to_string(i);  // (no "x" + std::string: GCC 12 -Wrestrict false positive)
      s += ';';
      sink.write(s.data(), s.size());
      for (char ch : s) expect.push_back(std::byte(ch));
    }
    std::vector<std::byte> big(200000, std::byte{0x5a});  // larger than the buffer: direct write
    sink.write(big);
    expect.insert(expect.end(), big.begin(), big.end());
    written = sink.bytes_written();
  });
  CHECK(written == expect.size());
  CHECK(ddpm::io::read_file(p) == expect);
}

TEST_CASE("atomic_file: an exception in the callback keeps the old file and removes the temp") {
  TempDir dir;
  const auto p = dir / "keep.txt";
  ddpm::io::write_file_atomic(p, bytes_of("old"));
  CHECK_THROWS_WITH_AS(ddpm::io::write_file_atomic(p,
                                                   [](ddpm::io::FileSink& sink) {
                                                     sink.write("new partial", 11);
                                                     throw std::runtime_error("boom");
                                                   }),
                       "boom", std::runtime_error);
  CHECK(string_of(ddpm::io::read_file(p)) == "old");
  CHECK(dir.entries() == std::vector<std::string>{"keep.txt"});
}

TEST_CASE("atomic_file: a missing folder is an IoError naming the path and the OS reason") {
  TempDir dir;
  const auto p = dir / "no_such_dir" / "f.bin";
  DDPM_CHECK_IO_ERROR(ddpm::io::write_file_atomic(p, bytes_of("x")), p.string(),
                      "No such file or directory");
  CHECK(dir.entries().empty());
}

TEST_CASE("atomic_file: replacing a folder fails cleanly and leaves no temporary file") {
  TempDir dir;
  const auto p = dir / "sub";
  std::filesystem::create_directory(p);
  DDPM_CHECK_IO_ERROR(ddpm::io::write_file_atomic(p, bytes_of("x")), p.string(), "Is a directory");
  CHECK(dir.entries() == std::vector<std::string>{"sub"});
  CHECK(std::filesystem::is_directory(p));
}

TEST_CASE(
    "atomic_file: a failing write (file size limit) reports the errno text, keeps the old file") {
  TempDir dir;
  const auto p = dir / "limited.bin";
  ddpm::io::write_file_atomic(p, bytes_of("previous contents"));
  // RLIMIT_FSIZE makes write() fail with EFBIG, standing in for a full disk (ENOSPC takes the
  // same path). SIGXFSZ would kill the process, so ignore it while the limit is set.
  rlimit old{};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
  auto* old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = old;
  small.rlim_cur = 4096;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  std::string message;
  try {
    ddpm::io::write_file_atomic(p, std::vector<std::byte>(100000, std::byte{1}));
  } catch (const ddpm::IoError& e) {
    message = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  INFO(message);
  CHECK(message.rfind(p.string(), 0) == 0);
  CHECK(message.find("File too large") != std::string::npos);
  CHECK(string_of(ddpm::io::read_file(p)) == "previous contents");
  CHECK(dir.entries() == std::vector<std::string>{"limited.bin"});
}

TEST_CASE("atomic_file: an empty path is a parameter error") {
  CHECK_THROWS_AS(ddpm::io::write_file_atomic("", bytes_of("x")), std::invalid_argument);
}

TEST_CASE("atomic_file: read_file errors name the file and the problem") {
  TempDir dir;
  const auto missing = dir / "missing.bin";
  DDPM_CHECK_IO_ERROR(ddpm::io::read_file(missing), missing.string(), "No such file or directory");
  DDPM_CHECK_IO_ERROR(ddpm::io::read_file(dir.path()), dir.path().string(), "is a folder");
  const auto p = dir / "ten.bin";
  ddpm::io::write_file_atomic(p, std::vector<std::byte>(10, std::byte{7}));
  DDPM_CHECK_IO_ERROR(ddpm::io::read_file(p, 9), p.string(), "more than the limit of 9 bytes");
  CHECK(ddpm::io::read_file(p, 10).size() == 10);
}

TEST_CASE("atomic_file: read_file of a non-regular file honours the limit while streaming") {
  // /dev/zero reports size 0 and never ends: the limit must stop the read.
  DDPM_CHECK_IO_ERROR(ddpm::io::read_file("/dev/zero", 100000), "/dev/zero", "more than the limit");
}
