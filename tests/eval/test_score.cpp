// The numbers mean something: the committed classifier (data/classifiers/) scoring real held-out
// digits, degraded digits (noise, blur), a repeated digit, copies of training digits and shuffled
// labels. Reference = the first 500 held-out digits of data/mnist10k; "real" samples = others.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/eval/all.hpp"
#include "eval_test_util.hpp"

using namespace ddpm;
using Cpu = backend::Cpu;

namespace {

struct Fixture {
  io::ImageDataset train, test;
  std::unique_ptr<eval::LoadedClassifier<float, Cpu>> clf;
  std::unique_ptr<eval::Evaluator<float, Cpu>> ev;
  io::ImageDataset reference, real;  // t10k[0, 500), t10k[500, 1000)
};

Fixture& fixture() {
  static Fixture f = [] {
    Fixture x;
    x.train = io::load_mnist_dir(eval::test::mnist_dir(), "train");
    x.test = io::load_mnist_dir(eval::test::mnist_dir(), "t10k");
    x.clf = std::make_unique<eval::LoadedClassifier<float, Cpu>>(
        eval::load_classifier<float, Cpu>(eval::test::committed_classifier(), Cpu(2)));
    x.reference = eval::test::slice(x.test, 0, 500);
    x.real = eval::test::slice(x.test, 500, 500);
    x.ev = std::make_unique<eval::Evaluator<float, Cpu>>(x.clf->net, x.reference, &x.train);
    return x;
  }();
  return f;
}

std::vector<float> pm1(const io::ImageDataset& d) { return io::to_float_pm1(d.pixels); }

/// Adds N(0, sigma^2) noise (on the [-1, 1] scale) and clips.
std::vector<float> noisy(std::vector<float> x, double sigma, std::uint64_t seed) {
  const Rng rng{seed};
  for (std::size_t i = 0; i < x.size(); ++i)
    x[i] = float(std::clamp(x[i] + sigma * rng.normal(rng_stream::user, i), -1.0, 1.0));
  return x;
}

/// Gaussian blur of std `sigma` pixels (kernel truncated at 3 sigma, zero = black outside).
std::vector<float> blurred(const std::vector<float>& x, double sigma) {
  const int r = int(std::ceil(3 * sigma));
  std::vector<double> k(std::size_t(2 * r + 1));
  double s = 0;
  for (int i = -r; i <= r; ++i)
    s += k[std::size_t(i + r)] = std::exp(-0.5 * i * i / (sigma * sigma));
  for (auto& v : k) v /= s;
  std::vector<float> out(x.size());
  std::vector<double> tmp(784);
  for (std::size_t n = 0; n < x.size() / 784; ++n) {
    const float* src = x.data() + n * 784;
    for (int y = 0; y < 28; ++y)
      for (int c = 0; c < 28; ++c) {
        double a = 0;
        for (int i = -r; i <= r; ++i)
          if (c + i >= 0 && c + i < 28)
            a += k[std::size_t(i + r)] * (src[y * 28 + c + i] + 1.0) / 2;
        tmp[std::size_t(y * 28 + c)] = a;
      }
    for (int y = 0; y < 28; ++y)
      for (int c = 0; c < 28; ++c) {
        double a = 0;
        for (int i = -r; i <= r; ++i)
          if (y + i >= 0 && y + i < 28)
            a += k[std::size_t(i + r)] * tmp[std::size_t((y + i) * 28 + c)];
        out[n * 784 + std::size_t(y * 28 + c)] = float(2 * a - 1);
      }
  }
  return out;
}

void print(const char* what, const eval::EvalReport& r) {
  std::printf("  %-22s %s\n", what, r.summary().c_str());
}

}  // namespace

TEST_CASE("eval committed classifier: provenance and held-out accuracy") {
  auto& f = fixture();
  const auto& m = f.clf->metadata;
  CHECK(m.at("data.name") == "mnist10k");
  CHECK(m.at("data.train_images") == "9000");
  CHECK(m.at("data.train_sha256") == eval::dataset_sha256(f.train));
  CHECK(m.at("data.test_sha256") == eval::dataset_sha256(f.test));
  const double acc = eval::accuracy(f.clf->net, f.test);
  std::printf("  committed classifier: test accuracy %.4f (metadata %s)\n", acc,
              m.at("test_accuracy").c_str());
  CHECK(acc >= 0.985);
  CHECK(std::stod(m.at("test_accuracy")) == doctest::Approx(acc));
}

TEST_CASE("eval score: real held-out digits score near the top") {
  auto& f = fixture();
  // 250 = half the reference, so the real baseline is measured at the same n.
  const auto real = eval::test::slice(f.real, 0, 250);
  const auto x = pm1(real);
  const auto r = f.ev->score(x, real.n, real.labels);
  print("real held-out (250)", r);
  CHECK(r.fd_real_n == 250);
  CHECK(r.accuracy >= 0.97);
  CHECK(r.confident_fraction >= 0.9);
  CHECK(r.class_entropy >= 0.97);
  CHECK(r.inception_score >= 8.0);
  CHECK(r.inception_score <= 10.0);
  // Real images sit at the real baseline of the same n (both compare 500 held-out digits with
  // other held-out digits).
  CHECK(r.fd <= 2.0 * r.fd_real_mean + 0.5);
  // No held-out digit is a copy of a training digit; the distances are those of real digits.
  CHECK(r.nn_below == 0);
  CHECK(r.nn_min > r.nn_threshold);
  CHECK(r.real.nn_n == 300);
  CHECK(r.nn_mean == doctest::Approx(r.real.nn_mean).epsilon(0.1));
}

