// SPDX-License-Identifier: MIT
// ddpm/eval/rgb_score.hpp — a sample score for unconditional image sets of any size and channel
// count (anime faces, any folder of images), where no pretrained classifier exists:
//
//  * a feature encoder trained from the user's own training images by a self-supervised task,
//    rotation prediction (Gidaris et al. 2018, "RotNet"): the eval Classifier learns which of
//    0, 90, 180, 270 degrees an image was turned by. To tell, it must find the parts of the
//    image that fix its orientation (faces: eyes over mouth, hair on top), so its pooled
//    features describe the content. Training reuses train_classifier (eval/train.hpp) on the
//    four rotations of each image; the encoder is saved as a classifier file with the metadata
//    key encoder.kind = "rotation" (eval/classifier_io.hpp);
//  * the Fréchet distance (eval/metrics.hpp) of the samples' features — the encoder's pooled
//    features plus each colour channel's mean and spread, standardised by the training images'
//    spread — to the training images' features, next to the real-vs-real baseline at the same n
//    (drawn as Evaluator::real_baseline does), and nearest-training-image distances (copies,
//    eval::nearest_neighbours).
//
// Needs ddpm::io.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/core/assert.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/eval/classifier.hpp"
#include "ddpm/eval/classifier_io.hpp"
#include "ddpm/eval/metrics.hpp"
#include "ddpm/eval/score.hpp"
#include "ddpm/eval/train.hpp"
#include "ddpm/io/types.hpp"

namespace ddpm::eval {

/// Value of the metadata key "encoder.kind" of a feature encoder file.
inline constexpr std::string_view rotation_encoder_kind = "rotation";

/// Settings of train_feature_encoder: the network (in_channels and image_size are taken from the
/// data; num_classes is 4, the rotations) and its training (no flips: a mirrored 90 degree turn
/// looks like a 270 degree one; small shifts and scalings only).
struct FeatureEncoderConfig {
  ClassifierConfig net{.in_channels = 3, .image_size = 32, .num_classes = 4,
                       .channels = {16, 32, 64}, .depth = 1, .groups = 8};
  ClassifierTrainConfig train{.epochs = 3,
                              .batch_size = 64,
                              .lr = 3e-3,
                              .weight_decay = 1e-4,
                              .warmup_steps = 30,
                              .label_smoothing = 0.0,
                              .augment = Augment{.max_shift = 1.0, .max_rotation_deg = 0.0,
                                                 .max_scale = 0.05, .hflip = false},
                              .seed = 0,
                              .progress = true};
  std::size_t max_images = 2000;  ///< train on at most this many images (0 = all)
};

/// The four rotations of each image of a square data set: image 4 i + k is image i turned by
/// k * 90 degrees counter-clockwise, label k.
/// @throws std::invalid_argument if the images are not square.
[[nodiscard]] inline io::ImageDataset rotation_dataset(const io::ImageDataset& d,
                                                       std::size_t max_images = 0);

/// Trains a rotation-prediction encoder on `real` (the user's training images).
/// @throws std::invalid_argument for non-square images or a bad configuration.
template <std::floating_point T, class B>
[[nodiscard]] Classifier<T, B> train_feature_encoder(const io::ImageDataset& real,
                                                     FeatureEncoderConfig cfg, const B& backend = {},
                                                     ClassifierTrainReport* report = nullptr);

/// Saves an encoder (save_classifier with encoder.kind = "rotation" added to `extra`).
template <std::floating_point T, class B>
void save_feature_encoder(const std::filesystem::path& path, Classifier<T, B>& net,
                          std::map<std::string, std::string> extra = {});

/// Loads an encoder for images of channels x size x size.
/// @throws IoError(path, ...) if the file is not a feature encoder (e.g. the MNIST classifier or a
///         diffusion checkpoint), or was trained on images of another size or channel count
///         (naming both, and how to train one for this size).
template <std::floating_point T, class B>
[[nodiscard]] LoadedClassifier<T, B> load_feature_encoder(const std::filesystem::path& path,
                                                          std::size_t channels, std::size_t size,
                                                          const B& backend = {});

/// Settings of RgbEvaluator.
struct RgbScoreOptions {
  std::size_t baseline_repeats = 5;  ///< real-vs-real Fréchet draws averaged
  std::uint64_t baseline_seed = 0;
  /// A sample whose RMS pixel difference to its nearest training image (values on the [0, 1]
  /// scale) is below this counts as a copy: 0.02 is about 5 grey levels per value.
  double copy_rms = 0.02;
  /// Real images whose nearest *other* real image gives the reference distances (0 = skip).
  std::size_t nn_reference_images = 200;
  std::size_t batch = 128;
};

/// What RgbEvaluator::score reports. Distances to the nearest training image are RMS differences
/// per value on the [0, 1] scale (L2 / sqrt(C H W)), comparable across image sizes.
struct RgbReport {
  static constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  std::size_t n = 0, c = 0, size = 0;
  double fd = nan;                 ///< Fréchet distance of the encoder features to the reference
  std::size_t reference_n = 0;     ///< real images in the reference fit
  double fd_real_mean = nan, fd_real_std = nan;  ///< real vs real at fd_real_n images
  std::size_t fd_real_n = 0, fd_real_repeats = 0;
  std::size_t train_n = 0;  ///< images searched for the nearest neighbour
  double nn_mean = nan, nn_median = nan, nn_min = nan;
  std::size_t copies = 0;  ///< samples with nn distance < copy_rms
  double copy_rms = 0;
  std::vector<double> nn_distance{};
  std::vector<std::size_t> nn_index{};
  std::size_t real_nn_n = 0;  ///< the same distances for real images (to the other real images)
  double real_nn_mean = nan, real_nn_min = nan;
  /// Within the set: per sample, the RMS difference to the nearest *other* sample (mean, min),
  /// and the pairs closer than copy_rms (near-duplicates: "no two alike" fails). Next to it the
  /// same for the first min(n, real images) real images among themselves (NaN when n < 2).
  double self_nn_mean = nan, self_nn_min = nan;
  std::size_t duplicate_pairs = 0;
  std::size_t real_self_n = 0;
  double real_self_nn_mean = nan, real_self_nn_min = nan;

