// SPDX-License-Identifier: MIT
// ddpm/eval/classifier.hpp — the small image classifier that scores samples: stacked
// Conv2d + GroupNorm + SiLU units built from the library's layers, global average pooling (its
// output is the feature vector of the Fréchet distance), a linear head, and softmax
// cross-entropy. Saving and loading as safetensors (needs ddpm::io) are in eval/classifier_io.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ddpm/backend/ops.hpp"
#include "ddpm/backend/params.hpp"
#include "ddpm/core/assert.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/shape.hpp"
#include "ddpm/layers/conv2d.hpp"
#include "ddpm/layers/group_norm.hpp"
#include "ddpm/layers/init.hpp"
#include "ddpm/layers/linear.hpp"
#include "ddpm/layers/parameter.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::eval {

namespace detail {
// ddpm::eval::detail hides ddpm::detail from code in ddpm::eval; bring in the shared helpers.
using ::ddpm::detail::cat;
using ::ddpm::detail::require;
}  // namespace detail

/// Sizes of the classifier. The network is
///
///     stage 0:  depth x [Conv2d(3x3, stride 1) -> GroupNorm -> SiLU]          channels[0]
///     stage s:  Conv2d(3x3, stride 2) -> GN -> SiLU, then depth - 1 stride-1 units  channels[s]
///     features = global average pool of the last unit           (N, channels.back())
///     logits   = Linear(channels.back(), num_classes)(features)
///
/// so a 28x28 input is seen at 28, 14 and 7 pixels with the default three stages.
struct ClassifierConfig {
  std::size_t in_channels = 1;
  std::size_t image_size = 28;
  std::size_t num_classes = 10;
  std::vector<std::size_t> channels{16, 32, 64};  ///< one entry per stage
  std::size_t depth = 2;                          ///< conv units per stage
  std::size_t groups = 8;  ///< GroupNorm groups (divides every channel count)

  /// Length of the feature vector (the input of the head).
  [[nodiscard]] std::size_t feature_dim() const noexcept {
    return channels.empty() ? 0 : channels.back();
  }
  /// @throws std::invalid_argument naming the bad field.
  void validate() const {
    detail::require(in_channels >= 1 && in_channels <= 4, "ClassifierConfig::in_channels",
                    "must be in [1, 4], got ", in_channels);
    detail::require(image_size >= 4, "ClassifierConfig::image_size", "must be >= 4, got ",
                    image_size);
    detail::require(num_classes >= 2, "ClassifierConfig::num_classes", "must be >= 2, got ",
                    num_classes);
    detail::require(!channels.empty() && channels.size() <= 6, "ClassifierConfig::channels",
                    "needs 1 to 6 stages, got ", channels.size());
    detail::require(depth >= 1, "ClassifierConfig::depth", "must be >= 1");
    for (std::size_t c : channels)
      detail::require(c >= 1 && groups >= 1 && c % groups == 0, "ClassifierConfig::channels",
                      "each channel count must be a multiple of groups = ", groups, ", got ", c);
  }
  friend bool operator==(const ClassifierConfig&, const ClassifierConfig&) = default;
};

/// Softmax cross-entropy of a batch, in double on the host (logits are few: N x classes).
/// @pre logits.size() == n * k, labels.size() == n, every label in [0, k).
/// @post dlogits[i] = (softmax - target) / n, with target = (1 - smoothing) onehot + smoothing / k.
/// @return the mean loss over the batch.
[[nodiscard]] inline double softmax_cross_entropy(std::span<const float> logits,
                                                  std::span<const std::int32_t> labels,
                                                  std::size_t k, std::span<float> dlogits,
                                                  double smoothing = 0.0);

/// Row-wise softmax of (n, k) logits.
inline void softmax_rows(std::span<const float> logits, std::size_t k, std::span<float> probs);

/// The classifier: a plain class of library layers with public members, functional with
/// parameters like every layer (forward keeps the activations that backward needs).
///
/// Works on any backend whose Ops provide conv2d, group_norm, linear, fill, scale, channel_sum
/// and add_channel_bias; the loss runs on the host (logits are copied, N x classes floats).
template <std::floating_point T, class B>
class Classifier {
 public:
  using value_type = T;
  using backend_type = B;
  using ops = Ops<B>;

  /// One Conv2d -> GroupNorm -> SiLU unit.
  struct Unit {
    nn::Conv2d<T, B> conv;
    nn::GroupNorm<T, B> norm;
  };

