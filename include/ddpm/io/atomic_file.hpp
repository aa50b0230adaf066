// SPDX-License-Identifier: MIT
// ddpm/io/atomic_file.hpp — whole-file reads with a size limit, and crash-safe atomic writes.
//
// Every file ddpm writes (PNG, GIF, IDX, safetensors checkpoints) goes through
// write_file_atomic: the bytes go to "<path>.tmp.<pid>.<n>" in the target's folder, the
// temporary file is fsync'ed, renamed over the target, and the folder is fsync'ed. A crash or an
// error at any point leaves either the old file or the new one, never a torn mix; on error the
// temporary file is removed and ddpm::IoError names the target path and the OS error text
// (e.g. "No space left on device"). POSIX only (open/fsync/rename).
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "ddpm/core/assert.hpp"
#include "ddpm/io/types.hpp"

namespace ddpm::io {

/// Default cap for read_file: 16 GiB, far above anything ddpm reads, but a bound all the same.
inline constexpr std::size_t default_max_read_bytes = std::size_t{1} << 34;

/// Buffered byte sink handed to the callback of write_file_atomic. Not copyable.
class FileSink {
 public:
  FileSink(int fd, std::string path) : fd_(fd), path_(std::move(path)) { buf_.reserve(buf_cap_); }
  FileSink(const FileSink&) = delete;
  FileSink& operator=(const FileSink&) = delete;

  /// Appends bytes. @throws IoError naming the target path and the OS error when a write fails.
  void write(const void* data, std::size_t size);
  void write(std::span<const std::byte> bytes) { write(bytes.data(), bytes.size()); }
  /// Bytes accepted so far (buffered or written).
  [[nodiscard]] std::uint64_t bytes_written() const noexcept { return total_; }
  /// Writes the buffer out (called by write_file_atomic before fsync).
  void flush();