TEST_CASE("eval score: noise and blur score clearly worse, in order") {
  auto& f = fixture();
  const auto real = eval::test::slice(f.real, 0, 200);
  const auto x = pm1(real);
  const auto base = f.ev->score(x, real.n, real.labels);
  print("real (200)", base);
  double prev_fd = base.fd, prev_is = base.inception_score, prev_acc = base.accuracy;
  bool first = true;
  for (const double sigma : {0.5, 1.0, 2.0}) {
    const auto r = f.ev->score(noisy(x, sigma, 7), real.n, real.labels);
    char name[64];
    std::snprintf(name, sizeof name, "noise sigma %.1f", sigma);
    print(name, r);
    INFO(name);
    CHECK(r.fd > 1.5 * prev_fd);
    CHECK(r.inception_score < prev_is);
    CHECK(r.accuracy <= prev_acc);
    if (first) CHECK(r.fd > 3 * base.fd_real_mean);  // even the mildest level: clearly worse
    first = false;
    prev_fd = r.fd;
    prev_is = r.inception_score;
    prev_acc = r.accuracy;
  }
  CHECK(prev_acc < 0.5);
  prev_fd = base.fd;
  prev_is = base.inception_score;
  first = true;
  for (const double sigma : {1.0, 1.5, 2.5}) {
    const auto r = f.ev->score(blurred(x, sigma), real.n, real.labels);
    char name[64];
    std::snprintf(name, sizeof name, "blur sigma %.1f px", sigma);
    print(name, r);
    INFO(name);
    CHECK(r.fd > 1.5 * prev_fd);
    CHECK(r.inception_score < prev_is);
    if (first) CHECK(r.fd > 2 * base.fd_real_mean);
    first = false;
    prev_fd = r.fd;
    prev_is = r.inception_score;
  }
}

TEST_CASE("eval score: ink measures stroke weight; thicker strokes show as more ink") {
  auto& f = fixture();
  const auto real = eval::test::slice(f.real, 0, 200);
  const auto x = pm1(real);
  const auto base = f.ev->score(x, real.n, real.labels);
  // real digits sit at the real figures (both are held-out MNIST digits)
  CHECK(base.ink_mean == doctest::Approx(base.real.ink_mean).epsilon(0.1));
  CHECK(base.ink_area == doctest::Approx(base.real.ink_area).epsilon(0.15));
  CHECK(base.ink_mean > 0.05);
  CHECK(base.ink_mean < 0.3);
  // dilate every stroke by one pixel (3x3 max): bolder digits, more ink
  std::vector<float> bold(x.size());
  for (std::size_t n = 0; n < real.n; ++n)
    for (int y = 0; y < 28; ++y)
      for (int c = 0; c < 28; ++c) {
        float m = -1.0f;
        for (int dy = -1; dy <= 1; ++dy)
          for (int dc = -1; dc <= 1; ++dc)
            if (y + dy >= 0 && y + dy < 28 && c + dc >= 0 && c + dc < 28)
              m = std::max(m, x[n * 784 + std::size_t((y + dy) * 28 + c + dc)]);
        bold[n * 784 + std::size_t(y * 28 + c)] = m;
      }
  const auto r = f.ev->score(bold, real.n, real.labels);
  print("strokes dilated 1 px", r);
  CHECK(r.ink_mean > 1.5 * base.ink_mean);
  CHECK(r.ink_area > 1.5 * base.ink_area);
  CHECK(r.summary().find(" ink ") != std::string::npos);
  CHECK(r.to_json().at("real_held_out").contains("ink_mean"));
}

TEST_CASE("eval score: one repeated image gets a large Frechet distance and no diversity") {
  auto& f = fixture();
  std::vector<float> one = pm1(eval::test::slice(f.real, 3, 1));
  std::vector<float> x;
  for (int i = 0; i < 200; ++i) x.insert(x.end(), one.begin(), one.end());
  const auto r = f.ev->score(x, 200);
  print("one digit x 200", r);
  CHECK(r.fd > 10 * r.fd_real_mean);
  CHECK(r.class_entropy == doctest::Approx(0.0));
  CHECK(r.inception_score < 1.05);
  CHECK(std::isnan(r.accuracy));
}

TEST_CASE("eval score: shuffled labels give chance-level accuracy") {
  auto& f = fixture();
  std::vector<std::int32_t> labels = f.real.labels;
  const Rng rng{3};
  for (std::size_t i = labels.size(); i > 1; --i)
    std::swap(labels[i - 1], labels[std::size_t(rng.below(i, rng_stream::user, i))]);
  const auto r = f.ev->score(pm1(f.real), f.real.n, labels);
  print("shuffled labels", r);
  CHECK(r.accuracy > 0.03);
  CHECK(r.accuracy < 0.2);
  // Everything that does not look at the labels is unchanged.
  const auto s = f.ev->score(pm1(f.real), f.real.n);
  CHECK(r.fd == s.fd);
  CHECK(r.inception_score == s.inception_score);
}

TEST_CASE("eval score: copies of training digits are flagged by the nearest-neighbour check") {
  auto& f = fixture();
  auto copies = pm1(eval::test::slice(f.train, 1000, 50));
  const auto r = f.ev->score(copies, 50);
  print("50 training digits", r);
  CHECK(r.nn_below == 50);
  CHECK(r.nn_min < 1e-4);
  for (std::size_t i = 0; i < 50; ++i) CHECK(r.nn_index[i] == 1000 + i);
}
