// SPDX-License-Identifier: MIT
// ddpm/eval/score.hpp — scores a set of images against real data with a trained classifier:
// every figure of eval/metrics.hpp in one report, with the same figures for real held-out images
// next to them, as JSON and as a one-line summary. Needs ddpm::io (nlohmann-json).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <tuple>
#include <vector>

#include "ddpm/core/assert.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/eval/classifier.hpp"
#include "ddpm/eval/metrics.hpp"
#include "ddpm/eval/train.hpp"
#include "ddpm/io/types.hpp"

namespace ddpm::eval {

/// Settings of an Evaluator.
struct ScoreOptions {
  double confident_threshold = 0.9;  ///< "confident" = max softmax >= this
  std::size_t baseline_repeats = 5;  ///< real-image Fréchet baseline: draws averaged
  std::uint64_t baseline_seed = 0;
  /// A sample closer than this to a training image (L2 on the [0, 1] pixel scale, see
  /// nearest_neighbours) counts as a likely copy. The 1,000 held-out digits of data/mnist10k are
  /// 1.21 to 11 from their nearest training digit (5th percentile 2.04, median 4.70); an exact
  /// copy is 0. The same distances for real held-out images are in EvalReport::real.
  double copy_threshold = 1.0;
  /// Held-out images (the first ones) whose nearest-training distances form the real reference
  /// of the copy check (0 = skip; each costs a pass over the training set).
  std::size_t nn_reference_images = 300;
  std::size_t batch = 256;  ///< classifier batch size
};

/// The same figures for real held-out images, computed once per Evaluator.
struct RealFigures {
  std::size_t n = 0;
  double confident_fraction = 0, accuracy = -1, class_entropy = 0, inception_score = 0;
  double ink_mean = 0, ink_area = 0;  ///< see EvalReport::ink_mean, ink_area
  /// Nearest-training-image distances of the first nn_n held-out images (NaN without them).
  std::size_t nn_n = 0;
  double nn_mean = std::numeric_limits<double>::quiet_NaN();
  double nn_min = std::numeric_limits<double>::quiet_NaN();
  double nn_p05 = std::numeric_limits<double>::quiet_NaN();  ///< 5th percentile (nearest rank)
};

/// Everything score() reports. Figures that could not be computed are NaN (JSON null).
struct EvalReport {
  static constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  std::size_t n = 0, num_classes = 0;
  double confident_threshold = 0.9;
  double confident_fraction = nan;
  double accuracy = nan;                     ///< vs requested labels; NaN without labels
  std::vector<double> per_class_accuracy{};  ///< empty without labels
  std::vector<std::size_t> predicted_histogram{};
  double class_entropy = nan;
  double inception_score = nan;
  /// Ink: the mean pixel value on the [0, 1] scale (0 = black) and the fraction of pixels above
  /// 0.5. Thicker or bolder strokes than the real digits' show as more ink than `real` has.
  double ink_mean = nan, ink_area = nan;
  double fd = nan;                               ///< Fréchet distance to the held-out features
  std::size_t fd_reference_n = 0;                ///< held-out images in the reference fit
  double fd_real_mean = nan, fd_real_std = nan;  ///< the same for n' real held-out images
  std::size_t fd_real_n = 0, fd_real_repeats = 0;
  double nn_mean = nan, nn_min = nan, nn_median = nan;  ///< nearest-training-image distances
  std::size_t nn_below = 0;                             ///< samples closer than nn_threshold
  double nn_threshold = 0;
  std::size_t nn_train_n = 0;           ///< 0 when no training images were given
  std::vector<double> nn_distance{};    ///< per sample
  std::vector<std::size_t> nn_index{};  ///< per sample: index of the nearest training image
  RealFigures real{};