  [[nodiscard]] nlohmann::ordered_json to_json(bool per_sample = false) const;
  /// One line: "n=25 FD=12.3 (real@25 4.5+-0.6) NN-train mean 0.21 min 0.15 (real 0.18, 0.09),
  /// 0 copies (< 0.020); within the set NN mean 0.25 min 0.19 (real@25 0.26, 0.20), 0 alike".
  [[nodiscard]] std::string summary() const;
  /// Figures for a CSV log: n, fd, fd_real, nn_mean, nn_min, copies, self_nn_min, duplicate_pairs.
  [[nodiscard]] std::map<std::string, double> metrics() const;
};

/// The feature vector of the RGB score for n images (NCHW floats in [-1, 1]): the encoder's
/// pooled features followed by the mean and the standard deviation of each colour channel's
/// pixels (2 C values). The encoder's GroupNorm layers remove most of a global colour change and
/// rotation prediction does not need colour, so the colour statistics are added explicitly.
/// @return (n, encoder.feature_dim + 2 C) row-major.
template <std::floating_point T, class B>
[[nodiscard]] std::vector<float> rgb_features(Classifier<T, B>& encoder, std::span<const float> images,
                                              std::size_t n, std::size_t batch = 128);

/// Real-vs-real Fréchet baseline: `repeats` times, n of the m rows of `features` (drawn without
/// replacement, seeded) against the other rows; mean and standard deviation of the distances
/// (NaN when m < 4). n is capped at m / 2. The draw is Evaluator::real_baseline's.
[[nodiscard]] inline std::pair<double, double> frechet_baseline(std::span<const float> features,
                                                                std::size_t m, std::size_t dim,
                                                                std::size_t n, std::size_t repeats,
                                                                std::uint64_t seed);

/// Scores image sets against real images with a feature encoder. The real images are both the
/// Fréchet reference and the nearest-neighbour base (for a user's training folder, the training
/// images). Every feature is standardised by the real images' mean and standard deviation, so
/// the distance is in units of the real spread and no feature dominates by its scale. Holds a
/// reference to the encoder.
template <std::floating_point T, class B>
class RgbEvaluator {
 public:
  /// @throws std::invalid_argument if the real images do not fit the encoder or are fewer than 4.
  RgbEvaluator(Classifier<T, B>& encoder, const io::ImageDataset& real, RgbScoreOptions options = {});

  /// Scores n images (NCHW floats in [-1, 1]).
  /// @throws std::invalid_argument if n is 0 or the images are not the encoder's size.
  [[nodiscard]] RgbReport score(std::span<const float> images, std::size_t n);

