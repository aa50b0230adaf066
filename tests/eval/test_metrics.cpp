// Tests for ddpm/eval/metrics.hpp: closed-form cases of every figure, the Fréchet distance
// against the eigenvalues of the non-symmetric product, nearest neighbours (to a base, and within
// one set) against brute force.
#include <doctest/doctest.h>

#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "ddpm/core/rng.hpp"
#include "ddpm/eval/metrics.hpp"

using namespace ddpm;

namespace {
/// Predictions with given probability rows (k classes).
eval::Predictions preds(const std::vector<std::vector<float>>& rows) {
  eval::Predictions p;
  p.n = rows.size();
  p.num_classes = rows.empty() ? 0 : rows[0].size();
  p.feature_dim = 1;
  for (const auto& r : rows) p.probs.insert(p.probs.end(), r.begin(), r.end());
  p.features.assign(p.n, 0.0f);
  return p;
}
eval::Gaussian gaussian(const Eigen::VectorXd& m, const Eigen::MatrixXd& c) {
  eval::Gaussian g;
  g.n = 100;
  g.mean = m;
  g.cov = c;
  return g;
}
Eigen::MatrixXd random_spd(int d, std::uint64_t seed, int rank) {
  Eigen::MatrixXd a(d, rank);
  const Rng rng{seed};
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < rank; ++j)
      a(i, j) = rng.normal(rng_stream::user, std::uint64_t(i * rank + j));
  return a * a.transpose() / double(rank);
}
}  // namespace

TEST_CASE("eval metrics: confident fraction, accuracy, histogram, entropy") {
  const auto p =
      preds({{0.95f, 0.05f, 0.0f}, {0.5f, 0.4f, 0.1f}, {0.0f, 0.0f, 1.0f}, {0.1f, 0.85f, 0.05f}});
  CHECK(eval::confident_fraction(p) == doctest::Approx(0.5));
  CHECK(eval::confident_fraction(p, 0.8) == doctest::Approx(0.75));
  const std::vector<std::int32_t> labels{0, 1, 2, 1};
  CHECK(eval::class_accuracy(p, labels) == doctest::Approx(0.75));
  const auto per = eval::per_class_accuracy(p, labels);
  CHECK(per[0] == doctest::Approx(1.0));
  CHECK(per[1] == doctest::Approx(0.5));
  CHECK(per[2] == doctest::Approx(1.0));
  CHECK(eval::predicted_histogram(p) == std::vector<std::size_t>{2, 1, 1});
  // Entropy of (1/2, 1/4, 1/4) over log 3.
  const double h = -(0.5 * std::log(0.5) + 2 * 0.25 * std::log(0.25)) / std::log(3.0);
  CHECK(eval::class_entropy(p) == doctest::Approx(h));
  CHECK(eval::class_entropy(preds({{1, 0, 0}, {1, 0, 0}})) == doctest::Approx(0.0));
  CHECK(eval::class_entropy(preds({{1, 0, 0}, {0, 1, 0}, {0, 0, 1}})) == doctest::Approx(1.0));
  CHECK_THROWS_AS((void)eval::class_accuracy(p, std::vector<std::int32_t>{0}),
                  std::invalid_argument);
}

TEST_CASE("eval metrics: the IS-like figure spans 1 (one class or no confidence) to k") {
  CHECK(eval::inception_score(preds({{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}})) ==
        doctest::Approx(4.0));
  CHECK(eval::inception_score(preds({{0, 1, 0, 0}, {0, 1, 0, 0}})) == doctest::Approx(1.0));
  CHECK(eval::inception_score(preds(
            {{0.25f, 0.25f, 0.25f, 0.25f}, {0.25f, 0.25f, 0.25f, 0.25f}})) == doctest::Approx(1.0));
  // Two classes, each image 90% sure: exp(KL((0.9, 0.1) || (0.5, 0.5))).
  const double kl = 0.9 * std::log(0.9 / 0.5) + 0.1 * std::log(0.1 / 0.5);
  CHECK(eval::inception_score(preds({{0.9f, 0.1f}, {0.1f, 0.9f}})) ==
        doctest::Approx(std::exp(kl)).epsilon(1e-6));
}

