// SPDX-License-Identifier: MIT
// ddpm/interop/common.hpp — what the xtensor and Eigen interop headers share: value ranges,
// the checked copy of user arrays into tensors and 8-bit data sets, and the host-memory check.
// No third-party include: ddpm/interop/xtensor.hpp and ddpm/interop/eigen.hpp add those.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "ddpm/backend/tags.hpp"
#include "ddpm/core/assert.hpp"
#include "ddpm/core/shape.hpp"
#include "ddpm/diffusion/sampler/sample.hpp"
#include "ddpm/io/types.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::interop {

/// Closed interval every value must lie in; the default accepts any finite value.
struct Range {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
};

/// The range of images the library trains on and samples into.
inline constexpr Range image_range{-1.0, 1.0};
/// The range of a mask (1 = keep, 0 = replace, anything between blends).
inline constexpr Range mask_range{0.0, 1.0};

/// How floating-point images become the 8-bit pixels of an io::ImageDataset (what Trainer::fit
/// takes): value v in [lo, hi] becomes round((v - lo) / (hi - lo) * 255). Integer images must
/// already be 8-bit values in [0, 255] and are copied as they are. Quantisation is exact for
/// images already on the 8-bit grid, e.g. pixels p / 127.5 - 1 with the default [-1, 1].
struct DatasetOptions {
  double lo = -1.0;  ///< the value that maps to pixel 0
  double hi = 1.0;   ///< the value that maps to pixel 255
};

namespace detail {

using ::ddpm::detail::cat;
using ::ddpm::detail::fail_argument;
using ::ddpm::detail::require;

/// Views into library tensors are only possible in host memory (CPU and reference backends).
template <class B>
inline constexpr bool host_backend_v =
    std::is_same_v<typename B::memory_space, ::ddpm::backend::host_memory>;

/// Throws naming `param` unless every value of p[0, n) is finite and inside `r`.
template <class V>
void check_values(const V* p, std::size_t n, std::string_view param, const Range& r) {
  if constexpr (std::is_floating_point_v<V>) {
    for (std::size_t i = 0; i < n; ++i) {
      const double v = double(p[i]);
      if (!std::isfinite(v)) fail_argument(param, "value ", v, " at flat index ", i, " is not finite");
      if (v < r.lo || v > r.hi)
        fail_argument(param, "value ", v, " at flat index ", i, " outside [", r.lo, ", ", r.hi, "]");
    }
  } else {
    static_assert(std::is_arithmetic_v<V>, "ddpm: interop: element type must be arithmetic");
    for (std::size_t i = 0; i < n; ++i) {
      const double v = double(p[i]);
      if (v < r.lo || v > r.hi)
        fail_argument(param, "value ", v, " at flat index ", i, " outside [", r.lo, ", ", r.hi, "]");
    }
  }
}

/// (N, C, H, W) from a rank-4 shape, or (N, 1, H, W) from a rank-3 (N, H, W) one.
inline Shape image_shape(std::span<const std::size_t> dims, std::string_view param) {
  if (dims.size() == 4) return Shape{dims[0], dims[1], dims[2], dims[3]};
  if (dims.size() == 3) return Shape{dims[0], 1, dims[1], dims[2]};
  std::string got = "(";
  for (std::size_t i = 0; i < dims.size(); ++i) got += (i ? ", " : "") + std::to_string(dims[i]);
  fail_argument(param, "expected images of shape (N, C, H, W) or (N, H, W), got rank ",
                dims.size(), " shape ", got, ")");
}

/// A tensor of backend B with `shape`, filled from n row-major values (converted to T) after
/// checking them.
template <class T, class B, class V>
Tensor<T, B> make_tensor(const V* p, Shape shape, std::string_view param, const Range& r) {
  check_values(p, shape.numel(), param, r);
  if constexpr (std::is_same_v<T, V>) {
    return Tensor<T, B>(shape, std::span<const T>(p, shape.numel()));
  } else {
    std::vector<T> v(shape.numel());
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = T(p[i]);
    return Tensor<T, B>(shape, std::span<const T>(v));
  }
}

/// Checks labels (n entries, each >= 0 and representable as int32).
template <class V>
std::vector<std::int32_t> make_labels(const V* p, std::size_t count, std::size_t n,
                                      std::string_view param) {
  static_assert(std::is_arithmetic_v<V>, "ddpm: to_dataset: labels must be integers");
  if (count != n) fail_argument(param, "got ", count, " labels for ", n, " images");
  std::vector<std::int32_t> out(count);
  for (std::size_t i = 0; i < count; ++i) {
    const double v = double(p[i]);
    if (!(v >= 0 && v <= double(std::numeric_limits<std::int32_t>::max())) || v != std::floor(v))
      fail_argument(param, "label ", v, " of image ", i, " is not a class index (an integer >= 0)");
    out[i] = std::int32_t(v);
  }
  return out;
}

/// The 8-bit data set of `shape` (N, C, H, W) from row-major values: integers copied when in
/// [0, 255], floats quantised from [opt.lo, opt.hi].
template <class V>
io::ImageDataset make_dataset(const V* p, Shape shape, std::vector<std::int32_t> labels,
                              std::string_view param, const DatasetOptions& opt) {
  require(std::isfinite(opt.lo) && std::isfinite(opt.hi) && opt.lo < opt.hi, "DatasetOptions",
          "needs finite lo < hi, got [", opt.lo, ", ", opt.hi, "]");
  require(shape.n() >= 1, param, "the data set is empty (N = 0)");
  require(shape.c() >= 1 && shape.h() >= 1 && shape.w() >= 1, param, "image dimensions ",
          shape.str(), " contain a zero");
  io::ImageDataset d;
  d.n = shape.n();
  d.c = shape.c();
  d.h = shape.h();
  d.w = shape.w();
  d.labels = std::move(labels);
  const std::size_t n = shape.numel();
  d.pixels.resize(n);
  if constexpr (std::is_floating_point_v<V>) {
    check_values(p, n, param, Range{opt.lo, opt.hi});
    const double scale = 255.0 / (opt.hi - opt.lo);
    for (std::size_t i = 0; i < n; ++i)
      d.pixels[i] = std::uint8_t(std::lround((double(p[i]) - opt.lo) * scale));
  } else {
    check_values(p, n, param, Range{0.0, 255.0});
    for (std::size_t i = 0; i < n; ++i) d.pixels[i] = std::uint8_t(p[i]);
  }
  return d;
}

}  // namespace detail
}  // namespace ddpm::interop