  /// Standardised features of n images (see rgb_features), (n, dim()).
  [[nodiscard]] std::vector<float> features(std::span<const float> images, std::size_t n);
  [[nodiscard]] std::size_t dim() const noexcept { return dim_; }

 private:
  Classifier<T, B>& net_;
  RgbScoreOptions options_;
  std::size_t c_ = 0, size_ = 0, dim_ = 0;
  std::vector<double> mu_, inv_sd_;
  std::vector<float> ref_features_;
  Gaussian reference_;
  std::vector<std::uint8_t> train_pixels_;
  std::size_t train_n_ = 0;
  std::size_t real_nn_n_ = 0;
  double real_nn_mean_ = RgbReport::nan, real_nn_min_ = RgbReport::nan;
  // within-set figures of the first real_self_n_ real images (the last n scored; recomputed
  // only when n changes)
  std::size_t real_self_n_ = 0;
  double real_self_mean_ = RgbReport::nan, real_self_min_ = RgbReport::nan;
};

// ---------------------------------------------------------------- implementation

inline io::ImageDataset rotation_dataset(const io::ImageDataset& d, std::size_t max_images) {
  detail::require(d.h == d.w && d.h > 0, "eval::rotation_dataset", "images must be square, got ",
                  d.w, "x", d.h);
  detail::require(d.pixels.size() == d.n * d.c * d.h * d.w, "eval::rotation_dataset",
                  "pixel buffer has ", d.pixels.size(), " bytes for ", d.n, " images");
  const std::size_t n = max_images ? std::min(max_images, d.n) : d.n, s = d.h, hw = s * s;
  io::ImageDataset out;
  out.n = 4 * n;
  out.c = d.c;
  out.h = out.w = s;
  out.pixels.resize(out.n * d.c * hw);
  out.labels.resize(out.n);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t k = 0; k < 4; ++k) {
      const std::uint8_t* src = d.pixels.data() + i * d.c * hw;
      std::uint8_t* dst = out.pixels.data() + (4 * i + k) * d.c * hw;
      out.labels[4 * i + k] = std::int32_t(k);
      for (std::size_t ch = 0; ch < d.c; ++ch)
        for (std::size_t y = 0; y < s; ++y)
          for (std::size_t x = 0; x < s; ++x) {
            // Counter-clockwise by k * 90 degrees: destination (y, x) reads source (sy, sx).
            std::size_t sy = y, sx = x;
            if (k == 1) sy = x, sx = s - 1 - y;
            if (k == 2) sy = s - 1 - y, sx = s - 1 - x;
            if (k == 3) sy = s - 1 - x, sx = y;
            dst[ch * hw + y * s + x] = src[ch * hw + sy * s + sx];
          }
    }
  return out;
}

template <std::floating_point T, class B>
Classifier<T, B> train_feature_encoder(const io::ImageDataset& real, FeatureEncoderConfig cfg,
                                       const B& backend, ClassifierTrainReport* report) {
  detail::require(real.n >= 1, "eval::train_feature_encoder", "no training images");
  detail::require(real.h == real.w, "eval::train_feature_encoder", "images must be square, got ",
                  real.w, "x", real.h);
  cfg.net.in_channels = real.c;
  cfg.net.image_size = real.h;
  cfg.net.num_classes = 4;
  const io::ImageDataset rot = rotation_dataset(real, cfg.max_images);
  Classifier<T, B> net(cfg.net, backend, cfg.train.seed);
  const ClassifierTrainReport rep = train_classifier(net, rot, nullptr, cfg.train);
  if (report) *report = rep;
  return net;
}

template <std::floating_point T, class B>
void save_feature_encoder(const std::filesystem::path& path, Classifier<T, B>& net,
                          std::map<std::string, std::string> extra) {
  extra["encoder.kind"] = std::string(rotation_encoder_kind);
  save_classifier(path, net, extra);
}