TEST_CASE("eval metrics: Gaussian fit is numpy's mean and cov") {
  // Rows (1, 2), (3, 6), (5, 4): mean (3, 4), cov [[4, 2], [2, 4]].
  const std::vector<float> f{1, 2, 3, 6, 5, 4};
  const auto g = eval::fit_gaussian(f, 3, 2);
  CHECK(g.mean(0) == doctest::Approx(3.0));
  CHECK(g.mean(1) == doctest::Approx(4.0));
  CHECK(g.cov(0, 0) == doctest::Approx(4.0));
  CHECK(g.cov(0, 1) == doctest::Approx(2.0));
  CHECK(g.cov(1, 1) == doctest::Approx(4.0));
  const std::vector<std::size_t> rows{0, 2};
  const auto h = eval::fit_gaussian(f, 3, 2, rows);
  CHECK(h.n == 2);
  CHECK(h.mean(0) == doctest::Approx(3.0));
  CHECK(h.cov(0, 0) == doctest::Approx(8.0));
  const auto one = eval::fit_gaussian(f, 3, 2, std::vector<std::size_t>{1});
  CHECK(one.cov.norm() == 0.0);
}

TEST_CASE("eval metrics: Frechet distance closed forms") {
  using V = Eigen::VectorXd;
  using M = Eigen::MatrixXd;
  // 1-d: (m1 - m2)^2 + (s1 - s2)^2.
  V m1(1), m2(1);
  m1 << 1.0;
  m2 << 4.0;
  M c1(1, 1), c2(1, 1);
  c1 << 4.0;
  c2 << 9.0;
  CHECK(eval::frechet_distance(gaussian(m1, c1), gaussian(m2, c2)) == doctest::Approx(9.0 + 1.0));
  // Diagonal: the sum over dimensions.
  V a = V::Zero(3), b = V::Ones(3);
  M da = V(V::Constant(3, 1.0)).asDiagonal(), db(3, 3);
  db.setZero();
  db.diagonal() << 4.0, 9.0, 16.0;
  CHECK(eval::frechet_distance(gaussian(a, da), gaussian(b, db)) ==
        doctest::Approx(3.0 + 1 + 4 + 9));
  // Identical Gaussians, including singular ones: 0.
  const M s = random_spd(6, 1, 3);
  CHECK(eval::frechet_distance(gaussian(a.head(0), M(0, 0)), gaussian(a.head(0), M(0, 0))) == 0.0);
  CHECK(eval::frechet_distance(gaussian(V::Zero(6), s), gaussian(V::Zero(6), s)) ==
        doctest::Approx(0.0).scale(1.0).epsilon(1e-9));
  // Symmetric in its arguments.
  const M t = random_spd(6, 2, 10);
  const V mu = V::LinSpaced(6, -1, 1);
  const double ab = eval::frechet_distance(gaussian(mu, s), gaussian(V::Zero(6), t));
  const double ba = eval::frechet_distance(gaussian(V::Zero(6), t), gaussian(mu, s));
  CHECK(ab ==
        doctest::Approx(ba).epsilon(1e-6));  // sqrt of rounding-level eigenvalues of the singular s
}

TEST_CASE("eval metrics: Frechet trace term equals sum sqrt eig(S1 S2), full rank and singular") {
  for (int rank : {12, 5}) {
    const Eigen::MatrixXd s1 = random_spd(8, 10 + std::uint64_t(rank), rank);
    const Eigen::MatrixXd s2 = random_spd(8, 20 + std::uint64_t(rank), 12);
    const Eigen::VectorXd m1 = Eigen::VectorXd::Zero(8), m2 = Eigen::VectorXd::Constant(8, 0.5);
    // Oracle: the eigenvalues of the non-symmetric product are real and >= 0.
    const Eigen::EigenSolver<Eigen::MatrixXd> es(s1 * s2, false);
    double tr = 0;
    for (int i = 0; i < 8; ++i) tr += std::sqrt(std::max(0.0, es.eigenvalues()(i).real()));
    const double want = (m1 - m2).squaredNorm() + s1.trace() + s2.trace() - 2 * tr;
    INFO("rank ", rank);
    CHECK(eval::frechet_distance(gaussian(m1, s1), gaussian(m2, s2)) ==
          doctest::Approx(want).epsilon(1e-8));
  }
  CHECK_THROWS_AS(
      (void)eval::frechet_distance(gaussian(Eigen::VectorXd::Zero(2), Eigen::MatrixXd::Zero(2, 2)),
                                   gaussian(Eigen::VectorXd::Zero(3), Eigen::MatrixXd::Zero(3, 3))),
      std::invalid_argument);
}

