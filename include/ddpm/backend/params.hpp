// SPDX-License-Identifier: MIT
// ddpm/backend/params.hpp — small parameter structs shared by all backends' Ops.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ddpm {

/// Square-kernel 2-D convolution geometry (PyTorch Conv2d: cross-correlation, weight layout
/// (C_out, C_in, k, k), symmetric zero padding).
struct ConvGeometry {
  std::size_t kernel = 3;
  std::size_t stride = 1;
  std::size_t pad = 1;
  [[nodiscard]] constexpr std::size_t out_size(std::size_t in) const noexcept {
    return (in + 2 * pad - kernel) / stride + 1;
  }
};

/// One Adam/AdamW update (PyTorch semantics). grad_scale multiplies the gradient first (used for
/// gradient-norm clipping and for averaging over micro-batches without an extra pass).
struct AdamStep {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  ///< decoupled (AdamW) when `decoupled`, else L2 added to the gradient
  bool decoupled = true;
  std::uint64_t step = 1;     ///< 1-based step number for bias correction
  double grad_scale = 1.0;
};

}  // namespace ddpm