 private:
  ClassifierConfig config_;  // declared first: the public layers are built from it
  B backend_;

 public:
  std::vector<Unit> units;  ///< conv units, stage by stage (channels.size() * depth of them)
  nn::Linear<T, B> head;    ///< features -> logits

  /// Builds and initialises (PyTorch's defaults: conv/linear U(+-1/sqrt(fan_in)), GroupNorm 1/0)
  /// from Philox seed `seed`, parameter k from stream rng_stream::make(init, k) as in
  /// nn::ParamInit.
  /// @throws std::invalid_argument (ClassifierConfig::validate).
  explicit Classifier(const ClassifierConfig& config, const B& backend = {}, std::uint64_t seed = 0)
      : Classifier(validated(config), backend, nn::ParamInit(Rng{seed})) {}

  [[nodiscard]] const ClassifierConfig& config() const noexcept { return config_; }
  [[nodiscard]] const B& backend() const noexcept { return backend_; }

  /// Number of scalar parameters.
  [[nodiscard]] std::size_t num_parameters() {
    std::size_t n = 0;
    visit_parameters([&](std::string_view, nn::Parameter<T, B>& p) { n += p.size(); });
    return n;
  }

  /// logits = net(x).                       x: (N, in_channels, image_size, image_size) in [-1, 1]
  /// Keeps the activations for backward() and the features (pooled, (N, feature_dim)).
  /// @return a view of the logits (N, num_classes), valid until the next forward().
  /// @throws std::invalid_argument if x has the wrong shape.
  ConstView<T> forward(ConstView<T> x) {
    const Shape& s = x.shape();
    DDPM_REQUIRE(s.rank == 4 && s.c() == config_.in_channels && s.h() == config_.image_size &&
                     s.w() == config_.image_size,
                 "Classifier::forward", "expected images (N, ", config_.in_channels, ", ",
                 config_.image_size, ", ", config_.image_size, "), got ", s.str());
    const std::size_t n = s.n();
    pre_.resize(units.size());
    act_.resize(units.size());
    ConstView<T> h = x;
    for (std::size_t i = 0; i < units.size(); ++i) {
      pre_[i].resize(units[i].conv.output_shape(h.shape()));
      act_[i].resize(pre_[i].shape());
      units[i].conv.forward(h, pre_[i].view());
      units[i].norm.forward(pre_[i].cview(), act_[i].view(), /*silu=*/true);
      h = act_[i].cview();
    }
    const std::size_t hw = h.h() * h.w();
    pooled_.resize(Shape{n, config_.feature_dim()});
    ops::template channel_sum<T>(backend_, h, pooled_.view());              // (N, F) sums
    ops::template scale<T>(backend_, pooled_.view(), T(1.0 / double(hw)));  // averages
    logits_.resize(Shape{n, config_.num_classes});
    head.forward(pooled_.cview(), logits_.view());
    return logits_.cview();
  }

  /// The logits of the last forward(), (N, num_classes).
  [[nodiscard]] ConstView<T> logits() const noexcept { return logits_.cview(); }
  /// The features of the last forward(): global average pool of the last unit, (N, feature_dim).
  [[nodiscard]] ConstView<T> features() const noexcept { return pooled_.cview(); }

  /// @pre  forward(x) was the last call, and dlogits is the gradient of the loss w.r.t. its output.
  /// @post every parameter gradient += d loss / d parameter (the input gradient is not computed).
  void backward(ConstView<T> x, ConstView<T> dlogits) {
    DDPM_REQUIRE(
        !units.empty() && act_.size() == units.size() && dlogits.shape() == logits_.shape(),
        "Classifier::backward", "dlogits ", dlogits.shape().str(),
        " does not match the last forward() (logits ", logits_.shape().str(), ")");
    dpooled_.resize(pooled_.shape());
    head.backward(pooled_.cview(), dlogits, dpooled_.view(), /*acc=*/false);
    const Shape& last = act_.back().shape();
    ops::template scale<T>(backend_, dpooled_.view(), T(1.0 / double(last.h() * last.w())));
    dact_.resize(last);
    ops::template fill<T>(backend_, dact_.view(), T(0));
    ops::template add_channel_bias<T>(backend_, dact_.view(), dpooled_.cview());
    for (std::size_t i = units.size(); i-- > 0;) {
      dpre_.resize(pre_[i].shape());
      units[i].norm.backward(pre_[i].cview(), dact_.cview(), dpre_.view(), /*silu=*/true,
                             /*acc=*/false);
      const ConstView<T> in = i == 0 ? x : act_[i - 1].cview();
      if (i > 0) {
        dact_.resize(in.shape());
        units[i].conv.backward(in, dpre_.cview(), dact_.view(), /*acc=*/false);
      } else {
        units[i].conv.backward(in, dpre_.cview(), View<T>{}, /*acc=*/false);
      }
    }
  }

