// SPDX-License-Identifier: MIT
// ddpm/nn/unet/attn_block.hpp — the U-Net's (multi-head) spatial self-attention block.
#pragma once

#include <concepts>
#include <cstddef>
#include <string_view>

#include "ddpm/backend/ops.hpp"
#include "ddpm/backend/params.hpp"
#include "ddpm/core/shape.hpp"
#include "ddpm/layers/attention.hpp"
#include "ddpm/layers/conv2d.hpp"
#include "ddpm/layers/group_norm.hpp"
#include "ddpm/layers/init.hpp"
#include "ddpm/layers/parameter.hpp"
#include "ddpm/nn/unet/workspace.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::nn {

/// AttnBlock(C) of ../shared/ref/unet.py:
///
///     q, k, v = Conv1x1(GN(x)) split into channel thirds            C -> 3C
///     out     = x + Conv1x1(Attention(q, k, v))                       (proj, zero-initialised)
///
/// with attention over the H W positions in `heads` heads of d = C / heads channels each, scale
/// 1/sqrt(d). The qkv channels are ordered head by head, [q_0; k_0; v_0; q_1; k_1; v_1; ...]
/// (guided-diffusion's QKVAttentionLegacy layout), so (N, 3C, H, W) is, in memory, the
/// (N heads, 3d, H, W) batch of single-head problems that the backend's attention op solves, and
/// the heads' outputs concatenate to (N, C, H, W) the same way. One head is the reference's
/// AttnBlock exactly. Parameters: norm, qkv, proj (the same shapes for any head count).
///
/// Memory: keeps only the GroupNorm statistics. Backward recomputes GN(x), qkv, the attention
/// probabilities and output (one 1x1 convolution and one attention forward) instead of keeping
/// (4 C + H W) H W values per sample. Overwrites workspace slots a..f.
template <std::floating_point T, class B>
class AttnBlock {
 public:
  using value_type = T;
  using backend_type = B;
  using ops = Ops<B>;
  using slot = typename Workspace<T, B>::slot;

  /// @throws std::invalid_argument when heads is 0 or does not divide channels.
  AttnBlock(std::size_t channels, std::size_t groups, const B& backend, ParamInit& init,
            std::size_t heads = 1)
      : backend_(backend),
        channels_(channels),
        heads_(checked_heads(channels, heads)),
        norm_(channels, groups, backend, init),
        qkv_(channels, 3 * channels, ConvGeometry{1, 1, 0}, backend, init),
        proj_(channels, channels, ConvGeometry{1, 1, 0}, backend, init, /*zero_init=*/true),
        attn_(backend) {}

  [[nodiscard]] std::size_t channels() const noexcept { return channels_; }
  [[nodiscard]] std::size_t heads() const noexcept { return heads_; }

  /// x, out: (N, C, H, W); out must not alias x or workspace slots a..f.
  void forward(ConstView<T> x, View<T> out, Workspace<T, B>& ws) {
    check(x.shape(), out.shape(), "AttnBlock::forward");
    compute_attention(x, ws);
    const View<T> o = ws.get(slot::d, x.shape());
    proj_.forward(o, out);
    ops::template add<T>(backend_, out, x, out);
  }

  /// @pre  x holds the values the last forward() saw.
  /// @post dx (+)= d loss / d x (accumulated if `acc`); every parameter gradient +=.
  void backward(ConstView<T> x, ConstView<T> dy, View<T> dx, bool acc, Workspace<T, B>& ws) {
    check(x.shape(), dy.shape(), "AttnBlock::backward");
    ddpm::detail::require_shape(dx.shape(), x.shape(), "AttnBlock::backward dx");
    if (acc) ops::template add<T>(backend_, dx, dy, dx);
    else ops::template copy<T>(backend_, dy, dx);

    compute_attention(x, ws);  // a = GN(x), b = qkv, c = probs, d = attention output
    const Shape qs = qkv_shape(x.shape());
    const View<T> a = ws.get(slot::a, x.shape());
    const View<T> q = ws.get(slot::b, qs);
    const View<T> p = ws.get(slot::c, Attention<T, B>::probs_shape(per_head(qs)));
    const View<T> o = ws.get(slot::d, x.shape());
    const View<T> go = ws.get(slot::e, x.shape());
    proj_.backward(o, dy, go, false);
    const View<T> gq = ws.get(slot::f, qs);
    attn_.backward(q.reshape(per_head(qs)), p, go.reshape(per_head(x.shape())),
                   gq.reshape(per_head(qs)));
    const View<T> ga = ws.get(slot::d, x.shape());  // the attention output is dead now
    qkv_.backward(a, gq, ga, false);
    norm_.backward(x, ga, dx, false, true);
  }

  template <class V>
  void visit_parameters(V&& v) {
    visit_all(*this, v);
  }
  template <class V>
  void visit_parameters(V&& v) const {
    visit_all(*this, v);
  }

  [[nodiscard]] std::size_t state_bytes() const noexcept { return norm_.state_bytes(); }
  /// Frees the saved statistics.
  void release() noexcept { norm_.release(); }

 private:
  template <class Self, class V>
  static void visit_all(Self& self, V& v) {
    ddpm::detail::visit_prefixed(self.norm_, "norm", v);
    ddpm::detail::visit_prefixed(self.qkv_, "qkv", v);
    ddpm::detail::visit_prefixed(self.proj_, "proj", v);
  }

  [[nodiscard]] static Shape qkv_shape(const Shape& x) { return Shape{x.n(), 3 * x.c(), x.h(), x.w()}; }
  /// (N, K, H, W) seen as (N heads, K / heads, H, W): one single-head problem per (sample, head).
  [[nodiscard]] Shape per_head(const Shape& s) const {
    return Shape{s.n() * heads_, s.c() / heads_, s.h(), s.w()};
  }
  static std::size_t checked_heads(std::size_t channels, std::size_t heads) {
    ddpm::detail::require(heads > 0 && channels % heads == 0, "AttnBlock heads", heads,
                          " must be positive and divide the block's ", channels, " channels");
    return heads;
  }

  /// a = GN(x), b = qkv(a), c = probs, d = attention output.
  void compute_attention(ConstView<T> x, Workspace<T, B>& ws) {
    const Shape qs = qkv_shape(x.shape());
    const View<T> a = ws.get(slot::a, x.shape());
    norm_.forward(x, a, /*silu=*/false);
    const View<T> q = ws.get(slot::b, qs);
    qkv_.forward(a, q);
    const View<T> p = ws.get(slot::c, Attention<T, B>::probs_shape(per_head(qs)));
    const View<T> o = ws.get(slot::d, x.shape());
    attn_.forward(q.reshape(per_head(qs)), p, o.reshape(per_head(x.shape())));
  }

  void check(const Shape& x, const Shape& other, std::string_view what) const {
    DDPM_REQUIRE(x.rank == 4 && x.c() == channels_, what, "expected (N, ", channels_,
                    ", H, W), got ", x.str());
    ddpm::detail::require_shape(other, x, what);
  }

  B backend_;
  std::size_t channels_;
  std::size_t heads_;
  GroupNorm<T, B> norm_;
  Conv2d<T, B> qkv_;
  Conv2d<T, B> proj_;
  Attention<T, B> attn_;
};

}  // namespace ddpm::nn
