// SPDX-License-Identifier: MIT
// ddpm/nn/unet/unet.hpp — the DDPM U-Net of ../shared/ref/unet.py, forward and backward.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "ddpm/backend/ops.hpp"
#include "ddpm/backend/params.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/shape.hpp"
#include "ddpm/layers/conv2d.hpp"
#include "ddpm/layers/downsample.hpp"
#include "ddpm/layers/embedding.hpp"
#include "ddpm/layers/group_norm.hpp"
#include "ddpm/layers/init.hpp"
#include "ddpm/layers/parameter.hpp"
#include "ddpm/layers/upsample.hpp"
#include "ddpm/nn/unet/attn_block.hpp"
#include "ddpm/nn/unet/config.hpp"
#include "ddpm/nn/unet/res_block.hpp"
#include "ddpm/nn/unet/workspace.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::nn {

/// Bytes held by a U-Net, by kind (see UNet::memory_use()).
struct UNetMemory {
  std::size_t parameters = 0;   ///< values
  std::size_t gradients = 0;    ///< parameter gradients
  std::size_t activations = 0;  ///< kept between forward and backward, and the skip activations
  std::size_t workspace = 0;    ///< scratch shared by all blocks
  [[nodiscard]] std::size_t total() const noexcept {
    return parameters + gradients + activations + workspace;
  }
};

/// The DDPM U-Net (Ho et al. 2020 layout) exactly as ../shared/ref/unet.py builds it:
///
///     emb = Linear(SiLU(Linear(sinusoidal(t)))) [+ class_emb(label)]
///     h   = conv_in(x); encoder levels of ResBlocks (+ AttnBlocks) and Downsamples, every output
///           kept as a skip; middle ResBlock, AttnBlock, ResBlock; decoder levels of
///           num_res_blocks + 1 ResBlocks on [h, skip] (+ AttnBlocks) and Upsamples;
///     out = conv_out(SiLU(norm_out(h)))
///
/// A plain class with named members; sizes come from UNetConfig at run time, so every
/// configuration shares one instantiation per (T, B).
///
/// Memory plan. A training forward (pass.train) keeps, per block, only what backward needs: the
/// output of every block (the skip activations and the inputs of the next block), the ResBlocks'
/// h = conv1(...) + emb and the GroupNorm statistics. Everything else (GroupNorm+SiLU outputs,
/// dropout outputs, decoder concatenations, upsampled tensors, attention qkv/probabilities) is
/// written into a few workspace tensors shared by all blocks and recomputed in backward. An
/// inference forward keeps only the skip activations; the main path alternates between two
/// workspace tensors. All buffers grow on the first call for a batch size and are reused.
template <std::floating_point T, class B>
class UNet {
 public:
  using value_type = T;
  using backend_type = B;
  using ops = Ops<B>;

  /// Builds the network and initialises it as PyTorch does (Conv2d/Linear weights and biases
  /// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), Embedding N(0, 1), GroupNorm gamma 1 beta 0, zeros for
  /// every ResBlock's conv2, every attention proj and conv_out), drawing parameter number k of
  /// visit_parameters' order from Philox stream rng_stream::make(rng_stream::init, k) of `seed`.
  /// @throws std::invalid_argument (from UNetConfig::validate) naming the bad field.
  explicit UNet(const UNetConfig& config, const B& backend = {}, std::uint64_t seed = 0)
      : config_(config), backend_(backend) {
    config_.validate();
    build(seed);
  }

  [[nodiscard]] const UNetConfig& config() const noexcept { return config_; }
  [[nodiscard]] const B& backend() const noexcept { return backend_; }

  /// Number of scalar parameters (equal to PyTorch's count_params for the same configuration).
  [[nodiscard]] std::size_t num_parameters() const {
    std::size_t n = 0;
    visit_parameters([&](std::string_view, const Parameter<T, B>& p) { n += p.size(); });
    return n;
  }