  /// v(name, Parameter&) for "units.<i>.conv.{weight,bias}", "units.<i>.norm.{weight,bias}",
  /// then "head.{weight,bias}" — the order of construction.
  template <class V>
  void visit_parameters(V&& v) {
    for (std::size_t i = 0; i < units.size(); ++i) {
      const std::string p = "units." + std::to_string(i);
      ddpm::detail::visit_prefixed(units[i].conv, p + ".conv", v);
      ddpm::detail::visit_prefixed(units[i].norm, p + ".norm", v);
    }
    ddpm::detail::visit_prefixed(head, "head", v);
  }

  /// Frees the activations kept by forward() (the parameters stay).
  void release() noexcept {
    pre_.clear();
    act_.clear();
    pooled_.release();
    logits_.release();
    dpooled_.release();
    dact_.release();
    dpre_.release();
    for (auto& u : units) u.norm.release();
  }

 private:
  static const ClassifierConfig& validated(const ClassifierConfig& c) {
    c.validate();
    return c;
  }
  Classifier(const ClassifierConfig& config, const B& backend, nn::ParamInit init)
      : config_(config),
        backend_(backend),
        units(make_units(config, backend, init)),
        head(config.feature_dim(), config.num_classes, backend, init) {}
  static std::vector<Unit> make_units(const ClassifierConfig& cfg, const B& be,
                                      nn::ParamInit& init) {
    std::vector<Unit> out;
    out.reserve(cfg.channels.size() * cfg.depth);
    std::size_t in = cfg.in_channels;
    for (std::size_t s = 0; s < cfg.channels.size(); ++s) {
      for (std::size_t d = 0; d < cfg.depth; ++d) {
        const std::size_t c = cfg.channels[s];
        const ConvGeometry g{3, (s > 0 && d == 0) ? std::size_t{2} : std::size_t{1}, 1};
        nn::Conv2d<T, B> conv(in, c, g, be, init);
        nn::GroupNorm<T, B> norm(c, cfg.groups, be, init);
        out.push_back(Unit{std::move(conv), std::move(norm)});
        in = c;
      }
    }
    return out;
  }

  std::vector<Tensor<T, B>> pre_, act_;  // per unit: conv output, GroupNorm+SiLU output
  Tensor<T, B> pooled_, logits_;         // (N, F), (N, K)
  Tensor<T, B> dpooled_, dact_, dpre_;   // gradients, reused unit to unit
};

/// What the classifier says about n images: class probabilities and features, on the host.
struct Predictions {
  std::size_t n = 0, num_classes = 0, feature_dim = 0;
  std::vector<float> probs{};     ///< (n, num_classes), rows sum to 1
  std::vector<float> features{};  ///< (n, feature_dim), the pooled penultimate activations

  /// The most probable class of image i (the lowest index on ties).
  [[nodiscard]] std::size_t predicted(std::size_t i) const noexcept {
    const float* p = probs.data() + i * num_classes;
    return std::size_t(std::max_element(p, p + num_classes) - p);
  }
  /// The largest probability of image i.
  [[nodiscard]] float confidence(std::size_t i) const noexcept {
    const float* p = probs.data() + i * num_classes;
    return *std::max_element(p, p + num_classes);
  }
};