 private:
  static constexpr std::size_t buf_cap_ = std::size_t{1} << 16;
  int fd_;
  std::string path_;
  std::vector<unsigned char> buf_;
  std::uint64_t total_ = 0;
};

/// Atomically replaces (or creates) `path` with what `fill` writes into the sink.
/// @pre the folder of `path` exists and is writable.
/// @post on success `path` holds exactly the bytes written, durably (file and folder fsync'ed);
///       on any failure (including an exception thrown by `fill`, which is rethrown) the old
///       file, if any, is untouched and no temporary file remains.
/// @throws IoError(path, "...: <errno text>") on OS errors.
inline void write_file_atomic(const std::filesystem::path& path,
                              const std::function<void(FileSink&)>& fill);

/// Atomically replaces (or creates) `path` with `bytes`. Same guarantees as above.
inline void write_file_atomic(const std::filesystem::path& path, std::span<const std::byte> bytes);

/// Reads a whole regular file.
/// @throws IoError(path, ...) if it cannot be opened ("No such file or directory"), is a folder,
///         cannot be read, or holds more than `max_bytes` bytes (checked before allocating).
[[nodiscard]] inline std::vector<std::byte> read_file(
    const std::filesystem::path& path, std::size_t max_bytes = default_max_read_bytes);

// ---------------------------------------------------------------- implementation

namespace detail {

/// The OS message for an errno value, e.g. "No space left on device" (thread-safe, unlike
/// strerror).
[[nodiscard]] inline std::string errno_text(int err) {
  return std::generic_category().message(err);
}

/// Writes all of [data, data+size) to fd, retrying on EINTR and short writes. Returns 0 or errno.
[[nodiscard]] inline int write_all(int fd, const unsigned char* data, std::size_t size) noexcept {
  while (size > 0) {
    const ::ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return 0;
}

/// A process-wide counter so two threads writing the same target never share a temporary file.
[[nodiscard]] inline std::uint64_t next_temp_serial() noexcept {
  static std::atomic<std::uint64_t> serial{0};
  return serial.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace detail

inline void FileSink::write(const void* data, std::size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
  total_ += size;
  if (buf_.size() + size <= buf_cap_) {
    buf_.insert(buf_.end(), p, p + size);
    return;
  }
  flush();
  if (size >= buf_cap_) {
    if (const int err = detail::write_all(fd_, p, size); err != 0)
      throw IoError(path_, "cannot write: " + detail::errno_text(err));
  } else {
    buf_.insert(buf_.end(), p, p + size);
  }
}

inline void FileSink::flush() {
  if (buf_.empty()) return;
  const int err = detail::write_all(fd_, buf_.data(), buf_.size());
  buf_.clear();
  if (err != 0) throw IoError(path_, "cannot write: " + detail::errno_text(err));
}

inline void write_file_atomic(const std::filesystem::path& path,
                              const std::function<void(FileSink&)>& fill) {
  detail::require(!path.empty(), "path", "must not be empty");
  const std::string target = path.string();
  detail::require(path.has_filename(), "path", "'", target, "' names a folder, not a file");
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  std::filesystem::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid()) + "." + std::to_string(detail::next_temp_serial());

  // Owns the descriptor and the temporary file until the rename commits them.
  struct Temp {
    int fd = -1;
    const std::filesystem::path& name;
    bool committed = false;
    ~Temp() {
      if (fd >= 0) ::close(fd);
      if (!committed) ::unlink(name.c_str());
    }
  } temp{-1, tmp};

  temp.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (temp.fd < 0) {
    const int err = errno;
    temp.committed = true;  // nothing was created
    throw IoError(target, "cannot create temporary file '" + tmp.filename().string() +
                              "': " + detail::errno_text(err));
  }
  FileSink sink(temp.fd, target);
  fill(sink);
  sink.flush();
  if (::fsync(temp.fd) != 0)
    throw IoError(target, "cannot write (fsync): " + detail::errno_text(errno));
  const int fd = temp.fd;
  temp.fd = -1;
  if (::close(fd) != 0) throw IoError(target, "cannot write (close): " + detail::errno_text(errno));
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    throw IoError(target, "cannot replace the file: " + detail::errno_text(errno));
  temp.committed = true;

  // Make the rename itself durable. Some file systems cannot fsync a folder (EINVAL); that is
  // not an error worth failing a completed write for.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    const int rc = ::fsync(dfd);
    const int err = errno;
    ::close(dfd);
    if (rc != 0 && err != EINVAL && err != ENOTSUP && err != EROFS)
      throw IoError(target, "written, but cannot sync its folder: " + detail::errno_text(err));
  }
}

inline void write_file_atomic(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  write_file_atomic(path, [bytes](FileSink& sink) { sink.write(bytes); });
}

inline std::vector<std::byte> read_file(const std::filesystem::path& path, std::size_t max_bytes) {
  const std::string name = path.string();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError(name, "cannot open for reading: " + detail::errno_text(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};

  struct ::stat st {};
  if (::fstat(fd, &st) != 0) throw IoError(name, "cannot stat: " + detail::errno_text(errno));
  if (S_ISDIR(st.st_mode)) throw IoError(name, "is a folder, expected a file");
  std::size_t expected = 0;
  if (S_ISREG(st.st_mode) && st.st_size > 0) {
    const auto size = static_cast<std::uint64_t>(st.st_size);
    if (size > max_bytes)
      throw IoError(name, detail::cat("file is ", size, " bytes, more than the limit of ",
                                      max_bytes, " bytes"));
    expected = static_cast<std::size_t>(size);
  }

  std::vector<std::byte> out;
  out.reserve(expected < max_bytes ? expected + 1 : expected);
  std::size_t filled = 0;
  for (;;) {
    // Grow by at least 64 KiB (non-regular files report size 0), never past max_bytes + 1 so an
    // oversized stream is detected without reading it all.
    if (filled == out.size()) {
      const std::size_t cap = max_bytes < SIZE_MAX ? max_bytes + 1 : max_bytes;
      if (filled >= cap)
        throw IoError(name, detail::cat("file is more than the limit of ", max_bytes, " bytes"));
      const std::size_t want = std::max<std::size_t>(expected + 1, filled + (std::size_t{1} << 16));
      out.resize(std::min(cap, std::max(want, filled + filled / 2)));
    }
    const ::ssize_t n = ::read(fd, out.data() + filled, out.size() - filled);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw IoError(name, "cannot read: " + detail::errno_text(errno));
    }
    if (n == 0) break;
    filled += static_cast<std::size_t>(n);
  }
  if (filled > max_bytes)
    throw IoError(name, detail::cat("file is more than the limit of ", max_bytes, " bytes"));
  out.resize(filled);
  return out;
}

}  // namespace ddpm::io