  /// Flat name -> value (for CSV logs): n, confident, accuracy, class_entropy, inception_score,
  /// ink_mean, ink_area, fd, fd_real, nn_mean, nn_min, nn_below.
  [[nodiscard]] std::map<std::string, double> metrics() const;
  /// JSON (ordered keys; NaN as null). Per-sample distances are left out unless `per_sample`.
  [[nodiscard]] nlohmann::ordered_json to_json(bool per_sample = false) const;
  /// One line, e.g. "n=100 acc=0.970 confident=0.930 entropy=0.990 IS=9.41 FD=3.21 (real@100
  /// 2.90+-0.31) NN-train mean 5.80 min 3.11 (real 4.60, 1.21), 0 below 1.00".
  [[nodiscard]] std::string summary() const;
};

namespace detail {
/// (mean, fraction above 0.5) of pixels given in [-1, 1], on the [0, 1] scale.
inline std::pair<double, double> ink(std::span<const float> pm1) {
  if (pm1.empty()) return {std::numeric_limits<double>::quiet_NaN(),
                           std::numeric_limits<double>::quiet_NaN()};
  double sum = 0;
  std::size_t on = 0;
  for (const float v : pm1) {
    const double u = 0.5 * (double(v) + 1.0);
    sum += u;
    on += u > 0.5;
  }
  return {sum / double(pm1.size()), double(on) / double(pm1.size())};
}
}  // namespace detail

/// Scores image sets against a reference of real images with a classifier.
///
/// The Fréchet reference is the Gaussian fit of the classifier features of `held_out` (all of
/// it). The real baseline ("the same statistic for real images at the same n") draws n' =
/// min(n, M/2) of the M held-out images, fits them, and measures their Fréchet distance to a fit
/// of the other M - n' held-out images, so the baseline never compares images with themselves;
/// it is averaged over `baseline_repeats` draws. The Fréchet distance is biased upwards for
/// small n, so compare a generator's figure with this baseline, not with 0.
/// Nearest-training-image distances need `train` (pixels are copied; may be null).
template <std::floating_point T, class B>
class Evaluator {
 public:
  /// @throws std::invalid_argument if the held-out or training images do not fit the
  ///         classifier (size, channels), or the held-out set has fewer than 2 images.
  Evaluator(Classifier<T, B>& net, const io::ImageDataset& held_out, const io::ImageDataset* train,
            ScoreOptions options = {});

  /// Scores n images (NCHW floats in [-1, 1]); `labels` (empty, or one per image) are the
  /// requested classes of class-conditional samples.
  /// @throws std::invalid_argument on a wrong size or label count.
  [[nodiscard]] EvalReport score(std::span<const float> images, std::size_t n,
                                 std::span<const std::int32_t> labels = {});

  /// Real baseline at n: mean and standard deviation over `repeats` draws (see the class comment).
  /// Returns {NaN, NaN} when the held-out set has fewer than 4 images.
  [[nodiscard]] std::pair<double, double> real_baseline(std::size_t n, std::size_t repeats) const;

  [[nodiscard]] const Gaussian& reference() const noexcept { return reference_; }
  [[nodiscard]] const RealFigures& real_figures() const noexcept { return real_; }
  [[nodiscard]] const ScoreOptions& options() const noexcept { return options_; }
  [[nodiscard]] Classifier<T, B>& classifier() noexcept { return net_; }

