// SPDX-License-Identifier: MIT
// ddpm/eval/train.hpp — trains the evaluation classifier on an MNIST-format data set: AdamW,
// linear warm-up then cosine decay, random affine augmentation (shift, rotation, scale), seeded
// (Philox) shuffling, so that a run is a function of the seed and the data alone.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <numbers>
#include <numeric>
#include <span>
#include <vector>

#include "ddpm/core/assert.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/eval/classifier.hpp"
#include "ddpm/io/types.hpp"
#include "ddpm/optim/adam.hpp"
#include "ddpm/optim/param_list.hpp"

namespace ddpm::eval {

/// Random affine augmentation of a training image, drawn per image: translation uniform in
/// [-max_shift, max_shift] pixels per axis, rotation uniform in +-max_rotation_deg, scale uniform
/// in [1 - max_scale, 1 + max_scale], and (if hflip) a left-right mirror with probability 1/2.
/// Bilinear resampling; pixels from outside the image are background (0).
struct Augment {
  double max_shift = 2.0;
  double max_rotation_deg = 10.0;
  double max_scale = 0.1;
  bool hflip = false;
  [[nodiscard]] bool enabled() const noexcept {
    return max_shift > 0 || max_rotation_deg > 0 || max_scale > 0 || hflip;
  }
};

/// Training settings of train_classifier.
struct ClassifierTrainConfig {
  std::size_t epochs = 8;
  std::size_t batch_size = 64;
  double lr = 3e-3;                ///< peak learning rate (AdamW)
  double weight_decay = 1e-4;      ///< decoupled (AdamW)
  std::size_t warmup_steps = 100;  ///< linear warm-up, then cosine decay to 0 at the last step
  double label_smoothing = 0.0;
  Augment augment{};
  std::uint64_t seed = 0;  ///< initialisation, shuffling and augmentation
  bool progress = true;    ///< one line per epoch on stderr