TEST_CASE("eval metrics: nearest neighbours find exact copies and match brute force") {
  const std::size_t dim = 20, nb = 3000, nq = 7;
  std::vector<std::uint8_t> base(nb * dim);
  const Rng rng{4};
  for (std::size_t i = 0; i < base.size(); ++i)
    base[i] = std::uint8_t(rng.below(256, rng_stream::user, i));
  std::vector<float> q(nq * dim);
  for (std::size_t i = 0; i < q.size(); ++i)
    q[i] = float(2 * rng.uniform(rng_stream::user + 1, i) - 1);
  for (std::size_t k = 0; k < dim; ++k)
    q[3 * dim + k] = float(base[2500 * dim + k]) / 127.5f - 1.0f;  // a copy
  const auto nn = eval::nearest_neighbours(q, nq, base, nb, dim);
  CHECK(nn.index[3] == 2500);
  CHECK(nn.distance[3] == doctest::Approx(0.0).scale(1.0).epsilon(1e-6));
  for (std::size_t i = 0; i < nq; ++i) {
    double best = 1e300;
    for (std::size_t j = 0; j < nb; ++j) {
      double s = 0;
      for (std::size_t k = 0; k < dim; ++k) {
        const double d = (q[i * dim + k] + 1.0) / 2 - base[j * dim + k] / 255.0;
        s += d * d;
      }
      best = std::min(best, std::sqrt(s));
    }
    CHECK(nn.distance[i] == doctest::Approx(best).epsilon(1e-6));
  }
  CHECK_THROWS_AS((void)eval::nearest_neighbours(q, nq, base, nb, dim + 1), std::invalid_argument);
}

TEST_CASE("eval metrics: within-set nearest neighbours match brute force across row blocks") {
  // 600 images (more than one block of 512 rows), three exact duplicates and one near pair; bytes
  // scaled as the RGB score scales real images.
  const std::size_t n = 600, dim = 48;
  const Rng rng{21};
  std::vector<std::uint8_t> img(n * dim);
  for (std::size_t k = 0; k < img.size(); ++k) img[k] = std::uint8_t(rng.uniform(0, k) * 255.0);
  auto row = [&](std::size_t i) { return img.begin() + std::ptrdiff_t(i * dim); };
  std::copy_n(row(3), dim, row(520));   // duplicates across the block boundary
  std::copy_n(row(10), dim, row(11));
  std::copy_n(row(10), dim, row(599));
  std::copy_n(row(40), dim, row(41));   // near pair: one value 1 grey level off
  img[41 * dim] = std::uint8_t(img[40 * dim] ^ 1);
  const double scale = 1.0 / (255.0 * std::sqrt(double(dim))), alike = 0.01;
  const auto w = eval::within_set_nearest(std::span<const std::uint8_t>(img), n, dim, scale, alike);
  std::size_t pairs = 0;
  for (std::size_t a = 0; a < n; ++a) {
    double best = 1e300;
    for (std::size_t b = 0; b < n; ++b) {
      if (a == b) continue;
      double s = 0;
      for (std::size_t k = 0; k < dim; ++k) {
        const double d = (double(img[a * dim + k]) - double(img[b * dim + k])) * scale;
        s += d * d;
      }
      best = std::min(best, std::sqrt(s));
      pairs += b > a && std::sqrt(s) < alike;
    }
    CHECK(std::abs(w.distance[a] - best) < 1e-6);  // distances are about 0.4, duplicates 0
  }
  CHECK(pairs == 5);  // (3, 520), (10, 11), (10, 599), (11, 599), (40, 41)
  CHECK(w.pairs_below == pairs);
  CHECK(w.distance[520] < 1e-6);
  CHECK_THROWS_AS((void)eval::within_set_nearest(std::span<const std::uint8_t>(img.data(), dim), 1, dim, scale, alike),
                  std::invalid_argument);
}