  /// out = UNet(x, t, labels).
  ///   x: (N, in_channels, S, S); t: (N) timesteps (any integers, fed to the sinusoidal embedding
  ///   unscaled); labels: a class-conditional model takes (N) labels in [0, num_classes]
  ///   (num_classes = the null class) or an empty view (= all null); an unconditional model
  ///   takes only an empty view; out: (N, output_channels, S, S), not aliasing x.
  /// With pass.train, dropout is applied (if configured) and what backward() needs is kept; x, t
  /// and labels must then stay alive and unchanged until backward().
  /// @throws std::invalid_argument naming the argument on a shape or label error.
  void forward(ConstView<T> x, ConstView<std::int32_t> t, ConstView<std::int32_t> labels, View<T> out,
               Pass pass = {}) {
    check_inputs(x, t, labels, out);
    const std::size_t N = x.n(), S = config_.image_size, E = config_.emb_dim();
    const bool train = pass.train;
    ready_ = false;

    // ---- embedding: emb = time_mlp(t) (+ class_emb(labels)); semb = SiLU(emb)
    emb_.resize(Shape{N, E});
    semb_.resize(Shape{N, E});
    time_mlp_->forward(t, emb_.view());
    if (class_emb_) {
      labels_ = labels.empty() ? null_labels(N) : labels;
      class_emb_->forward(labels_, semb_.view());  // semb_ holds the class embedding for a moment
      ops::template add<T>(backend_, emb_.cview(), semb_.cview(), emb_.view());
    }
    ops::template silu_forward<T>(backend_, emb_.cview(), semb_.view());
    const ConstView<T> semb = semb_.cview();

    // ---- the stages, in order. Where a stage's output goes: a skip activation is kept in both
    // modes; otherwise training keeps it and inference alternates between slots y0 and y1
    // (`cur` holds h when h is in a slot).
    h0_.resize(Shape{N, config_.base_channels, S, S});
    conv_in_->forward(x, h0_.view());
    ConstView<T> h = h0_.cview();
    std::size_t cur = slot::y1;
    for (Stage& s : stages_) {
      const std::size_t other = flip(cur);
      auto output = [&](Tensor<T, B>& kept, std::size_t ws_slot, const Shape& os) {
        return train || s.is_skip ? keep(kept, os) : ws_.get(ws_slot, os);
      };
      if (s.down) {
        const View<T> o = output(s.out, other, s.down->output_shape(h.shape()));
        s.down->forward(h, o);
        h = o;
      } else if (s.up) {
        const Shape os = Upsample<T, B>::output_shape(h.shape());
        const View<T> o = output(s.out, other, os);
        s.up->forward(h, o, ws_.get(slot::a, os));
        h = o;
      } else {
        ConstView<T> in = h;
        if (s.skip) {  // decoder: the ResBlock reads [h, skip]
          const ConstView<T> skip = skip_view(*s.skip);
          const View<T> xc = ws_.get(slot::cat, Shape{N, h.c() + skip.c(), h.h(), h.w()});
          ops::template concat_channels<T>(backend_, h, skip, xc);
          in = xc;
        }
        const Shape os{N, s.res ? s.res->out_channels() : h.c(), h.h(), h.w()};
        if (s.res && s.attn) {
          // the ResBlock output goes to `other`; the AttnBlock's to `cur`, whose h is dead
          const View<T> r = train ? keep(s.res_out, os) : ws_.get(other, os);
          s.res->forward(in, semb, r, ws_, pass);
          const View<T> o = output(s.out, cur, os);
          s.attn->forward(r, o, ws_);
          h = o;
          if (!train && !s.is_skip) continue;  // h stays in `cur`
        } else {
          const View<T> o = output(s.out, other, os);
          if (s.res) s.res->forward(in, semb, o, ws_, pass);
          else s.attn->forward(in, o, ws_);
          h = o;
        }
      }
      cur = other;
    }

    // ---- output: conv_out(SiLU(norm_out(h)))
    const View<T> a = ws_.get(slot::a, h.shape());
    norm_out_->forward(h, a, /*silu=*/true);
    conv_out_->forward(a, out);

    if (train) {
      x_ = x;
      batch_ = N;
      ready_ = true;
    }
  }

