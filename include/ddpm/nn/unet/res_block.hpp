// SPDX-License-Identifier: MIT
// ddpm/nn/unet/res_block.hpp — the U-Net's residual block with time-embedding injection.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>

#include "ddpm/backend/ops.hpp"
#include "ddpm/backend/params.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/shape.hpp"
#include "ddpm/layers/conv2d.hpp"
#include "ddpm/layers/dropout.hpp"
#include "ddpm/layers/group_norm.hpp"
#include "ddpm/layers/init.hpp"
#include "ddpm/layers/linear.hpp"
#include "ddpm/layers/parameter.hpp"
#include "ddpm/nn/unet/config.hpp"
#include "ddpm/nn/unet/workspace.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::nn {

/// ResBlock(in, out) of ../shared/ref/unet.py:
///
///     h   = Conv3x3(SiLU(GN1(x))) + Linear(SiLU(emb))[:, :, None, None]     in -> out
///     out = Conv3x3(Dropout(SiLU(GN2(h)))) + (Conv1x1(x) if in != out else x)
///
/// Parameters, in PyTorch's order: norm1, conv1, emb_proj, norm2, conv2 (zero-initialised),
/// skip (only when in != out).
///
/// Memory: a training forward keeps h (N, out, H, W) and the GroupNorm statistics; backward
/// recomputes SiLU(GN1(x)), SiLU(GN2(h)) and the dropout output from them (the dropout mask from
/// its Philox stream). An inference forward keeps nothing: h goes to workspace slot b.
/// Both overwrite workspace slots a, b, c and vec.
template <std::floating_point T, class B>
class ResBlock {
 public:
  using value_type = T;
  using backend_type = B;
  using ops = Ops<B>;
  using slot = typename Workspace<T, B>::slot;

  /// `index` numbers the block for its dropout stream (see Pass).
  ResBlock(std::size_t in, std::size_t out, std::size_t emb_dim, std::size_t groups, double dropout,
           std::uint64_t index, const B& backend, ParamInit& init)
      : backend_(backend),
        in_(in),
        out_(out),
        emb_dim_(emb_dim),
        index_(index),
        norm1_(in, groups, backend, init),
        conv1_(in, out, ConvGeometry{3, 1, 1}, backend, init),
        emb_proj_(emb_dim, out, backend, init),
        norm2_(out, groups, backend, init),
        dropout_(dropout, backend),
        conv2_(out, out, ConvGeometry{3, 1, 1}, backend, init, /*zero_init=*/true),
        skip_(in != out ? std::optional<Conv2d<T, B>>(std::in_place, in, out, ConvGeometry{1, 1, 0},
                                                       backend, init)
                        : std::nullopt) {}

  [[nodiscard]] std::size_t in_channels() const noexcept { return in_; }
  [[nodiscard]] std::size_t out_channels() const noexcept { return out_; }
  [[nodiscard]] std::uint64_t index() const noexcept { return index_; }

  /// x: (N, in, H, W), emb_silu: (N, emb_dim) = SiLU(emb), out: (N, out, H, W) (not aliasing x
  /// or a workspace slot the block uses). With pass.train, keeps what backward() needs.
  void forward(ConstView<T> x, ConstView<T> emb_silu, View<T> out, Workspace<T, B>& ws,
               const Pass& pass) {
    const Shape hs = check(x, emb_silu, out.shape(), "ResBlock::forward");
    const std::size_t N = x.n();
    trained_ = pass.train;
    dropout_on_ = pass.train && dropout_.p() > 0.0;
    rng_ = pass.rng;
    stream_ = rng_stream::make(rng_stream::dropout, pass.step * 1024 + index_);

    View<T> a = ws.get(slot::a, x.shape());
    norm1_.forward(x, a, /*silu=*/true);
    View<T> h;
    if (pass.train) {
      h_.resize(hs);
      h = h_.view();
    } else {
      h = ws.get(slot::b, hs);
    }
    conv1_.forward(a, h);
    View<T> e = ws.get(slot::vec, Shape{N, out_});
    emb_proj_.forward(emb_silu, e);
    ops::template add_channel_bias<T>(backend_, h, e);

    View<T> a2 = ws.get(slot::a, hs);
    norm2_.forward(h, a2, /*silu=*/true);
    ConstView<T> in2 = a2;
    if (dropout_on_) {
      View<T> d = ws.get(slot::c, hs);
      dropout_.forward(a2, d, rng_, stream_);
      in2 = d;
    }
    conv2_.forward(in2, out);
    if (skip_) {
      View<T> s = ws.get(slot::a, hs);
      skip_->forward(x, s);
      ops::template add<T>(backend_, out, s, out);
    } else {
      ops::template add<T>(backend_, out, x, out);
    }
  }

