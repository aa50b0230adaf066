// SPDX-License-Identifier: MIT
// ddpm/eval/sha256.hpp — SHA-256 (FIPS 180-4), used to record which files a classifier was
// trained on; the hex digest of a file equals `sha256sum FILE`.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ddpm/io/atomic_file.hpp"
#include "ddpm/io/types.hpp"

namespace ddpm::eval {

/// Incremental SHA-256. Usage: Sha256 h; h.update(bytes); ...; std::string hex = h.hex_digest();
class Sha256 {
 public:
  Sha256() { reset(); }

  /// Back to the state of a new object.
  void reset() noexcept;
  /// Appends bytes to the message.
  void update(std::span<const std::byte> bytes) noexcept;
  void update(std::string_view s) noexcept {
    update(std::span<const std::byte>(reinterpret_cast<const std::byte*>(s.data()), s.size()));
  }
  /// The 32-byte digest of everything appended since construction or reset(); the object must
  /// be reset() before it is used again.
  [[nodiscard]] std::array<std::uint8_t, 32> digest() noexcept;
  /// digest() as 64 lower-case hex digits.
  [[nodiscard]] std::string hex_digest();

 private:
  void block(const std::uint8_t* p) noexcept;

  std::array<std::uint32_t, 8> h_{};
  std::array<std::uint8_t, 64> buf_{};
  std::size_t buf_len_ = 0;
  std::uint64_t total_ = 0;  // bytes
};

/// SHA-256 of bytes in memory, as hex.
[[nodiscard]] inline std::string sha256_hex(std::span<const std::byte> bytes);
/// SHA-256 of a file's bytes as stored on disk (so a .gz file hashes compressed), as hex.
/// @throws IoError(path, ...) if the file cannot be read.
[[nodiscard]] inline std::string sha256_file(const std::filesystem::path& path);
/// Content hash of a data set: SHA-256 of its pixel bytes (NCHW order) followed by its labels,
/// one byte each (labels outside [0, 255] are hashed modulo 256). For an MNIST-format split this
/// is the SHA-256 of the image file's payload after its 16-byte header, followed by the label
/// file's payload after its 8-byte header, whatever the compression:
///   (zcat train-images-idx3-ubyte.gz | tail -c +17; zcat train-labels-idx1-ubyte.gz | tail -c +9)
///   | sha256sum
[[nodiscard]] inline std::string dataset_sha256(const io::ImageDataset& data);

// ---------------------------------------------------------------- implementation

namespace detail {
inline constexpr std::array<std::uint32_t, 64> sha256_k = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

inline constexpr std::uint32_t rotr32(std::uint32_t x, int n) noexcept {
  return (x >> n) | (x << (32 - n));
}
}  // namespace detail

inline void Sha256::reset() noexcept {
  h_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  buf_len_ = 0;
  total_ = 0;
}

inline void Sha256::block(const std::uint8_t* p) noexcept {
  using detail::rotr32;
  std::uint32_t w[64];
  for (int i = 0; i < 16; ++i)
    w[i] = (std::uint32_t(p[4 * i]) << 24) | (std::uint32_t(p[4 * i + 1]) << 16) |
           (std::uint32_t(p[4 * i + 2]) << 8) | std::uint32_t(p[4 * i + 3]);
  for (int i = 16; i < 64; ++i) {
    const std::uint32_t s0 = rotr32(w[i - 15], 7) ^ rotr32(w[i - 15], 18) ^ (w[i - 15] >> 3);
    const std::uint32_t s1 = rotr32(w[i - 2], 17) ^ rotr32(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  std::uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6],
                h = h_[7];
  for (int i = 0; i < 64; ++i) {
    const std::uint32_t S1 = rotr32(e, 6) ^ rotr32(e, 11) ^ rotr32(e, 25);
    const std::uint32_t ch = (e & f) ^ (~e & g);
    const std::uint32_t t1 = h + S1 + ch + detail::sha256_k[std::size_t(i)] + w[i];
    const std::uint32_t S0 = rotr32(a, 2) ^ rotr32(a, 13) ^ rotr32(a, 22);
    const std::uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
    const std::uint32_t t2 = S0 + maj;
    h = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  h_[0] += a;
  h_[1] += b;
  h_[2] += c;
  h_[3] += d;
  h_[4] += e;
  h_[5] += f;
  h_[6] += g;
  h_[7] += h;
}

inline void Sha256::update(std::span<const std::byte> bytes) noexcept {
  const auto* p = reinterpret_cast<const std::uint8_t*>(bytes.data());
  std::size_t n = bytes.size();
  total_ += n;
  if (buf_len_) {
    const std::size_t take = std::min<std::size_t>(64 - buf_len_, n);
    for (std::size_t i = 0; i < take; ++i) buf_[buf_len_ + i] = p[i];
    buf_len_ += take;
    p += take;
    n -= take;
    if (buf_len_ < 64) return;
    block(buf_.data());
    buf_len_ = 0;
  }
  for (; n >= 64; p += 64, n -= 64) block(p);
  for (std::size_t i = 0; i < n; ++i) buf_[i] = p[i];
  buf_len_ = n;
}

inline std::array<std::uint8_t, 32> Sha256::digest() noexcept {
  const std::uint64_t bits = total_ * 8;
  buf_[buf_len_++] = 0x80;
  if (buf_len_ > 56) {
    while (buf_len_ < 64) buf_[buf_len_++] = 0;
    block(buf_.data());
    buf_len_ = 0;
  }
  while (buf_len_ < 56) buf_[buf_len_++] = 0;
  for (int i = 7; i >= 0; --i) buf_[buf_len_++] = std::uint8_t(bits >> (8 * i));
  block(buf_.data());
  buf_len_ = 0;
  std::array<std::uint8_t, 32> out{};
  for (std::size_t i = 0; i < 8; ++i)
    for (std::size_t j = 0; j < 4; ++j) out[4 * i + j] = std::uint8_t(h_[i] >> (24 - 8 * j));
  return out;
}

inline std::string Sha256::hex_digest() {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  for (const std::uint8_t b : digest()) {
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}

inline std::string sha256_hex(std::span<const std::byte> bytes) {
  Sha256 h;
  h.update(bytes);
  return h.hex_digest();
}

inline std::string sha256_file(const std::filesystem::path& path) {
  return sha256_hex(io::read_file(path));
}

inline std::string dataset_sha256(const io::ImageDataset& data) {
  Sha256 h;
  h.update(std::as_bytes(std::span<const std::uint8_t>(data.pixels)));
  std::vector<std::uint8_t> labels(data.labels.size());
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = std::uint8_t(data.labels[i] & 0xff);
  h.update(std::as_bytes(std::span<const std::uint8_t>(labels)));
  return h.hex_digest();
}

}  // namespace ddpm::eval