  /// Backward of the last forward(), which must have had pass.train = true.
  ///   dout: (N, output_channels, S, S) = d loss / d out; dx: empty, or (N, in_channels, S, S)
  ///   to receive d loss / d x (assigned).
  /// @post every parameter gradient += its part of d loss / d parameter.
  /// @throws std::logic_error when there was no training forward; std::invalid_argument on shapes.
  void backward(ConstView<T> dout, View<T> dx = {}) {
    if (!ready_) {
      throw std::logic_error(
          "ddpm: UNet::backward: needs a forward with pass.train = true first (and no inference "
          "forward since)");
    }
    const std::size_t N = batch_, S = config_.image_size, E = config_.emb_dim();
    ddpm::detail::require_shape(dout.shape(), Shape{N, config_.output_channels(), S, S},
                                "UNet::backward dout");
    if (!dx.empty()) ddpm::detail::require_shape(dx.shape(), x_.shape(), "UNet::backward dx");
    const ConstView<T> semb = semb_.cview();
    dsemb_.resize(Shape{N, E});
    ops::template fill<T>(backend_, dsemb_.view(), T(0));
    const View<T> dsemb = dsemb_.view();
    std::size_t ready = 0;  // parameters with final gradients, counted from the end
    std::size_t unit = 0;   // position in ready_counts_ (backward order)

    // ---- output layers
    const ConstView<T> hl = stages_.back().out.cview();
    const View<T> a = ws_.get(slot::a, hl.shape());
    norm_out_->forward(hl, a, true);
    const View<T> ga = ws_.get(slot::c, hl.shape());
    conv_out_->backward(a, dout, ga, false);
    grads_ready(ready, unit++);
    std::size_t cur = slot::y0;  // the slot holding g, the gradient of the current activation
    View<T> g = ws_.get(cur, hl.shape());
    norm_out_->backward(hl, ga, g, true, false);
    grads_ready(ready, unit++);

    // ---- the stages, last first. A skip activation's gradient is its own buffer (written by the
    // decoder stage that reads the skip, then accumulated into by the stage after it); any other
    // activation's gradient alternates between slots y0 and y1.
    for (std::size_t j = stages_.size(); j-- > 0;) {
      Stage& s = stages_[j];
      ConstView<T> gout = g;
      if (s.is_skip) {
        gout = s.dout.cview();
        cur = slot::y1;  // neither slot holds g
      }
      const ConstView<T> hin = j == 0 ? h0_.cview() : stages_[j - 1].out.cview();
      const bool in_skip = j == 0 || stages_[j - 1].is_skip;  // hin is skip activation j
      View<T> gin;  // where d loss / d hin goes, chosen when it is first written
      auto input_grad = [&] {
        gin = in_skip ? skip_grad(j) : ws_.get(flip(cur), hin.shape());
        return gin;
      };
      if (s.down) {
        s.down->backward(hin, gout, input_grad(), in_skip);
      } else if (s.up) {
        const Shape os = s.out.shape();
        s.up->backward(hin, gout, input_grad(), in_skip, ws_.get(slot::a, os), ws_.get(slot::c, os));
      } else if (!s.res) {
        s.attn->backward(hin, gout, input_grad(), in_skip, ws_);
      } else {
        if (s.attn) {
          const View<T> gr = ws_.get(flip(cur), s.res_out.shape());
          s.attn->backward(s.res_out.cview(), gout, gr, false, ws_);
          gout = gr;
          cur = flip(cur);
        }
        if (s.skip) {
          const ConstView<T> skip = skip_view(*s.skip);
          const Shape cs{N, hin.c() + skip.c(), hin.h(), hin.w()};
          const View<T> xc = ws_.get(slot::cat, cs);
          ops::template concat_channels<T>(backend_, hin, skip, xc);  // recomputed
          const View<T> gx = ws_.get(slot::dcat, cs);
          s.res->backward(xc, semb, gout, gx, false, dsemb, ws_);
          ops::template split_channels<T>(backend_, gx, hin.c(), input_grad(), in_skip,
                                          skip_grad(*s.skip), false);
        } else {
          s.res->backward(hin, semb, gout, input_grad(), in_skip, dsemb, ws_);
        }
      }
      if (!in_skip) {
        cur = flip(cur);
        g = gin;
      }
      grads_ready(ready, unit++);
    }
    conv_in_->backward(x_, dh0_.cview(), dx, false);
    grads_ready(ready, unit++);

    // ---- embedding: d emb = SiLU'(emb) d semb, then the class table and the time MLP
    demb_.resize(Shape{N, E});
    ops::template silu_backward<T>(backend_, emb_.cview(), dsemb_.cview(), demb_.view(), false);
    if (class_emb_) class_emb_->backward(labels_, demb_.cview());
    time_mlp_->backward(demb_.cview());
    grads_ready(ready, unit++);
  }