 private:
  Classifier<T, B>& net_;
  ScoreOptions options_;
  std::size_t ref_n_ = 0;
  std::vector<float> ref_features_;  // (M, F)
  Gaussian reference_;
  RealFigures real_;
  std::vector<std::uint8_t> train_pixels_;
  std::size_t train_n_ = 0;
};

/// Appends one row (step, the `extra` columns, then the report's metrics(), each group in name
/// order) to a CSV file, writing the header first if the file is new or empty. Non-finite values
/// are left empty. @throws IoError(path, ...) if it cannot be written.
inline void append_metrics_csv(const std::filesystem::path& path, std::uint64_t step,
                               const EvalReport& r,
                               const std::map<std::string, double>& extra = {});

// ---------------------------------------------------------------- implementation

template <std::floating_point T, class B>
Evaluator<T, B>::Evaluator(Classifier<T, B>& net, const io::ImageDataset& held_out,
                           const io::ImageDataset* train, ScoreOptions options)
    : net_(net), options_(options) {
  const ClassifierConfig& cfg = net.config();
  check_dataset(held_out, cfg, "Evaluator: held-out (reference) data", false);
  detail::require(held_out.n >= 2, "Evaluator: held-out (reference) data",
                  "needs at least 2 images, got ", held_out.n);
  detail::require(options_.confident_threshold > 0 && options_.confident_threshold <= 1,
                  "ScoreOptions::confident_threshold", "must be in (0, 1]");
  if (train) {
    check_dataset(*train, cfg, "Evaluator: training data", false);
    train_pixels_ = train->pixels;
    train_n_ = train->n;
  }
  const std::vector<float> x = io::to_float_pm1(held_out.pixels);
  const Predictions p = predict(net_, x, held_out.n, options_.batch);
  ref_n_ = held_out.n;
  ref_features_ = p.features;
  reference_ = fit_gaussian(ref_features_, ref_n_, p.feature_dim);
  real_.n = held_out.n;
  real_.confident_fraction = confident_fraction(p, options_.confident_threshold);
  real_.class_entropy = class_entropy(p);
  real_.inception_score = inception_score(p);
  std::tie(real_.ink_mean, real_.ink_area) = detail::ink(x);
  if (held_out.labels.size() == held_out.n) real_.accuracy = class_accuracy(p, held_out.labels);
  if (train_n_ > 0 && options_.nn_reference_images > 0) {
    const std::size_t m = std::min(options_.nn_reference_images, held_out.n);
    const std::size_t item = cfg.in_channels * cfg.image_size * cfg.image_size;
    const Nearest nn = nearest_neighbours(std::span<const float>(x.data(), m * item), m,
                                          train_pixels_, train_n_, item);
    std::vector<double> d = nn.distance;
    std::sort(d.begin(), d.end());
    real_.nn_n = m;
    real_.nn_min = d.front();
    real_.nn_mean = std::accumulate(d.begin(), d.end(), 0.0) / double(m);
    real_.nn_p05 = d[std::size_t(std::ceil(0.05 * double(m))) - 1];  // nearest rank, m >= 1
  }
}

template <std::floating_point T, class B>
std::pair<double, double> Evaluator<T, B>::real_baseline(std::size_t n, std::size_t repeats) const {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (ref_n_ < 4 || repeats == 0 || n == 0) return {nan, nan};
  const std::size_t m = std::min(n, ref_n_ / 2), dim = net_.config().feature_dim();
  std::vector<std::size_t> perm(ref_n_);
  std::vector<double> fds;
  const Rng rng{options_.baseline_seed};
  for (std::size_t r = 0; r < repeats; ++r) {
    std::iota(perm.begin(), perm.end(), std::size_t{0});
    const std::uint64_t stream = rng_stream::make(rng_stream::user + 1, r);
    for (std::size_t i = ref_n_; i > 1; --i)
      std::swap(perm[i - 1], perm[std::size_t(rng.below(i, stream, i))]);
    const std::span<const std::size_t> drawn(perm.data(), m), rest(perm.data() + m, ref_n_ - m);
    fds.push_back(frechet_distance(fit_gaussian(ref_features_, ref_n_, dim, drawn),
                                   fit_gaussian(ref_features_, ref_n_, dim, rest)));
  }
  const double mean = std::accumulate(fds.begin(), fds.end(), 0.0) / double(fds.size());
  double var = 0;
  for (const double f : fds) var += (f - mean) * (f - mean);
  return {mean, fds.size() > 1 ? std::sqrt(var / double(fds.size() - 1)) : 0.0};
}

template <std::floating_point T, class B>
EvalReport Evaluator<T, B>::score(std::span<const float> images, std::size_t n,
                                  std::span<const std::int32_t> labels) {
  const ClassifierConfig& cfg = net_.config();
  const std::size_t item = cfg.in_channels * cfg.image_size * cfg.image_size;
  detail::require(n >= 1, "Evaluator::score", "no images to score");
  detail::require(images.size() == n * item, "Evaluator::score", images.size(), " values for ", n,
                  " images of ", cfg.in_channels, "x", cfg.image_size, "x", cfg.image_size);
  detail::require(labels.empty() || labels.size() == n, "Evaluator::score", labels.size(),
                  " labels for ", n, " images (give one per image, or none)");
  for (std::size_t i = 0; i < labels.size(); ++i)
    detail::require(labels[i] >= 0 && std::size_t(labels[i]) < cfg.num_classes, "Evaluator::score",
                    "label ", labels[i], " of image ", i, " is not a class of this classifier (0..",
                    cfg.num_classes - 1, ")");
  const Predictions p = predict(net_, images, n, options_.batch);
  EvalReport r;
  r.n = n;
  r.num_classes = cfg.num_classes;
  r.confident_threshold = options_.confident_threshold;
  r.confident_fraction = confident_fraction(p, options_.confident_threshold);
  if (!labels.empty()) {
    r.accuracy = class_accuracy(p, labels);
    r.per_class_accuracy = per_class_accuracy(p, labels);
  }
  r.predicted_histogram = predicted_histogram(p);
  r.class_entropy = class_entropy(p);
  r.inception_score = inception_score(p);
  std::tie(r.ink_mean, r.ink_area) = detail::ink(images);
  r.fd = frechet_distance(fit_gaussian(p.features, n, p.feature_dim), reference_);
  r.fd_reference_n = ref_n_;
  const auto [mean, sd] = real_baseline(n, options_.baseline_repeats);
  r.fd_real_mean = mean;
  r.fd_real_std = sd;
  r.fd_real_n = std::min(n, ref_n_ / 2);
  r.fd_real_repeats = options_.baseline_repeats;
  r.nn_threshold = options_.copy_threshold;
  if (train_n_ > 0) {
    const Nearest nn = nearest_neighbours(images, n, train_pixels_, train_n_, item);
    r.nn_train_n = train_n_;
    r.nn_distance = nn.distance;
    r.nn_index = nn.index;
    std::vector<double> sorted = nn.distance;
    std::sort(sorted.begin(), sorted.end());
    r.nn_min = sorted.front();
    r.nn_median = sorted.size() % 2
                      ? sorted[sorted.size() / 2]
                      : 0.5 * (sorted[sorted.size() / 2 - 1] + sorted[sorted.size() / 2]);
    r.nn_mean = std::accumulate(sorted.begin(), sorted.end(), 0.0) / double(n);
    r.nn_below = std::size_t(std::count_if(sorted.begin(), sorted.end(),
                                           [&](double d) { return d < options_.copy_threshold; }));
  }
  r.real = real_;
  return r;
}

inline std::map<std::string, double> EvalReport::metrics() const {
  return {{"n", double(n)},
          {"confident", confident_fraction},
          {"accuracy", accuracy},
          {"class_entropy", class_entropy},
          {"inception_score", inception_score},
          {"ink_mean", ink_mean},
          {"ink_area", ink_area},
          {"fd", fd},
          {"fd_real", fd_real_mean},
          {"nn_mean", nn_mean},
          {"nn_min", nn_min},
          {"nn_below", nn_train_n ? double(nn_below) : nan}};
}

namespace detail {
inline nlohmann::ordered_json json_number(double v) {
  return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr);
}
inline std::string fixed(double v, int digits) {
  if (!std::isfinite(v)) return "n/a";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}
}  // namespace detail