  /// @throws std::invalid_argument naming the bad field.
  void validate() const {
    detail::require(epochs >= 1, "ClassifierTrainConfig::epochs", "must be >= 1");
    detail::require(batch_size >= 1, "ClassifierTrainConfig::batch_size", "must be >= 1");
    detail::require(lr > 0 && std::isfinite(lr), "ClassifierTrainConfig::lr", "must be > 0, got ",
                    lr);
    detail::require(weight_decay >= 0, "ClassifierTrainConfig::weight_decay", "must be >= 0");
    detail::require(label_smoothing >= 0 && label_smoothing < 1,
                    "ClassifierTrainConfig::label_smoothing", "must be in [0, 1)");
    detail::require(augment.max_shift >= 0 && augment.max_rotation_deg >= 0 &&
                        augment.max_scale >= 0 && augment.max_scale < 1,
                    "ClassifierTrainConfig::augment", "ranges must be >= 0 (max_scale < 1)");
  }
};

/// One epoch of train_classifier.
struct EpochStats {
  std::size_t epoch = 0;      ///< 1-based
  std::size_t steps = 0;      ///< optimiser steps so far
  double seconds = 0;         ///< since the start of training
  double train_loss = 0;      ///< mean over the epoch's batches (augmented images)
  double train_accuracy = 0;  ///< on the epoch's (augmented) batches, before each update
  double test_accuracy = -1;  ///< on the test set after the epoch; -1 without one
};

/// What train_classifier did.
struct ClassifierTrainReport {
  std::vector<EpochStats> epochs{};
  std::size_t steps = 0;
  double seconds = 0;
  double test_accuracy = -1;  ///< after the last epoch; -1 without a test set
  std::size_t test_images = 0;
};

/// Fraction of `data` (labels required) whose most probable class is the label.
/// @throws std::invalid_argument if the images do not fit the classifier or labels are missing.
template <std::floating_point T, class B>
[[nodiscard]] double accuracy(Classifier<T, B>& net, const io::ImageDataset& data);

/// Trains `net` on `train` (labels in [0, num_classes)), reporting accuracy on `test` (if not
/// null) after each epoch; `on_epoch` (if set) is called after each epoch.
/// @throws std::invalid_argument naming the problem: images of another size or channel count
///         than the classifier's, missing or out-of-range labels, a bad configuration.
template <std::floating_point T, class B>
ClassifierTrainReport train_classifier(Classifier<T, B>& net, const io::ImageDataset& train,
                                       const io::ImageDataset* test,
                                       const ClassifierTrainConfig& cfg,
                                       const std::function<void(const EpochStats&)>& on_epoch = {});

/// Writes one augmented image (C, H, W), values in [-1, 1], from 8-bit pixels (C, H, W),
/// using the draws (stream, index0 .. index0 + 4) of `rng`.
inline void augment_image(const std::uint8_t* src, std::size_t c, std::size_t h, std::size_t w,
                          const Augment& a, const Rng& rng, std::uint64_t stream,
                          std::uint64_t index0, float* dst);

/// Checks that `data` fits a classifier of configuration `cfg` (labels if `need_labels`).
/// @throws std::invalid_argument naming `what` and the problem.
inline void check_dataset(const io::ImageDataset& data, const ClassifierConfig& cfg,
                          std::string_view what, bool need_labels);

// ---------------------------------------------------------------- implementation

inline void check_dataset(const io::ImageDataset& d, const ClassifierConfig& cfg,
                          std::string_view what, bool need_labels) {
  detail::require(d.n >= 1, what, "holds no images");
  detail::require(d.c == cfg.in_channels && d.h == cfg.image_size && d.w == cfg.image_size, what,
                  "images are ", d.c, "x", d.h, "x", d.w, " (CxHxW) but the classifier takes ",
                  cfg.in_channels, "x", cfg.image_size, "x", cfg.image_size);
  detail::require(d.pixels.size() == d.n * d.c * d.h * d.w, what, "pixel buffer has ",
                  d.pixels.size(), " bytes for ", d.n, " images");
  if (!need_labels) return;
  detail::require(d.labels.size() == d.n, what, "needs one label per image, got ", d.labels.size(),
                  " labels for ", d.n, " images");
  for (std::size_t i = 0; i < d.n; ++i)
    detail::require(d.labels[i] >= 0 && std::size_t(d.labels[i]) < cfg.num_classes, what, "label ",
                    d.labels[i], " of image ", i, " is outside [0, ", cfg.num_classes, ")");
}

inline void augment_image(const std::uint8_t* src, std::size_t c, std::size_t h, std::size_t w,
                          const Augment& a, const Rng& rng, std::uint64_t stream,
                          std::uint64_t index0, float* dst) {
  auto sym = [&](std::uint64_t k) { return 2.0 * rng.uniform(stream, index0 + k) - 1.0; };
  const double tx = a.max_shift * sym(0), ty = a.max_shift * sym(1);
  const double theta = a.max_rotation_deg * std::numbers::pi / 180.0 * sym(2);
  const double scale = 1.0 + a.max_scale * sym(3);
  const bool flip = a.hflip && rng.uniform(stream, index0 + 4) < 0.5;
  // Inverse map: source = R(-theta) (dest - centre - t) / scale + centre.
  const double cy = (double(h) - 1) / 2, cx = (double(w) - 1) / 2;
  const double ct = std::cos(theta) / scale, st = std::sin(theta) / scale;
  for (std::size_t y = 0; y < h; ++y) {
    for (std::size_t x = 0; x < w; ++x) {
      const double dx = double(flip ? w - 1 - x : x) - cx - tx, dy = double(y) - cy - ty;
      const double sx = ct * dx + st * dy + cx, sy = -st * dx + ct * dy + cy;
      const double fx = std::floor(sx), fy = std::floor(sy);
      const double ax = sx - fx, ay = sy - fy;
      const long x0 = long(fx), y0 = long(fy);
      for (std::size_t ch = 0; ch < c; ++ch) {
        const std::uint8_t* plane = src + ch * h * w;
        auto px = [&](long yy, long xx) -> double {
          if (yy < 0 || xx < 0 || yy >= long(h) || xx >= long(w)) return 0.0;
          return double(plane[std::size_t(yy) * w + std::size_t(xx)]);
        };
        const double v = (1 - ay) * ((1 - ax) * px(y0, x0) + ax * px(y0, x0 + 1)) +
                         ay * ((1 - ax) * px(y0 + 1, x0) + ax * px(y0 + 1, x0 + 1));
        dst[(ch * h + y) * w + x] = float(v / 127.5 - 1.0);
      }
    }
  }
}

template <std::floating_point T, class B>
double accuracy(Classifier<T, B>& net, const io::ImageDataset& data) {
  check_dataset(data, net.config(), "eval::accuracy: data", true);
  const std::vector<float> x = io::to_float_pm1(data.pixels);
  const Predictions p = predict(net, x, data.n);
  std::size_t right = 0;
  for (std::size_t i = 0; i < data.n; ++i) right += p.predicted(i) == std::size_t(data.labels[i]);
  return double(right) / double(data.n);
}

template <std::floating_point T, class B>
ClassifierTrainReport train_classifier(Classifier<T, B>& net, const io::ImageDataset& train,
                                       const io::ImageDataset* test,
                                       const ClassifierTrainConfig& cfg,
                                       const std::function<void(const EpochStats&)>& on_epoch) {
  cfg.validate();
  const ClassifierConfig& nc = net.config();
  check_dataset(train, nc, "train_classifier: training data", true);
  if (test) check_dataset(*test, nc, "train_classifier: test data", true);
  const B& be = net.backend();
  const std::size_t n = train.n, bs = std::min(cfg.batch_size, n), k = nc.num_classes;
  const std::size_t item = nc.in_channels * nc.image_size * nc.image_size;
  const std::size_t steps_per_epoch = n / bs;  // the last partial batch of an epoch is dropped
  const std::size_t total = steps_per_epoch * cfg.epochs;
  auto params = optim::collect_parameters<T, B>(net);
  optim::AdamOptimizer<T, B> adam(
      net, optim::Adam{.lr = cfg.lr, .weight_decay = cfg.weight_decay, .decoupled = true}, be);
  const Rng rng{cfg.seed};
  Tensor<T, B> x(Shape{bs, nc.in_channels, nc.image_size, nc.image_size});
  Tensor<T, B> dlogits(Shape{bs, k});
  std::vector<float> xf(bs * item), lg(bs * k), dl(bs * k);
  std::vector<T> xt(bs * item), dlt(bs * k), lgt(bs * k);
  std::vector<std::int32_t> y(bs);
  std::vector<std::uint32_t> perm(n);
  ClassifierTrainReport rep;
  const auto t0 = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  std::size_t step = 0;
  for (std::size_t e = 0; e < cfg.epochs; ++e) {
    std::iota(perm.begin(), perm.end(), 0u);
    const std::uint64_t sh = rng_stream::make(rng_stream::shuffle, e);
    for (std::size_t i = n; i > 1; --i)
      std::swap(perm[i - 1], perm[std::size_t(rng.below(i, sh, i))]);
    double loss_sum = 0;
    std::size_t right = 0, seen = 0;
    for (std::size_t s = 0; s < steps_per_epoch; ++s, ++step) {
      const std::uint64_t aug = rng_stream::make(rng_stream::augment, step);
      for (std::size_t j = 0; j < bs; ++j) {
        const std::size_t idx = perm[s * bs + j];
        const std::uint8_t* src = train.pixels.data() + idx * item;
        if (cfg.augment.enabled()) {
          augment_image(src, nc.in_channels, nc.image_size, nc.image_size, cfg.augment, rng, aug,
                        j * 8, xf.data() + j * item);
        } else {
          for (std::size_t q = 0; q < item; ++q) xf[j * item + q] = float(src[q]) / 127.5f - 1.0f;
        }
        y[j] = train.labels[idx];
      }
      std::copy(xf.begin(), xf.end(), xt.begin());
      x.copy_from(xt);
      optim::zero_grads(params, be);
      const ConstView<T> logits = net.forward(x.cview());
      ::ddpm::detail::Memory<typename B::memory_space>::copy_to_host(lgt.data(), logits.data(),
                                                                     lgt.size() * sizeof(T));
      std::copy(lgt.begin(), lgt.end(), lg.begin());
      const double loss = softmax_cross_entropy(lg, y, k, dl, cfg.label_smoothing);
      for (std::size_t j = 0; j < bs; ++j) {
        const float* r = lg.data() + j * k;
        right += std::size_t(std::max_element(r, r + k) - r) == std::size_t(y[j]);
      }
      seen += bs;
      loss_sum += loss;
      std::copy(dl.begin(), dl.end(), dlt.begin());
      dlogits.copy_from(dlt);
      net.backward(x.cview(), dlogits.cview());
      double lr = cfg.lr;
      if (step < cfg.warmup_steps) {
        lr *= double(step + 1) / double(cfg.warmup_steps);
      } else if (total > cfg.warmup_steps) {
        const double f = double(step - cfg.warmup_steps) / double(total - cfg.warmup_steps);
        lr *= 0.5 * (1.0 + std::cos(std::numbers::pi * f));
      }
      adam.step(lr);
    }
    EpochStats es;
    es.epoch = e + 1;
    es.steps = step;
    es.train_loss = steps_per_epoch ? loss_sum / double(steps_per_epoch) : 0.0;
    es.train_accuracy = seen ? double(right) / double(seen) : 0.0;
    if (test) es.test_accuracy = accuracy(net, *test);
    es.seconds = seconds();
    if (cfg.progress)
      std::fprintf(stderr, "epoch %zu/%zu  loss %.4f  train acc %.4f  test acc %s  %.0f s\n",
                   es.epoch, cfg.epochs, es.train_loss, es.train_accuracy,
                   test ? detail::cat(es.test_accuracy).c_str() : "-", es.seconds);
    rep.epochs.push_back(es);
    if (on_epoch) on_epoch(es);
  }
  rep.steps = step;
  rep.seconds = seconds();
  if (test) {
    rep.test_accuracy = rep.epochs.back().test_accuracy;
    rep.test_images = test->n;
  }
  net.release();
  return rep;
}

}  // namespace ddpm::eval