template <std::floating_point T, class B>
LoadedClassifier<T, B> load_feature_encoder(const std::filesystem::path& path, std::size_t channels,
                                            std::size_t size, const B& backend) {
  const std::string file = path.string();
  LoadedClassifier<T, B> l = load_classifier<T, B>(path, backend);
  const auto it = l.metadata.find("encoder.kind");
  if (it == l.metadata.end() || it->second != rotation_encoder_kind)
    throw IoError(file, "is a classifier, not a feature encoder (no encoder.kind = rotation in its "
                        "metadata); train one with `ddpm-eval train-encoder`");
  const ClassifierConfig& c = l.net.config();
  if (c.image_size != size || c.in_channels != channels)
    throw IoError(file, detail::cat("the feature encoder was trained on ", c.in_channels, "x",
                                    c.image_size, "x", c.image_size,
                                    " images (CxHxW), the images to score are ", channels, "x",
                                    size, "x", size, ": train an encoder for this size with "
                                    "`ddpm-eval train-encoder --data DIR --image-size ",
                                    size, "`"));
  return l;
}

template <std::floating_point T, class B>
std::vector<float> rgb_features(Classifier<T, B>& encoder, std::span<const float> images,
                                std::size_t n, std::size_t batch) {
  const ClassifierConfig& cfg = encoder.config();
  const std::size_t c = cfg.in_channels, hw = cfg.image_size * cfg.image_size;
  const Predictions p = predict(encoder, images, n, batch);
  const std::size_t f = p.feature_dim, dim = f + 2 * c;
  std::vector<float> out(n * dim);
  for (std::size_t i = 0; i < n; ++i) {
    std::copy_n(p.features.begin() + std::ptrdiff_t(i * f), f, out.begin() + std::ptrdiff_t(i * dim));
    for (std::size_t ch = 0; ch < c; ++ch) {
      const float* x = images.data() + (i * c + ch) * hw;
      double s = 0, s2 = 0;
      for (std::size_t k = 0; k < hw; ++k) s += x[k];
      const double mean = s / double(hw);
      for (std::size_t k = 0; k < hw; ++k) s2 += (x[k] - mean) * (x[k] - mean);
      out[i * dim + f + ch] = float(mean);
      out[i * dim + f + c + ch] = float(std::sqrt(s2 / double(hw)));
    }
  }
  return out;
}

inline std::pair<double, double> frechet_baseline(std::span<const float> features, std::size_t m,
                                                  std::size_t dim, std::size_t n,
                                                  std::size_t repeats, std::uint64_t seed) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (m < 4 || repeats == 0 || n == 0) return {nan, nan};
  const std::size_t k = std::min(n, m / 2);
  std::vector<std::size_t> perm(m);
  std::vector<double> fds;
  const Rng rng{seed};
  for (std::size_t r = 0; r < repeats; ++r) {
    std::iota(perm.begin(), perm.end(), std::size_t{0});
    const std::uint64_t stream = rng_stream::make(rng_stream::user + 1, r);
    for (std::size_t i = m; i > 1; --i) std::swap(perm[i - 1], perm[std::size_t(rng.below(i, stream, i))]);
    const std::span<const std::size_t> drawn(perm.data(), k), rest(perm.data() + k, m - k);
    fds.push_back(frechet_distance(fit_gaussian(features, m, dim, drawn),
                                   fit_gaussian(features, m, dim, rest)));
  }
  const double mean = std::accumulate(fds.begin(), fds.end(), 0.0) / double(fds.size());
  double var = 0;
  for (const double f : fds) var += (f - mean) * (f - mean);
  return {mean, fds.size() > 1 ? std::sqrt(var / double(fds.size() - 1)) : 0.0};
}