inline nlohmann::ordered_json EvalReport::to_json(bool per_sample) const {
  using J = nlohmann::ordered_json;
  J j;
  j["n"] = n;
  j["num_classes"] = num_classes;
  j["confident_threshold"] = confident_threshold;
  j["confident_fraction"] = detail::json_number(confident_fraction);
  j["accuracy"] = detail::json_number(accuracy);
  if (!per_class_accuracy.empty()) {
    J a = J::array();
    for (const double v : per_class_accuracy) a.push_back(detail::json_number(v));
    j["per_class_accuracy"] = a;
  }
  j["predicted_histogram"] = predicted_histogram;
  j["class_entropy"] = detail::json_number(class_entropy);
  j["inception_score"] = detail::json_number(inception_score);
  j["ink_mean"] = detail::json_number(ink_mean);
  j["ink_area"] = detail::json_number(ink_area);
  j["fd"] = detail::json_number(fd);
  j["fd_reference_n"] = fd_reference_n;
  j["fd_real"] = J{{"mean", detail::json_number(fd_real_mean)},
                   {"std", detail::json_number(fd_real_std)},
                   {"n", fd_real_n},
                   {"repeats", fd_real_repeats}};
  if (nn_train_n) {
    J nn{{"train_images", nn_train_n},
         {"mean", detail::json_number(nn_mean)},
         {"median", detail::json_number(nn_median)},
         {"min", detail::json_number(nn_min)},
         {"threshold", nn_threshold},
         {"below_threshold", nn_below}};
    if (per_sample) {
      nn["distance"] = nn_distance;
      nn["index"] = nn_index;
    }
    j["nearest_train"] = nn;
  } else {
    j["nearest_train"] = nullptr;
  }
  j["real_held_out"] =
      J{{"n", real.n},
        {"confident_fraction", detail::json_number(real.confident_fraction)},
        {"accuracy", real.accuracy >= 0 ? J(real.accuracy) : J(nullptr)},
        {"class_entropy", detail::json_number(real.class_entropy)},
        {"inception_score", detail::json_number(real.inception_score)},
        {"ink_mean", detail::json_number(real.ink_mean)},
        {"ink_area", detail::json_number(real.ink_area)},
        {"nearest_train", real.nn_n ? J{{"n", real.nn_n},
                                        {"mean", detail::json_number(real.nn_mean)},
                                        {"p05", detail::json_number(real.nn_p05)},
                                        {"min", detail::json_number(real.nn_min)}}
                                    : J(nullptr)}};
  return j;
}