/// Runs `net` on n host images (NCHW, values in [-1, 1]) in batches of `batch`.
/// @pre images.size() == n * in_channels * image_size^2 (std::invalid_argument otherwise).
template <std::floating_point T, class B>
[[nodiscard]] Predictions predict(Classifier<T, B>& net, std::span<const float> images,
                                  std::size_t n, std::size_t batch = 256) {
  const ClassifierConfig& cfg = net.config();
  const std::size_t item = cfg.in_channels * cfg.image_size * cfg.image_size;
  detail::require(images.size() == n * item, "eval::predict", images.size(), " values for ", n,
                  " images of ", cfg.in_channels, "x", cfg.image_size, "x", cfg.image_size);
  detail::require(batch >= 1, "eval::predict", "batch must be >= 1");
  Predictions out;
  out.n = n;
  out.num_classes = cfg.num_classes;
  out.feature_dim = cfg.feature_dim();
  out.probs.resize(n * cfg.num_classes);
  out.features.resize(n * cfg.feature_dim());
  Tensor<T, B> x;
  std::vector<T> host;
  std::vector<float> logits;
  for (std::size_t b = 0; b < n; b += batch) {
    const std::size_t m = std::min(batch, n - b);
    x.resize(Shape{m, cfg.in_channels, cfg.image_size, cfg.image_size});
    host.assign(images.begin() + std::ptrdiff_t(b * item),
                images.begin() + std::ptrdiff_t((b + m) * item));
    x.copy_from(host);
    net.forward(x.cview());
    // The outputs may live in device memory: copy them to the host.
    std::vector<T> lg(m * cfg.num_classes), ft(m * cfg.feature_dim());
    ::ddpm::detail::Memory<typename B::memory_space>::copy_to_host(lg.data(), net.logits().data(),
                                                                   lg.size() * sizeof(T));
    ::ddpm::detail::Memory<typename B::memory_space>::copy_to_host(ft.data(), net.features().data(),
                                                                   ft.size() * sizeof(T));
    logits.assign(lg.begin(), lg.end());
    softmax_rows(logits, cfg.num_classes,
                 std::span<float>(out.probs.data() + b * cfg.num_classes, m * cfg.num_classes));
    std::copy(ft.begin(), ft.end(), out.features.begin() + std::ptrdiff_t(b * cfg.feature_dim()));
  }
  return out;
}

// ---------------------------------------------------------------- implementation

inline void softmax_rows(std::span<const float> logits, std::size_t k, std::span<float> probs) {
  DDPM_REQUIRE(k > 0 && logits.size() % k == 0 && probs.size() == logits.size(), "softmax_rows",
               logits.size(), " logits do not form rows of ", k);
  for (std::size_t r = 0; r < logits.size() / k; ++r) {
    const float* z = logits.data() + r * k;
    double m = -std::numeric_limits<double>::infinity();
    for (std::size_t j = 0; j < k; ++j) m = std::max(m, double(z[j]));
    double s = 0;
    for (std::size_t j = 0; j < k; ++j) s += std::exp(double(z[j]) - m);
    for (std::size_t j = 0; j < k; ++j) probs[r * k + j] = float(std::exp(double(z[j]) - m) / s);
  }
}

inline double softmax_cross_entropy(std::span<const float> logits,
                                    std::span<const std::int32_t> labels, std::size_t k,
                                    std::span<float> dlogits, double smoothing) {
  const std::size_t n = labels.size();
  DDPM_REQUIRE(k > 0 && logits.size() == n * k && dlogits.size() == n * k, "softmax_cross_entropy",
               logits.size(), " logits and ", dlogits.size(), " gradients for ", n, " labels x ", k,
               " classes");
  DDPM_REQUIRE(smoothing >= 0 && smoothing < 1, "softmax_cross_entropy", "smoothing = ", smoothing,
               " must be in [0, 1)");
  double total = 0;
  for (std::size_t r = 0; r < n; ++r) {
    const std::int32_t y = labels[r];
    DDPM_REQUIRE(y >= 0 && std::size_t(y) < k, "softmax_cross_entropy", "label ", y, " of row ", r,
                 " outside [0, ", k, ")");
    const float* z = logits.data() + r * k;
    double m = -std::numeric_limits<double>::infinity();
    for (std::size_t j = 0; j < k; ++j) m = std::max(m, double(z[j]));
    double s = 0;
    for (std::size_t j = 0; j < k; ++j) s += std::exp(double(z[j]) - m);
    const double lse = m + std::log(s);
    for (std::size_t j = 0; j < k; ++j) {
      const double target =
          (1.0 - smoothing) * (j == std::size_t(y) ? 1.0 : 0.0) + smoothing / double(k);
      total += target * (lse - double(z[j]));
      dlogits[r * k + j] = float((std::exp(double(z[j]) - lse) - target) / double(n));
    }
  }
  return n ? total / double(n) : 0.0;
}

}  // namespace ddpm::eval