  /// @pre  the last forward() of this block had pass.train, and x and emb_silu hold the values it
  ///       saw (the caller may have recomputed x into another buffer).
  /// @post dx (+)= d loss / d x (accumulated if `acc`); demb_silu += d loss / d emb_silu (skipped
  ///       if empty); every parameter gradient +=.
  void backward(ConstView<T> x, ConstView<T> emb_silu, ConstView<T> dy, View<T> dx, bool acc,
                View<T> demb_silu, Workspace<T, B>& ws) {
    const Shape hs = check(x, emb_silu, dy.shape(), "ResBlock::backward");
    DDPM_REQUIRE(trained_ && h_.shape() == hs, "ResBlock::backward",
                    "needs a forward with pass.train = true on this batch first");
    ddpm::detail::require_shape(dx.shape(), x.shape(), "ResBlock::backward dx");
    const std::size_t N = x.n();

    // skip path: dx (+)= dy, or the 1x1 convolution's transpose
    if (skip_) skip_->backward(x, dy, dx, acc);
    else if (acc) ops::template add<T>(backend_, dx, dy, dx);
    else ops::template copy<T>(backend_, dy, dx);

    // conv2(Dropout(SiLU(GN2(h)))), its input recomputed
    View<T> a = ws.get(slot::a, hs);
    norm2_.forward(h_.cview(), a, true);
    ConstView<T> in2 = a;
    if (dropout_on_) {
      View<T> d = ws.get(slot::b, hs);
      dropout_.forward(a, d, rng_, stream_);
      in2 = d;
    }
    View<T> g2 = ws.get(slot::c, hs);
    conv2_.backward(in2, dy, g2, false);
    ConstView<T> ga = g2;
    if (dropout_on_) {
      View<T> gd = ws.get(slot::a, hs);
      dropout_.backward(g2, gd, rng_, stream_, false);
      ga = gd;
    }
    View<T> dh = ws.get(slot::b, hs);
    norm2_.backward(h_.cview(), ga, dh, true, false);

    // h = conv1(...) + emb_proj(emb_silu) broadcast over H, W
    View<T> de = ws.get(slot::vec, Shape{N, out_});
    ops::template channel_sum<T>(backend_, dh, de);
    emb_proj_.backward(emb_silu, de, demb_silu, true);

    // conv1(SiLU(GN1(x))), its input recomputed
    View<T> a1 = ws.get(slot::a, x.shape());
    norm1_.forward(x, a1, true);
    View<T> g1 = ws.get(slot::c, x.shape());
    conv1_.backward(a1, dh, g1, false);
    norm1_.backward(x, g1, dx, true, true);
  }

  template <class V>
  void visit_parameters(V&& v) {
    visit_all(*this, v);
  }
  template <class V>
  void visit_parameters(V&& v) const {
    visit_all(*this, v);
  }

  /// Bytes kept between forward and backward (h and the GroupNorm statistics).
  [[nodiscard]] std::size_t state_bytes() const noexcept {
    return h_.capacity() * sizeof(T) + norm1_.state_bytes() + norm2_.state_bytes();
  }
  /// Frees h and the statistics (the next training forward allocates them again).
  void release() noexcept {
    h_.release();
    norm1_.release();
    norm2_.release();
    trained_ = false;
  }

 private:
  template <class Self, class V>
  static void visit_all(Self& self, V& v) {
    ddpm::detail::visit_prefixed(self.norm1_, "norm1", v);
    ddpm::detail::visit_prefixed(self.conv1_, "conv1", v);
    ddpm::detail::visit_prefixed(self.emb_proj_, "emb_proj", v);
    ddpm::detail::visit_prefixed(self.norm2_, "norm2", v);
    ddpm::detail::visit_prefixed(self.conv2_, "conv2", v);
    if (self.skip_) ddpm::detail::visit_prefixed(*self.skip_, "skip", v);
  }

  Shape check(ConstView<T> x, ConstView<T> emb_silu, const Shape& out, std::string_view what) const {
    DDPM_REQUIRE(x.shape().rank == 4 && x.c() == in_, what, "expected x (N, ", in_,
                    ", H, W), got ", x.shape().str());
    ddpm::detail::require_shape(emb_silu.shape(), Shape{x.n(), emb_dim_}, what);
    const Shape hs{x.n(), out_, x.h(), x.w()};
    ddpm::detail::require_shape(out, hs, what);
    return hs;
  }

  B backend_;
  std::size_t in_, out_, emb_dim_;
  std::uint64_t index_;
  GroupNorm<T, B> norm1_;
  Conv2d<T, B> conv1_;
  Linear<T, B> emb_proj_;
  GroupNorm<T, B> norm2_;
  Dropout<T, B> dropout_;
  Conv2d<T, B> conv2_;
  std::optional<Conv2d<T, B>> skip_;

  // saved by a training forward
  Tensor<T, B> h_;                 // (N, out, H, W)
  bool trained_ = false;
  bool dropout_on_ = false;
  Rng rng_{};
  std::uint64_t stream_ = 0;
};

}  // namespace ddpm::nn