  /// Visits every parameter as v(std::string_view name, Parameter<T, B>&), in PyTorch's
  /// named_parameters() order and with its names ("time_mlp.0.weight", "class_emb.weight",
  /// "conv_in.weight", "down.0.0.norm1.weight", "down.2.conv.weight", "mid_attn.proj.bias",
  /// "up.3.conv.weight", "norm_out.weight", "conv_out.bias", ...).
  template <class V>
  void visit_parameters(V&& v) {
    visit_all(*this, v);
  }
  template <class V>
  void visit_parameters(V&& v) const {
    visit_all(*this, v);
  }

  /// Sets every parameter gradient to zero.
  void zero_grad() {
    visit_parameters([](std::string_view, Parameter<T, B>& p) { p.grad.zero(); });
  }

  /// Gradient-ready notifications, so that data-parallel training can reduce gradients while
  /// backward() still runs (ddpm/train/distributed.hpp). backward() visits the blocks in the
  /// reverse of visit_parameters' order; with a hook set it calls hook(k) after each top-level
  /// block (conv_out, norm_out, every up/mid/down stage, conv_in, the embeddings), where k is the
  /// number of parameters, counted from the end of visit_parameters' order, whose gradients are
  /// final for this backward. k grows from call to call; the last call has k = every parameter.
  /// An empty function (the default) turns the calls off.
  void set_grad_ready_hook(std::function<void(std::size_t)> hook) {
    grad_ready_ = std::move(hook);
    if (!grad_ready_ || !ready_counts_.empty()) return;
    // parameter counts of the units backward() finishes, in its order: the output layers, the
    // stages last first, conv_in, the embeddings
    auto count = [](const auto& layer) {
      std::size_t n = 0;
      layer.visit_parameters([&](std::string_view, const auto&) { ++n; });
      return n;
    };
    ready_counts_.push_back(count(*conv_out_));
    ready_counts_.push_back(count(*norm_out_));
    for (std::size_t j = stages_.size(); j-- > 0;) ready_counts_.push_back(count(stages_[j]));
    ready_counts_.push_back(count(*conv_in_));
    ready_counts_.push_back(count(*time_mlp_) + (class_emb_ ? count(*class_emb_) : 0));
  }

