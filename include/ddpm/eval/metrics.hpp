// SPDX-License-Identifier: MIT
// ddpm/eval/metrics.hpp — sample-quality figures computed from a classifier's outputs:
// confident fraction, class accuracy, normalised entropy of the predicted classes, an
// Inception-Score-like figure, the Fréchet distance between Gaussian fits of features, and
// nearest-neighbour distances in pixel space (to flag copies of training images).
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "ddpm/core/assert.hpp"
#include "ddpm/eval/classifier.hpp"

namespace ddpm::eval {

/// Fraction of images whose largest class probability is >= threshold (0.9 in the reports).
[[nodiscard]] inline double confident_fraction(const Predictions& p, double threshold = 0.9);

/// Fraction of images whose most probable class equals the requested label.
/// @pre labels.size() == p.n (std::invalid_argument otherwise).
[[nodiscard]] inline double class_accuracy(const Predictions& p,
                                           std::span<const std::int32_t> labels);

/// Accuracy per requested class (NaN for a class with no image).
[[nodiscard]] inline std::vector<double> per_class_accuracy(const Predictions& p,
                                                            std::span<const std::int32_t> labels);

/// How many images are predicted as each class (argmax), size num_classes.
[[nodiscard]] inline std::vector<std::size_t> predicted_histogram(const Predictions& p);

/// Entropy of the predicted-class histogram divided by log(num_classes): 1 when every class is
/// predicted equally often, 0 when all images fall in one class (mode collapse).
[[nodiscard]] inline double class_entropy(const Predictions& p);

/// Inception-Score-like figure on this classifier (Salimans et al. 2016, with our classifier in
/// place of Inception v3): exp(mean_i KL(p(y|x_i) || p(y))), p(y) = mean_i p(y|x_i). It lies in
/// [1, num_classes]: high when each image is classified confidently AND the classes are varied.
[[nodiscard]] inline double inception_score(const Predictions& p);

/// A Gaussian fit of feature vectors: mean and unbiased covariance (divided by n - 1, as
/// numpy.cov; zero when n == 1).
struct Gaussian {
  std::size_t n = 0;
  Eigen::VectorXd mean{};
  Eigen::MatrixXd cov{};
};

/// Fits rows `rows` (all rows if empty) of an (n, dim) row-major feature matrix.
/// @pre n >= 1, features.size() == n * dim, every index in rows < n.
[[nodiscard]] inline Gaussian fit_gaussian(std::span<const float> features, std::size_t n,
                                           std::size_t dim, std::span<const std::size_t> rows = {});

/// Fréchet distance between two Gaussians (Dowson & Landau 1982; FID, Heusel et al. 2017):
///   d^2 = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)).
/// tr((S_a S_b)^(1/2)) is computed as tr((R S_b R)^(1/2)) with R = S_a^(1/2): R S_b R is
/// symmetric positive semi-definite and similar to S_a S_b (same eigenvalues), so both square
/// roots come from Eigen's SelfAdjointEigenSolver, with eigenvalues below 0 (rounding) clamped
/// to 0. This avoids the complex sqrtm of the non-symmetric product (scipy.linalg.sqrtm in
/// pytorch-fid) and its imaginary residue on singular covariances (n <= dim).
/// @pre equal dimensions. @return d^2 (>= 0), like FID.
[[nodiscard]] inline double frechet_distance(const Gaussian& a, const Gaussian& b);

/// Nearest neighbours in pixel space.
struct Nearest {
  std::vector<double> distance{};    ///< per query: min over the base of the L2 distance
  std::vector<std::size_t> index{};  ///< per query: the base image that attains it
};

/// For each of nq query images (floats in [-1, 1], dim values each) the closest of nb base images
/// (bytes in [0, 255], dim values each). Distances are L2 norms on the [0, 1] pixel scale
/// (pixel / 255, and (x + 1) / 2 for the queries): 0 for an exact copy; a 28x28 digit and its
/// nearest *different* MNIST training digit are typically 3 to 8 apart.
/// @pre queries.size() == nq * dim, base.size() == nb * dim, nb >= 1.
[[nodiscard]] inline Nearest nearest_neighbours(std::span<const float> queries, std::size_t nq,
                                                std::span<const std::uint8_t> base, std::size_t nb,
                                                std::size_t dim);

/// Within one set: per image, the L2 distance to the closest *other* image, and the number of
/// pairs closer than `alike`.
struct WithinSet {
  std::vector<double> distance{};
  std::size_t pairs_below = 0;
};

/// Within-set nearest neighbours of n >= 2 images of dim values each; the values are multiplied
/// by `scale` first (e.g. 0.5 / sqrt(dim) for floats in [-1, 1]: RMS differences on the [0, 1]
/// scale), `alike` is in the scaled units. Distances from |a|^2 + |b|^2 - 2 a.b in double, a
/// block of rows against all at a time (Eigen GEMM, memory O(block n)).
template <class V>
[[nodiscard]] WithinSet within_set_nearest(std::span<const V> images, std::size_t n, std::size_t dim,
                                           double scale, double alike);

// ---------------------------------------------------------------- implementation

inline double confident_fraction(const Predictions& p, double threshold) {
  if (p.n == 0) return 0.0;
  std::size_t c = 0;
  for (std::size_t i = 0; i < p.n; ++i) c += double(p.confidence(i)) >= threshold;
  return double(c) / double(p.n);
}

inline double class_accuracy(const Predictions& p, std::span<const std::int32_t> labels) {
  detail::require(labels.size() == p.n, "eval::class_accuracy", labels.size(), " labels for ", p.n,
                  " images");
  if (p.n == 0) return 0.0;
  std::size_t right = 0;
  for (std::size_t i = 0; i < p.n; ++i)
    right += labels[i] >= 0 && p.predicted(i) == std::size_t(labels[i]);
  return double(right) / double(p.n);
}

inline std::vector<double> per_class_accuracy(const Predictions& p,
                                              std::span<const std::int32_t> labels) {
  detail::require(labels.size() == p.n, "eval::per_class_accuracy", labels.size(), " labels for ",
                  p.n, " images");
  std::vector<double> right(p.num_classes, 0.0), total(p.num_classes, 0.0);
  for (std::size_t i = 0; i < p.n; ++i) {
    if (labels[i] < 0 || std::size_t(labels[i]) >= p.num_classes) continue;
    total[std::size_t(labels[i])] += 1;
    right[std::size_t(labels[i])] += p.predicted(i) == std::size_t(labels[i]);
  }
  std::vector<double> out(p.num_classes);
  for (std::size_t c = 0; c < p.num_classes; ++c)
    out[c] = total[c] > 0 ? right[c] / total[c] : std::numeric_limits<double>::quiet_NaN();
  return out;
}

inline std::vector<std::size_t> predicted_histogram(const Predictions& p) {
  std::vector<std::size_t> h(p.num_classes, 0);
  for (std::size_t i = 0; i < p.n; ++i) ++h[p.predicted(i)];
  return h;
}

inline double class_entropy(const Predictions& p) {
  if (p.n == 0 || p.num_classes < 2) return 0.0;
  double e = 0;
  for (const std::size_t c : predicted_histogram(p)) {
    if (c == 0) continue;
    const double q = double(c) / double(p.n);
    e -= q * std::log(q);
  }
  return e / std::log(double(p.num_classes));
}

inline double inception_score(const Predictions& p) {
  if (p.n == 0) return 0.0;
  const std::size_t k = p.num_classes;
  std::vector<double> marginal(k, 0.0);
  for (std::size_t i = 0; i < p.n; ++i)
    for (std::size_t j = 0; j < k; ++j) marginal[j] += double(p.probs[i * k + j]);
  for (auto& m : marginal) m /= double(p.n);
  double kl = 0;
  for (std::size_t i = 0; i < p.n; ++i)
    for (std::size_t j = 0; j < k; ++j) {
      const double q = double(p.probs[i * k + j]);
      if (q > 0) kl += q * (std::log(q) - std::log(marginal[j]));
    }
  return std::exp(kl / double(p.n));
}

inline Gaussian fit_gaussian(std::span<const float> features, std::size_t n, std::size_t dim,
                             std::span<const std::size_t> rows) {
  detail::require(n >= 1 && dim >= 1 && features.size() == n * dim, "eval::fit_gaussian",
                  features.size(), " values for ", n, " rows of ", dim);
  const std::size_t m = rows.empty() ? n : rows.size();
  auto row = [&](std::size_t r) {
    const std::size_t i = rows.empty() ? r : rows[r];
    detail::require(i < n, "eval::fit_gaussian", "row ", i, " of ", n);
    return Eigen::Map<const Eigen::VectorXf>(features.data() + i * dim, Eigen::Index(dim))
        .cast<double>();
  };
  Gaussian g;
  g.n = m;
  g.mean = Eigen::VectorXd::Zero(Eigen::Index(dim));
  for (std::size_t r = 0; r < m; ++r) g.mean += row(r);
  g.mean /= double(m);
  g.cov = Eigen::MatrixXd::Zero(Eigen::Index(dim), Eigen::Index(dim));
  if (m >= 2) {
    Eigen::MatrixXd centred(static_cast<Eigen::Index>(m), static_cast<Eigen::Index>(dim));
    for (std::size_t r = 0; r < m; ++r)
      centred.row(Eigen::Index(r)) = (row(r) - g.mean).transpose();
    g.cov = (centred.transpose() * centred) / double(m - 1);
  }
  return g;
}

inline double frechet_distance(const Gaussian& a, const Gaussian& b) {
  detail::require(a.mean.size() == b.mean.size() && a.cov.rows() == b.cov.rows() &&
                      a.cov.rows() == a.mean.size(),
                  "eval::frechet_distance", "dimensions differ: ", a.mean.size(), " and ",
                  b.mean.size());
  using Mat = Eigen::MatrixXd;
  if (a.mean.size() == 0) return 0.0;
  const Eigen::SelfAdjointEigenSolver<Mat> ea(a.cov);
  const Eigen::VectorXd la = ea.eigenvalues().cwiseMax(0.0).cwiseSqrt();
  const Mat root_a = ea.eigenvectors() * la.asDiagonal() * ea.eigenvectors().transpose();
  Mat m = root_a * b.cov * root_a;
  m = 0.5 * (m + m.transpose());
  const Eigen::SelfAdjointEigenSolver<Mat> em(m, Eigen::EigenvaluesOnly);
  const double tr_sqrt = em.eigenvalues().cwiseMax(0.0).cwiseSqrt().sum();
  const double d = (a.mean - b.mean).squaredNorm() + a.cov.trace() + b.cov.trace() - 2.0 * tr_sqrt;
  return std::max(d, 0.0);
}

inline Nearest nearest_neighbours(std::span<const float> queries, std::size_t nq,
                                  std::span<const std::uint8_t> base, std::size_t nb,
                                  std::size_t dim) {
  detail::require(queries.size() == nq * dim, "eval::nearest_neighbours", queries.size(),
                  " query values for ", nq, " images of ", dim);
  detail::require(nb >= 1 && base.size() == nb * dim, "eval::nearest_neighbours", base.size(),
                  " base values for ", nb, " images of ", dim);
  using MatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Nearest out;
  out.distance.assign(nq, std::numeric_limits<double>::infinity());
  out.index.assign(nq, 0);
  if (nq == 0) return out;
  MatF q(static_cast<Eigen::Index>(nq), static_cast<Eigen::Index>(dim));
  for (std::size_t i = 0; i < nq * dim; ++i) q.data()[i] = (queries[i] + 1.0f) * 0.5f;
  const Eigen::VectorXf qn = q.rowwise().squaredNorm();
  // Candidates by |q|^2 + |b|^2 - 2 q.b in float, blocks of the base at a time; the winner's
  // distance is then recomputed exactly in double.
  constexpr std::size_t block = 2048;
  std::vector<float> best(nq, std::numeric_limits<float>::infinity());
  MatF bm;
  for (std::size_t b0 = 0; b0 < nb; b0 += block) {
    const std::size_t m = std::min(block, nb - b0);
    bm.resize(Eigen::Index(m), Eigen::Index(dim));
    for (std::size_t i = 0; i < m * dim; ++i) bm.data()[i] = float(base[b0 * dim + i]) / 255.0f;
    const Eigen::VectorXf bn = bm.rowwise().squaredNorm();
    const MatF dots = q * bm.transpose();  // (nq, m)
    for (std::size_t i = 0; i < nq; ++i)
      for (std::size_t j = 0; j < m; ++j) {
        const float d2 = qn[Eigen::Index(i)] + bn[Eigen::Index(j)] -
                         2.0f * dots(Eigen::Index(i), Eigen::Index(j));
        if (d2 < best[i]) {
          best[i] = d2;
          out.index[i] = b0 + j;
        }
      }
  }
  for (std::size_t i = 0; i < nq; ++i) {
    double s = 0;
    const std::uint8_t* b = base.data() + out.index[i] * dim;
    for (std::size_t k = 0; k < dim; ++k) {
      const double d = (double(queries[i * dim + k]) + 1.0) * 0.5 - double(b[k]) / 255.0;
      s += d * d;
    }
    out.distance[i] = std::sqrt(s);
  }
  return out;
}

template <class V>
WithinSet within_set_nearest(std::span<const V> images, std::size_t n, std::size_t dim, double scale,
                             double alike) {
  detail::require(images.size() == n * dim && n >= 2, "eval::within_set_nearest", images.size(),
                  " values for ", n, " images of ", dim, " (need at least 2 images)");
  using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  MatD x(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(dim));
  for (std::size_t i = 0; i < n * dim; ++i) x.data()[i] = double(images[i]) * scale;
  const Eigen::VectorXd sq = x.rowwise().squaredNorm();
  WithinSet w;
  w.distance.assign(n, std::numeric_limits<double>::infinity());
  constexpr std::size_t block = 512;
  MatD dots;
  for (std::size_t r0 = 0; r0 < n; r0 += block) {
    const std::size_t m = std::min(block, n - r0);
    dots.noalias() = x.middleRows(Eigen::Index(r0), Eigen::Index(m)) * x.transpose();  // (m, n)
    for (std::size_t i = 0; i < m; ++i) {
      const std::size_t a = r0 + i;
      for (std::size_t b = 0; b < n; ++b) {
        if (b == a) continue;
        const double d = std::sqrt(std::max(
            0.0, sq[Eigen::Index(a)] + sq[Eigen::Index(b)] - 2.0 * dots(Eigen::Index(i), Eigen::Index(b))));
        w.distance[a] = std::min(w.distance[a], d);
        w.pairs_below += b > a && d < alike;
      }
    }
  }
  return w;
}

}  // namespace ddpm::eval