template <std::floating_point T, class B>
RgbEvaluator<T, B>::RgbEvaluator(Classifier<T, B>& encoder, const io::ImageDataset& real,
                                 RgbScoreOptions options)
    : net_(encoder), options_(options) {
  const ClassifierConfig& cfg = encoder.config();
  c_ = cfg.in_channels;
  size_ = cfg.image_size;
  check_dataset(real, cfg, "RgbEvaluator: real images", false);
  detail::require(real.n >= 4, "RgbEvaluator: real images", "needs at least 4 images, got ",
                  real.n);
  detail::require(options_.copy_rms >= 0, "RgbScoreOptions::copy_rms", "must be >= 0");
  const std::size_t px = c_ * size_ * size_;
  train_pixels_ = real.pixels;
  train_n_ = real.n;
  const std::vector<float> x = io::to_float_pm1(real.pixels);
  std::vector<float> f = rgb_features(net_, x, real.n, options_.batch);
  dim_ = f.size() / real.n;
  mu_.assign(dim_, 0.0);
  inv_sd_.assign(dim_, 0.0);
  for (std::size_t i = 0; i < real.n; ++i)
    for (std::size_t k = 0; k < dim_; ++k) mu_[k] += f[i * dim_ + k];
  for (auto& m : mu_) m /= double(real.n);
  for (std::size_t i = 0; i < real.n; ++i)
    for (std::size_t k = 0; k < dim_; ++k)
      inv_sd_[k] += (f[i * dim_ + k] - mu_[k]) * (f[i * dim_ + k] - mu_[k]);
  for (auto& v : inv_sd_) {
    const double sd = std::sqrt(v / double(real.n - 1));
    v = sd > 1e-12 ? 1.0 / sd : 0.0;  // a constant feature (a dead unit) is left out
  }
  for (std::size_t i = 0; i < real.n; ++i)
    for (std::size_t k = 0; k < dim_; ++k)
      f[i * dim_ + k] = float((f[i * dim_ + k] - mu_[k]) * inv_sd_[k]);
  ref_features_ = std::move(f);
  reference_ = fit_gaussian(ref_features_, real.n, dim_);
  // Real reference of the copy check: the first m real images against the other real ones.
  const std::size_t m = std::min(options_.nn_reference_images, real.n / 2);
  if (m > 0) {
    const Nearest nn = nearest_neighbours(
        std::span<const float>(x.data(), m * px), m,
        std::span<const std::uint8_t>(real.pixels.data() + m * px, (real.n - m) * px), real.n - m, px);
    const double scale = 1.0 / std::sqrt(double(px));
    real_nn_n_ = m;
    real_nn_min_ = *std::min_element(nn.distance.begin(), nn.distance.end()) * scale;
    real_nn_mean_ = std::accumulate(nn.distance.begin(), nn.distance.end(), 0.0) / double(m) * scale;
  }
}

template <std::floating_point T, class B>
std::vector<float> RgbEvaluator<T, B>::features(std::span<const float> images, std::size_t n) {
  std::vector<float> f = rgb_features(net_, images, n, options_.batch);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t k = 0; k < dim_; ++k)
      f[i * dim_ + k] = float((f[i * dim_ + k] - mu_[k]) * inv_sd_[k]);
  return f;
}

template <std::floating_point T, class B>
RgbReport RgbEvaluator<T, B>::score(std::span<const float> images, std::size_t n) {
  const std::size_t px = c_ * size_ * size_;
  detail::require(n >= 1, "RgbEvaluator::score", "no images to score");
  detail::require(images.size() == n * px, "RgbEvaluator::score", images.size(), " values for ", n,
                  " images of ", c_, "x", size_, "x", size_);
  const std::vector<float> f = features(images, n);
  RgbReport r;
  r.n = n;
  r.c = c_;
  r.size = size_;
  r.fd = frechet_distance(fit_gaussian(f, n, dim_), reference_);
  r.reference_n = train_n_;
  const auto [mean, sd] = frechet_baseline(ref_features_, train_n_, dim_, n,
                                           options_.baseline_repeats, options_.baseline_seed);
  r.fd_real_mean = mean;
  r.fd_real_std = sd;
  r.fd_real_n = std::min(n, train_n_ / 2);
  r.fd_real_repeats = options_.baseline_repeats;
  const Nearest nn = nearest_neighbours(images, n, train_pixels_, train_n_, px);
  const double scale = 1.0 / std::sqrt(double(px));
  r.train_n = train_n_;
  r.nn_distance = nn.distance;
  for (double& d : r.nn_distance) d *= scale;
  r.nn_index = nn.index;
  std::vector<double> sorted = r.nn_distance;
  std::sort(sorted.begin(), sorted.end());
  r.nn_min = sorted.front();
  r.nn_median = sorted.size() % 2 ? sorted[sorted.size() / 2]
                                  : 0.5 * (sorted[sorted.size() / 2 - 1] + sorted[sorted.size() / 2]);
  r.nn_mean = std::accumulate(sorted.begin(), sorted.end(), 0.0) / double(n);
  r.copies = std::size_t(std::count_if(sorted.begin(), sorted.end(),
                                       [&](double d) { return d < options_.copy_rms; }));
  r.copy_rms = options_.copy_rms;
  r.real_nn_n = real_nn_n_;
  r.real_nn_mean = real_nn_mean_;
  r.real_nn_min = real_nn_min_;
  if (n >= 2) {
    // samples in [-1, 1]: half the difference is the difference on the [0, 1] scale
    const auto min_and_mean = [](const WithinSet& w, double& min, double& mean) {
      min = *std::min_element(w.distance.begin(), w.distance.end());
      mean = std::accumulate(w.distance.begin(), w.distance.end(), 0.0) / double(w.distance.size());
    };
    const WithinSet w = within_set_nearest(images, n, px, 0.5 / std::sqrt(double(px)), options_.copy_rms);
    min_and_mean(w, r.self_nn_min, r.self_nn_mean);
    r.duplicate_pairs = w.pairs_below;
    r.real_self_n = std::min(n, train_n_);
    if (r.real_self_n != real_self_n_) {
      const WithinSet wr = within_set_nearest(
          std::span<const std::uint8_t>(train_pixels_.data(), r.real_self_n * px), r.real_self_n, px,
          1.0 / (255.0 * std::sqrt(double(px))), options_.copy_rms);
      real_self_n_ = r.real_self_n;
      min_and_mean(wr, real_self_min_, real_self_mean_);
    }
    r.real_self_nn_min = real_self_min_;
    r.real_self_nn_mean = real_self_mean_;
  }
  return r;
}