  /// Bytes of parameters, gradients, kept activations and workspace held now.
  [[nodiscard]] UNetMemory memory_use() const {
    UNetMemory m;
    visit_parameters([&](std::string_view, const Parameter<T, B>& p) {
      m.parameters += p.value.capacity() * sizeof(T);
      m.gradients += p.grad.capacity() * sizeof(T);
    });
    std::size_t n = h0_.capacity() + dh0_.capacity() + emb_.capacity() + semb_.capacity() +
                    dsemb_.capacity() + demb_.capacity();
    std::size_t state = time_mlp_->state_bytes() + norm_out_->state_bytes() +
                        null_labels_.capacity() * sizeof(std::int32_t);
    for (const Stage& s : stages_) {
      n += s.res_out.capacity() + s.out.capacity() + s.dout.capacity();
      if (s.res) state += s.res->state_bytes();
      if (s.attn) state += s.attn->state_bytes();
    }
    m.activations = n * sizeof(T) + state;
    m.workspace = ws_.bytes();
    return m;
  }

  /// Frees every activation and workspace buffer (parameters stay). The next forward allocates
  /// again; a backward needs a new training forward first.
  void release_buffers() noexcept {
    ready_ = false;
    ws_.release();
    for (Tensor<T, B>* t : {&h0_, &dh0_, &emb_, &semb_, &dsemb_, &demb_}) t->release();
    null_labels_.release();
    for (Stage& s : stages_) {
      s.res_out.release();
      s.out.release();
      s.dout.release();
      if (s.res) s.res->release();
      if (s.attn) s.attn->release();
    }
    time_mlp_->release();
    norm_out_->release();
  }

 private:
  using slot = typename Workspace<T, B>::slot;

  /// One stage of the U-Net body: the single list that build() fills and that forward(),
  /// backward(), visit_parameters(), set_grad_ready_hook(), memory_use() and release_buffers()
  /// walk. A stage is a ResBlock (+ AttnBlock), an AttnBlock alone, a Downsample or an Upsample.
  /// Its input is the previous stage's output (conv_in's for the first); a decoder ResBlock also
  /// reads a skip activation, concatenated after the input.
  struct Stage {
    std::string name;     ///< PyTorch module path: "down.3", "mid1", "mid_attn", "up.0", ...
    bool nested = false;  ///< an entry of the down/up lists: ResBlock "<name>.0", AttnBlock ".1"
    bool is_skip = false;  ///< the output is a skip activation (encoder stages)
    std::optional<std::size_t> skip;  ///< skip read: 0 = conv_in output, k = output of stage k-1
    std::optional<ResBlock<T, B>> res;
    std::optional<AttnBlock<T, B>> attn;
    std::optional<Downsample<T, B>> down;
    std::optional<Upsample<T, B>> up;
    Tensor<T, B> res_out;  // ResBlock output when an AttnBlock follows (training only)
    Tensor<T, B> out;      // output: skip activations in both modes, the others when training
    Tensor<T, B> dout;     // its gradient, for skip activations (backward)

    template <class V>
    void visit_parameters(V&& v) {
      visit_all(*this, v);
    }
    template <class V>
    void visit_parameters(V&& v) const {
      visit_all(*this, v);
    }
    template <class Self, class V>
    static void visit_all(Self& s, V& v) {
      using ddpm::detail::visit_prefixed;
      if (s.down) visit_prefixed(*s.down, s.name, v);
      if (s.up) visit_prefixed(*s.up, s.name, v);
      if (s.res) visit_prefixed(*s.res, s.nested ? s.name + ".0" : s.name, v);
      if (s.attn) visit_prefixed(*s.attn, s.nested && s.res ? s.name + ".1" : s.name, v);
    }
  };

