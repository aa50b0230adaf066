// SPDX-License-Identifier: MIT
// ddpm/core/shape.hpp — a small runtime shape (rank 0..4), NCHW by convention.
#pragma once

#include <array>
#include <cstddef>
#include <initializer_list>
#include <string>

#include "ddpm/config.hpp"
#include "ddpm/core/assert.hpp"

namespace ddpm {

/// Dimensions of a contiguous row-major tensor. Rank 4 is read as (N, C, H, W), rank 2 as
/// (rows, cols), rank 1 as a vector. Trivially copyable, so it can be passed to kernels.
struct Shape {
  static constexpr std::size_t max_rank = 4;
  std::array<std::size_t, max_rank> dims{};
  std::size_t rank = 0;

  constexpr Shape() = default;
  constexpr Shape(std::initializer_list<std::size_t> d) {
    if (d.size() > max_rank) throw std::invalid_argument("ddpm: Shape: rank above 4");
    for (std::size_t x : d) dims[rank++] = x;
  }

  /// Product of the dimensions; 0 for the empty (rank-0) shape.
  [[nodiscard]] constexpr std::size_t numel() const noexcept {
    if (rank == 0) return 0;
    std::size_t n = 1;
    for (std::size_t i = 0; i < rank; ++i) n *= dims[i];
    return n;
  }
  [[nodiscard]] constexpr std::size_t operator[](std::size_t i) const noexcept { return dims[i]; }
  [[nodiscard]] constexpr std::size_t& operator[](std::size_t i) noexcept { return dims[i]; }

  // (N, C, H, W) accessors for rank-4 shapes.
  [[nodiscard]] constexpr std::size_t n() const noexcept { return dims[0]; }
  [[nodiscard]] constexpr std::size_t c() const noexcept { return dims[1]; }
  [[nodiscard]] constexpr std::size_t h() const noexcept { return dims[2]; }
  [[nodiscard]] constexpr std::size_t w() const noexcept { return dims[3]; }
  /// Elements per item of the leading dimension (C*H*W for NCHW).
  [[nodiscard]] constexpr std::size_t item_size() const noexcept {
    return rank == 0 || dims[0] == 0 ? 0 : numel() / dims[0];
  }

  friend constexpr bool operator==(const Shape& a, const Shape& b) noexcept {
    if (a.rank != b.rank) return false;
    for (std::size_t i = 0; i < a.rank; ++i)
      if (a.dims[i] != b.dims[i]) return false;
    return true;
  }

  [[nodiscard]] std::string str() const {
    std::string s = "(";
    for (std::size_t i = 0; i < rank; ++i) {
      if (i) s += ", ";
      s += std::to_string(dims[i]);
    }
    return s + ")";
  }
};

namespace detail {
/// Throws std::invalid_argument "ddpm: <what>: expected shape X, got Y" on mismatch.
/// Builds the message only on failure (it is called in every layer's forward and backward).
inline void require_shape(const Shape& got, const Shape& expected, std::string_view what) {
  if (!(got == expected)) require(false, what, "expected shape ", expected.str(), ", got ", got.str());
}
}  // namespace detail

}  // namespace ddpm