inline nlohmann::ordered_json RgbReport::to_json(bool per_sample) const {
  using J = nlohmann::ordered_json;
  J j;
  j["n"] = n;
  j["image"] = J{{"channels", c}, {"size", size}};
  j["fd"] = detail::json_number(fd);
  j["fd_reference_n"] = reference_n;
  j["fd_real"] = J{{"mean", detail::json_number(fd_real_mean)},
                   {"std", detail::json_number(fd_real_std)},
                   {"n", fd_real_n},
                   {"repeats", fd_real_repeats}};
  J nn{{"train_images", train_n},
       {"metric", "RMS difference per value, [0, 1] scale"},
       {"mean", detail::json_number(nn_mean)},
       {"median", detail::json_number(nn_median)},
       {"min", detail::json_number(nn_min)},
       {"copy_threshold", copy_rms},
       {"copies", copies}};
  if (per_sample) {
    nn["distance"] = nn_distance;
    nn["index"] = nn_index;
  }
  j["nearest_train"] = nn;
  j["real_nearest_other_real"] = real_nn_n ? J{{"n", real_nn_n},
                                               {"mean", detail::json_number(real_nn_mean)},
                                               {"min", detail::json_number(real_nn_min)}}
                                           : J(nullptr);
  j["within_set"] = J{{"metric", "RMS difference per value to the nearest other sample, [0, 1] scale"},
                      {"mean", detail::json_number(self_nn_mean)},
                      {"min", detail::json_number(self_nn_min)},
                      {"alike_threshold", copy_rms},
                      {"alike_pairs", duplicate_pairs},
                      {"real", J{{"n", real_self_n},
                                 {"mean", detail::json_number(real_self_nn_mean)},
                                 {"min", detail::json_number(real_self_nn_min)}}}};
  return j;
}

inline std::string RgbReport::summary() const {
  using detail::fixed;
  std::string s = "n=" + std::to_string(n) + " FD=" + fixed(fd, 3) + " (real@" +
                  std::to_string(fd_real_n) + " " + fixed(fd_real_mean, 3) + "+-" +
                  fixed(fd_real_std, 3) + ")";
  s += " NN-train mean " + fixed(nn_mean, 3) + " min " + fixed(nn_min, 3);
  if (real_nn_n) s += " (real " + fixed(real_nn_mean, 3) + ", " + fixed(real_nn_min, 3) + ")";
  s += ", " + std::to_string(copies) + " copies (< " + fixed(copy_rms, 3) + ")";
  if (n >= 2)
    s += "; within the set NN mean " + fixed(self_nn_mean, 3) + " min " + fixed(self_nn_min, 3) +
         " (real@" + std::to_string(real_self_n) + " " + fixed(real_self_nn_mean, 3) + ", " +
         fixed(real_self_nn_min, 3) + "), " + std::to_string(duplicate_pairs) + " alike";
  return s;
}

inline std::map<std::string, double> RgbReport::metrics() const {
  return {{"n", double(n)},         {"fd", fd},         {"fd_real", fd_real_mean},
          {"nn_mean", nn_mean},     {"nn_min", nn_min}, {"copies", double(copies)},
          {"self_nn_min", self_nn_min}, {"duplicate_pairs", double(duplicate_pairs)}};
}

}  // namespace ddpm::eval