  /// The graph: PyTorch's registration order, which is also the parameter and init order.
  void build(std::uint64_t seed) {
    const UNetConfig& c = config_;
    ParamInit init(Rng{seed});
    const std::size_t E = c.emb_dim(), L = c.levels();
    std::uint64_t block = 0;  // ResBlock number, for the dropout streams
    auto stage = [&](std::string name, bool nested) -> Stage& {
      stages_.emplace_back();
      stages_.back().name = std::move(name);
      stages_.back().nested = nested;
      return stages_.back();
    };
    auto res = [&](Stage& s, std::size_t in, std::size_t out) {
      s.res.emplace(in, out, E, c.groups, c.dropout, block++, backend_, init);
    };
    auto attn = [&](Stage& s, std::size_t ch) {
      s.attn.emplace(ch, c.groups, backend_, init, c.num_heads);
    };

    time_mlp_.emplace(c.base_channels, E, backend_, init);
    if (c.num_classes) class_emb_.emplace(c.num_classes + 1, E, backend_, init);
    conv_in_.emplace(c.in_channels, c.base_channels, ConvGeometry{3, 1, 1}, backend_, init);

    // encoder ("down"): every stage output is a skip activation
    std::vector<std::size_t> skip_ch{c.base_channels};
    std::size_t ch = c.base_channels, res_px = c.image_size, d = 0;
    stages_.reserve(2 * L * (c.num_res_blocks + 2) + 3);
    for (std::size_t i = 0; i < L; ++i) {
      const std::size_t co = c.level_channels(i);
      for (std::size_t r = 0; r < c.num_res_blocks; ++r) {
        Stage& s = stage("down." + std::to_string(d++), true);
        res(s, ch, co);
        ch = co;
        if (c.has_attention(res_px)) attn(s, ch);
        s.is_skip = true;
        skip_ch.push_back(ch);
      }
      if (i + 1 != L) {
        Stage& s = stage("down." + std::to_string(d++), false);
        s.down.emplace(ch, backend_, init);
        s.is_skip = true;
        skip_ch.push_back(ch);
        res_px /= 2;
      }
    }

    // middle
    res(stage("mid1", false), ch, ch);
    attn(stage("mid_attn", false), ch);
    res(stage("mid2", false), ch, ch);

    // decoder ("up"): num_res_blocks + 1 ResBlocks per level, each on [h, the last unread skip]
    std::size_t u = 0;
    for (std::size_t i = L; i-- > 0;) {
      const std::size_t co = c.level_channels(i);
      for (std::size_t r = 0; r < c.num_res_blocks + 1; ++r) {
        Stage& s = stage("up." + std::to_string(u++), true);
        s.skip = skip_ch.size() - 1;
        res(s, ch + skip_ch.back(), co);
        skip_ch.pop_back();
        ch = co;
        if (c.has_attention(res_px)) attn(s, ch);
      }
      if (i != 0) {
        Stage& s = stage("up." + std::to_string(u++), false);
        s.up.emplace(ch, backend_, init);
        res_px *= 2;
      }
    }
    DDPM_ASSERT(skip_ch.empty(), "UNet: every skip activation is consumed once");

    norm_out_.emplace(ch, c.groups, backend_, init);
    conv_out_.emplace(ch, c.output_channels(), ConvGeometry{3, 1, 1}, backend_, init,
                      /*zero_init=*/true);
  }

  template <class Self, class V>
  static void visit_all(Self& self, V& v) {
    using ddpm::detail::visit_prefixed;
    visit_prefixed(*self.time_mlp_, "time_mlp", v);
    if (self.class_emb_) visit_prefixed(*self.class_emb_, "class_emb", v);
    visit_prefixed(*self.conv_in_, "conv_in", v);
    for (auto& s : self.stages_) s.visit_parameters(v);
    visit_prefixed(*self.norm_out_, "norm_out", v);
    visit_prefixed(*self.conv_out_, "conv_out", v);
  }

  static std::size_t flip(std::size_t s) noexcept { return s == slot::y0 ? slot::y1 : slot::y0; }

  /// Unit `unit` of backward (see set_grad_ready_hook) is done: its parameters have final
  /// gradients.
  void grads_ready(std::size_t& ready, std::size_t unit) const {
    if (!grad_ready_) return;
    ready += ready_counts_[unit];
    grad_ready_(ready);
  }

