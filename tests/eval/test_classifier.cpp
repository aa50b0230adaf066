// Tests for ddpm/eval/classifier.hpp: gradients against finite differences (double, reference
// backend), the CPU backend against the reference, the loss, shape errors.
#include <doctest/doctest.h>

#include <cmath>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/backend/reference.hpp"
#include "ddpm/eval/classifier.hpp"
#include "support/gradient_check.hpp"
#include "support/random.hpp"

using namespace ddpm;
using Ref = backend::Reference;

namespace {
eval::ClassifierConfig tiny() {
  eval::ClassifierConfig c;
  c.in_channels = 1;
  c.image_size = 8;
  c.num_classes = 3;
  c.channels = {4, 6};
  c.depth = 2;
  c.groups = 2;
  return c;
}
}  // namespace

static_assert(nn::Layer<eval::Classifier<float, Ref>>);

TEST_CASE("eval Classifier: parameter gradients match finite differences") {
  eval::Classifier<double, Ref> net(tiny(), Ref{}, 5);
  auto x = test::random_tensor<double, Ref>(Shape{2, 1, 8, 8}, 11);
  auto R = test::random_tensor<double, Ref>(Shape{2, 3}, 12);
  auto loss = [&] { return test::dot<double>(net.forward(x.cview()), R.cview()); };
  loss();
  net.visit_parameters([](std::string_view, auto& p) { p.grad.zero(); });
  net.backward(x.cview(), R.cview());
  test::check_parameter_gradients(net, loss, test::GradCheckOptions{.max_points = 12});
}

TEST_CASE("eval Classifier: layout, parameter names and feature size") {
  eval::Classifier<float, Ref> net(eval::ClassifierConfig{}, Ref{}, 0);
  CHECK(net.units.size() == 6);
  std::vector<std::string> names;
  net.visit_parameters([&](std::string_view n, auto&) { names.emplace_back(n); });
  REQUIRE(names.size() == 6 * 4 + 2);
  CHECK(names.front() == "units.0.conv.weight");
  CHECK(names[3] == "units.0.norm.bias");
  CHECK(names.back() == "head.bias");
  CHECK(net.config().feature_dim() == 64);
  auto x = test::random_tensor<float, Ref>(Shape{3, 1, 28, 28}, 1);
  const auto logits = net.forward(x.cview());
  CHECK(logits.shape() == Shape{3, 10});
  CHECK(net.features().shape() == Shape{3, 64});
}

TEST_CASE("eval Classifier: the CPU backend matches the reference") {
  backend::Cpu cpu(2);
  eval::Classifier<float, Ref> a(tiny(), Ref{}, 9);
  eval::Classifier<float, backend::Cpu> b(tiny(), cpu, 9);
  auto x = test::random_tensor<float, Ref>(Shape{5, 1, 8, 8}, 3);
  Tensor<float, backend::Cpu> xc(x.shape());
  xc.copy_from(x.to_vector());
  const auto la = test::to_double(a.forward(x.cview()));
  const auto lb = test::to_double(b.forward(xc.cview()));
  test::check_close("logits", lb, la, 1e-4);
  const auto pa = eval::predict(a, std::vector<float>(x.data(), x.data() + x.size()), 5, 2);
  const auto pb = eval::predict(b, std::vector<float>(x.data(), x.data() + x.size()), 5, 5);
  for (std::size_t i = 0; i < pa.probs.size(); ++i)
    CHECK(pa.probs[i] == doctest::Approx(pb.probs[i]).epsilon(1e-4));
  for (std::size_t i = 0; i < pa.features.size(); ++i)
    CHECK(pa.features[i] == doctest::Approx(pb.features[i]).epsilon(1e-4).scale(1e-3));
}

TEST_CASE("eval softmax_cross_entropy: value and gradient") {
  const std::vector<float> logits{1.0f, 2.0f, 0.5f, -1.0f, 0.0f, 3.0f};
  const std::vector<std::int32_t> labels{1, 2};
  std::vector<float> d(6), p(6);
  const double loss = eval::softmax_cross_entropy(logits, labels, 3, d);
  eval::softmax_rows(logits, 3, p);
  const double want = 0.5 * (-std::log(double(p[1])) - std::log(double(p[5])));
  CHECK(loss == doctest::Approx(want).epsilon(1e-6));
  for (std::size_t i = 0; i < 6; ++i) {
    const double onehot = (i == 1 || i == 5) ? 1.0 : 0.0;
    CHECK(d[i] == doctest::Approx((p[i] - onehot) / 2).epsilon(1e-5));
  }
  // Finite differences of the loss in every logit.
  for (std::size_t i = 0; i < 6; ++i) {
    std::vector<float> lp = logits, lm = logits, scratch(6);
    lp[i] += 1e-2f;
    lm[i] -= 1e-2f;
    const double num = (eval::softmax_cross_entropy(lp, labels, 3, scratch) -
                        eval::softmax_cross_entropy(lm, labels, 3, scratch)) /
                       2e-2;
    CHECK(d[i] == doctest::Approx(num).epsilon(1e-3).scale(1e-3));
  }
  // Label smoothing: the target spreads eps / k over every class.
  std::vector<float> ds(6);
  (void)eval::softmax_cross_entropy(logits, labels, 3, ds, 0.3);
  CHECK(ds[0] == doctest::Approx((p[0] - 0.1) / 2).epsilon(1e-5));
  CHECK(ds[1] == doctest::Approx((p[1] - 0.8) / 2).epsilon(1e-5));
  CHECK_THROWS_AS((void)eval::softmax_cross_entropy(logits, std::vector<std::int32_t>{1, 3}, 3, d),
                  std::invalid_argument);
}

TEST_CASE("eval Classifier: bad configurations and inputs name the problem") {
  auto cfg = tiny();
  cfg.channels = {4, 5};
  auto make = [&] { eval::Classifier<float, Ref> net(cfg); };
  CHECK_THROWS_WITH_AS(make(), doctest::Contains("multiple of groups"), std::invalid_argument);
  cfg = tiny();
  cfg.num_classes = 1;
  CHECK_THROWS_WITH_AS(make(), doctest::Contains("num_classes"), std::invalid_argument);
  eval::Classifier<float, Ref> net(tiny());
  auto x = test::random_tensor<float, Ref>(Shape{2, 1, 9, 9}, 1);
  CHECK_THROWS_WITH_AS(net.forward(x.cview()), doctest::Contains("expected images (N, 1, 8, 8)"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)eval::predict(net, std::vector<float>(10), 2),
                       doctest::Contains("10 values for 2 images of 1x8x8"), std::invalid_argument);
}