inline std::string EvalReport::summary() const {
  using detail::fixed;
  std::string s = "n=" + std::to_string(n);
  if (std::isfinite(accuracy)) s += " acc=" + fixed(accuracy, 3);
  s += " confident=" + fixed(confident_fraction, 3) + " entropy=" + fixed(class_entropy, 3) +
       " IS=" + fixed(inception_score, 2) + " FD=" + fixed(fd, 2) + " (real@" +
       std::to_string(fd_real_n) + " " + fixed(fd_real_mean, 2) + "+-" + fixed(fd_real_std, 2) +
       ") ink " + fixed(ink_mean, 3) + "/" + fixed(ink_area, 3) + " (real " +
       fixed(real.ink_mean, 3) + "/" + fixed(real.ink_area, 3) + ")";
  if (nn_train_n) {
    s += " NN-train mean " + fixed(nn_mean, 2) + " min " + fixed(nn_min, 2);
    if (real.nn_n) s += " (real " + fixed(real.nn_mean, 2) + ", " + fixed(real.nn_min, 2) + ")";
    s += ", " + std::to_string(nn_below) + " below " + fixed(nn_threshold, 2);
  }
  return s;
}

inline void append_metrics_csv(const std::filesystem::path& path, std::uint64_t step,
                               const EvalReport& r, const std::map<std::string, double>& extra) {
  std::vector<std::pair<std::string, double>> m(extra.begin(), extra.end());
  for (const auto& kv : r.metrics()) m.push_back(kv);
  std::error_code ec;
  const bool fresh =
      !std::filesystem::exists(path, ec) || std::filesystem::file_size(path, ec) == 0;
  std::ofstream out(path, std::ios::app);
  if (!out) throw IoError(path.string(), "cannot open for appending");
  if (fresh) {
    out << "step";
    for (const auto& [k, v] : m) out << ',' << k;
    out << '\n';
  }
  out.precision(9);
  out << step;
  for (const auto& [k, v] : m) {
    out << ',';
    if (std::isfinite(v)) out << v;
  }
  out << '\n';
  if (!out) throw IoError(path.string(), "write failed");
}

}  // namespace ddpm::eval
