// Tests for ddpm/eval/train.hpp: a small, quick training run learns, is reproducible, and the
// augmentation and data checks behave.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/eval/classifier.hpp"
#include "ddpm/eval/train.hpp"
#include "eval_test_util.hpp"

using namespace ddpm;
using Cpu = backend::Cpu;

namespace {
eval::ClassifierConfig small() {
  eval::ClassifierConfig c;
  c.channels = {8, 16, 32};
  c.depth = 2;
  c.groups = 4;
  return c;
}
}  // namespace

TEST_CASE("eval train_classifier: a small net learns digits in seconds") {
  const auto train =
      eval::test::slice(io::load_mnist_dir(eval::test::mnist_dir(), "train"), 0, 2000);
  const auto test = eval::test::slice(io::load_mnist_dir(eval::test::mnist_dir(), "t10k"), 0, 300);
  eval::ClassifierTrainConfig cfg;
  cfg.epochs = 3;
  cfg.progress = false;
  cfg.warmup_steps = 10;
  eval::Classifier<float, Cpu> net(small(), Cpu(2), 1);
  const auto rep = eval::train_classifier(net, train, &test, cfg);
  REQUIRE(rep.epochs.size() == 3);
  CHECK(rep.steps == 3 * (2000 / 64));
  CHECK(rep.epochs[2].train_loss < rep.epochs[0].train_loss);
  MESSAGE("small net, 2,000 digits, 3 epochs: test accuracy ", rep.test_accuracy);
  CHECK(rep.test_accuracy > 0.3);  // chance is 0.1 (93 steps of a 18,594-parameter net)
}

TEST_CASE("eval train_classifier: same seed and data, same weights") {
  const auto train =
      eval::test::slice(io::load_mnist_dir(eval::test::mnist_dir(), "train"), 0, 640);
  eval::ClassifierTrainConfig cfg;
  cfg.epochs = 1;
  cfg.progress = false;
  std::vector<std::vector<float>> weights(2);
  std::vector<double> loss(2);
  for (int run = 0; run < 2; ++run) {
    eval::Classifier<float, Cpu> net(small(), Cpu(run + 1), 1);  // 1 and 2 threads
    loss[std::size_t(run)] = eval::train_classifier(net, train, nullptr, cfg).epochs[0].train_loss;
    net.visit_parameters([&](std::string_view, auto& p) {
      const auto v = p.value.to_vector();
      weights[std::size_t(run)].insert(weights[std::size_t(run)].end(), v.begin(), v.end());
    });
  }
  CHECK(loss[0] == loss[1]);
  CHECK(weights[0] == weights[1]);
}

TEST_CASE("eval augment_image: identity without draws, background from outside, flips") {
  std::vector<std::uint8_t> img(28 * 28, 0);
  img[5 * 28 + 7] = 255;
  std::vector<float> out(28 * 28);
  const Rng rng{1};
  eval::augment_image(img.data(), 1, 28, 28, eval::Augment{0, 0, 0, false}, rng, 0, 0, out.data());
  for (std::size_t i = 0; i < out.size(); ++i)
    CHECK(out[i] == doctest::Approx(float(img[i]) / 127.5f - 1.0f));
  // A flip with probability 1/2: find a draw that flips and check the mirror.
  for (std::uint64_t k = 0; k < 16; ++k) {
    if (rng.uniform(0, k * 8 + 4) >= 0.5) continue;
    eval::augment_image(img.data(), 1, 28, 28, eval::Augment{0, 0, 0, true}, rng, 0, k * 8,
                        out.data());
    CHECK(out[5 * 28 + 20] == doctest::Approx(1.0f));
    CHECK(out[5 * 28 + 7] == doctest::Approx(-1.0f));
    break;
  }
  // Shifts keep pixel mass roughly (bilinear) and never leave [-1, 1].
  eval::augment_image(img.data(), 1, 28, 28, eval::Augment{}, rng, 3, 0, out.data());
  double mass = 0;
  for (float v : out) {
    CHECK(v >= -1.0f);
    CHECK(v <= 1.0f);
    mass += (v + 1.0) / 2;
  }
  CHECK(mass > 0.5);
  CHECK(mass < 1.5);
}

TEST_CASE("eval train_classifier: data that does not fit is refused with the reason") {
  eval::Classifier<float, Cpu> net(small(), Cpu(1));
  io::ImageDataset d;
  d.n = 2;
  d.c = 1;
  d.h = d.w = 14;
  d.pixels.assign(2 * 196, 0);
  d.labels = {0, 1};
  eval::ClassifierTrainConfig cfg;
  CHECK_THROWS_WITH_AS(
      eval::train_classifier(net, d, nullptr, cfg),
      doctest::Contains("images are 1x14x14 (CxHxW) but the classifier takes 1x28x28"),
      std::invalid_argument);
  d.h = d.w = 28;
  d.pixels.assign(2 * 784, 0);
  d.labels = {0, 10};
  CHECK_THROWS_WITH_AS(eval::train_classifier(net, d, nullptr, cfg),
                       doctest::Contains("label 10 of image 1 is outside [0, 10)"),
                       std::invalid_argument);
  d.labels.clear();
  CHECK_THROWS_WITH_AS(eval::train_classifier(net, d, nullptr, cfg),
                       doctest::Contains("needs one label per image"), std::invalid_argument);
  cfg.epochs = 0;
  d.labels = {0, 1};
  CHECK_THROWS_WITH_AS(eval::train_classifier(net, d, nullptr, cfg), doctest::Contains("epochs"),
                       std::invalid_argument);
}