  /// Resizes a kept activation and returns its view.
  static View<T> keep(Tensor<T, B>& t, const Shape& s) {
    t.resize(s);
    return t.view();
  }

  /// Skip activation k: 0 = conv_in output, k = output of stage k - 1 (an encoder stage).
  ConstView<T> skip_view(std::size_t k) const { return k == 0 ? h0_.cview() : stages_[k - 1].out.cview(); }
  /// Gradient buffer of skip activation k (sized to the activation).
  View<T> skip_grad(std::size_t k) {
    Tensor<T, B>& g = k == 0 ? dh0_ : stages_[k - 1].dout;
    g.resize(skip_view(k).shape());
    return g.view();
  }

  /// A (N) label vector of null classes (num_classes).
  ConstView<std::int32_t> null_labels(std::size_t N) {
    if (null_labels_.size() != N) {
      null_labels_.resize(Shape{N});
      null_labels_.copy_from(std::vector<std::int32_t>(N, std::int32_t(config_.num_classes)));
    }
    return null_labels_.cview();
  }

  void check_inputs(ConstView<T> x, ConstView<std::int32_t> t, ConstView<std::int32_t> labels,
                    View<T> out) const {
    const std::size_t S = config_.image_size;
    DDPM_REQUIRE(x.shape().rank == 4 && x.n() > 0 && x.c() == config_.in_channels && x.h() == S &&
                x.w() == S,
            "UNet::forward x", "expected (N, ", config_.in_channels, ", ", S, ", ", S,
            ") with N > 0, got ", x.shape().str());
    const std::size_t N = x.n();
    DDPM_REQUIRE(t.size() == N && !t.empty(), "UNet::forward t", "expected ", N, " timesteps, got ",
            t.size());
    if (config_.num_classes == 0) {
      DDPM_REQUIRE(labels.empty(), "UNet::forward labels",
              "the model is unconditional (num_classes = 0): pass an empty view");
    } else if (!labels.empty()) {
      DDPM_REQUIRE(labels.size() == N, "UNet::forward labels", "expected ", N, " labels, got ",
              labels.size());
      if constexpr (std::is_same_v<typename B::memory_space, backend::host_memory>) {
        for (std::size_t n = 0; n < N; ++n)
          DDPM_REQUIRE(labels[n] >= 0 && std::size_t(labels[n]) <= config_.num_classes,
                  "UNet::forward labels", "label ", labels[n], " at index ", n, " outside [0, ",
                  config_.num_classes, "] (", config_.num_classes, " = null class)");
      }
    }
    ddpm::detail::require_shape(out.shape(), Shape{N, config_.output_channels(), S, S},
                                "UNet::forward out");
  }

  UNetConfig config_;
  B backend_;

  // layers, in PyTorch's registration order: the body is the list of stages
  std::optional<TimeEmbedding<T, B>> time_mlp_;
  std::optional<Embedding<T, B>> class_emb_;
  std::optional<Conv2d<T, B>> conv_in_;
  std::vector<Stage> stages_;
  std::optional<GroupNorm<T, B>> norm_out_;
  std::optional<Conv2d<T, B>> conv_out_;

  // activations
  Tensor<T, B> emb_, semb_, dsemb_, demb_;                  // (N, emb_dim)
  Tensor<std::int32_t, B> null_labels_;                      // (N)
  Tensor<T, B> h0_, dh0_;                                    // conv_in output (skip 0) and gradient
  Workspace<T, B> ws_;

  // saved by a training forward
  ConstView<T> x_;
  ConstView<std::int32_t> labels_;
  std::size_t batch_ = 0;
  bool ready_ = false;

  // gradient-ready notifications (set_grad_ready_hook)
  std::function<void(std::size_t)> grad_ready_;
  std::vector<std::size_t> ready_counts_;  // parameters per backward unit (set_grad_ready_hook)
};

}  // namespace ddpm::nn
