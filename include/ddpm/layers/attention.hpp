// SPDX-License-Identifier: MIT
// ddpm/layers/attention.hpp — single-head scaled dot-product self-attention over the spatial
// positions of a packed qkv tensor (the core of the U-Net's AttnBlock, nn/unet/attn_block.hpp).
#pragma once

#include <concepts>
#include <cstddef>
#include <string_view>

#include "ddpm/backend/ops.hpp"
#include "ddpm/core/shape.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::nn {

/// out[:, c, i] = sum_j v[c, j] softmax_j(q[:, i] . k[:, j] / sqrt(C)), over the P = H W
/// positions of one sample, with q, k, v the channel thirds of qkv (PyTorch's
/// `qkv.reshape(b, 3, c, hw).unbind(1)` order).
///
/// No parameters and no state: the probabilities go into a caller-provided buffer, so that the
/// U-Net can put them in shared scratch memory and recompute them in backward instead of keeping
/// N P^2 values per attention block.
template <std::floating_point T, class B>
class Attention {
 public:
  using value_type = T;
  using backend_type = B;
  using ops = Ops<B>;

  Attention() = default;
  explicit Attention(const B& backend) : backend_(backend) {}

  /// Shape of the probabilities for a qkv of shape (N, 3C, H, W): (N, H W, H W).
  [[nodiscard]] static Shape probs_shape(const Shape& qkv) {
    return Shape{qkv.n(), qkv.h() * qkv.w(), qkv.h() * qkv.w()};
  }
  /// Shape of the output for a qkv of shape (N, 3C, H, W): (N, C, H, W).
  [[nodiscard]] static Shape output_shape(const Shape& qkv) {
    return Shape{qkv.n(), qkv.c() / 3, qkv.h(), qkv.w()};
  }

  /// qkv (N, 3C, H, W) -> probs (N, P, P) (written) and out (N, C, H, W).
  void forward(ConstView<T> qkv, View<T> probs, View<T> out) const {
    check(qkv.shape(), "Attention::forward");
    ddpm::detail::require_shape(probs.shape(), probs_shape(qkv.shape()), "Attention::forward probs");
    ddpm::detail::require_shape(out.shape(), output_shape(qkv.shape()), "Attention::forward out");
    ops::template attention_forward<T>(backend_, qkv, probs, out);
  }
  /// @pre  probs are those forward() computed from this qkv.
  /// @post dqkv = d loss / d qkv (assigned, never accumulated).
  void backward(ConstView<T> qkv, ConstView<T> probs, ConstView<T> dout, View<T> dqkv) const {
    check(qkv.shape(), "Attention::backward");
    ddpm::detail::require_shape(probs.shape(), probs_shape(qkv.shape()), "Attention::backward probs");
    ddpm::detail::require_shape(dout.shape(), output_shape(qkv.shape()), "Attention::backward dout");
    ddpm::detail::require_shape(dqkv.shape(), qkv.shape(), "Attention::backward dqkv");
    ops::template attention_backward<T>(backend_, qkv, probs, dout, dqkv);
  }

  template <class V>
  void visit_parameters(V&&) const {}

 private:
  static void check(const Shape& qkv, std::string_view what) {
    DDPM_REQUIRE(qkv.rank == 4 && qkv.c() % 3 == 0 && qkv.c() > 0, what,
                    "expected (N, 3C, H, W), got ", qkv.str());
  }

  B backend_{};
};

}  // namespace ddpm::nn
