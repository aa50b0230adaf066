// Tests for ddpm/layers/embedding.hpp: the class embedding, the time embedding, and the whole
// embedding path of the U-Net (time MLP + class embedding, then SiLU).
#include <doctest/doctest.h>

#include <cmath>

#include "ddpm/backend/reference.hpp"
#include "ddpm/layers/embedding.hpp"
#include "support/gradient_check.hpp"
#include "support/random.hpp"

using namespace ddpm;
using T = double;
using B = backend::Reference;

static_assert(nn::Layer<nn::Embedding<float, B>>);
static_assert(nn::Layer<nn::TimeEmbedding<float, B>>);

TEST_CASE("Embedding: lookup, gradient with repeated labels, label range") {
  nn::ParamInit init(Rng{4});
  nn::Embedding<T, B> emb(4, 5, B{}, init);
  const Tensor<std::int32_t, B> labels(Shape{5}, std::vector<std::int32_t>{3, 0, 3, 1, 3});
  Tensor<T, B> out(Shape{5, 5});
  emb.forward(labels.cview(), out.view());
  std::vector<T> wv;
  emb.visit_parameters([&](std::string_view, auto& p) { wv = p.value.to_vector(); });
  for (std::size_t n = 0; n < 5; ++n)
    for (std::size_t d = 0; d < 5; ++d)
      CHECK(out.data()[n * 5 + d] == wv[std::size_t(labels.data()[n]) * 5 + d]);

  auto R = test::random_tensor<T, B>(out.shape(), 61);
  auto loss = [&] {
    emb.forward(labels.cview(), out.view());
    return test::dot<T>(out.cview(), R.cview());
  };
  test::zero_grads(emb);
  emb.backward(labels.cview(), R.cview());
  test::check_parameter_gradients(emb, loss);

  const Tensor<std::int32_t, B> bad(Shape{1}, std::vector<std::int32_t>{4});
  Tensor<T, B> o1(Shape{1, 5});
  CHECK_THROWS_WITH_AS(emb.forward(bad.cview(), o1.view()), doctest::Contains("label 4"),
                       std::invalid_argument);
}

TEST_CASE("Embedding: initialised N(0, 1)") {
  nn::ParamInit init(Rng{8});
  nn::Embedding<double, B> emb(100, 50, B{}, init);
  std::vector<double> w;
  emb.visit_parameters([&](std::string_view, auto& p) { w = p.value.to_vector(); });
  double s = 0, ss = 0;
  for (double v : w) {
    s += v;
    ss += v * v;
  }
  CHECK(std::abs(s / 5000) < 0.05);
  CHECK(ss / 5000 == doctest::Approx(1.0).epsilon(0.05));
}

TEST_CASE("TimeEmbedding: sinusoidal features as the reference, parameter gradients, names") {
  nn::ParamInit init(Rng{5});
  nn::TimeEmbedding<T, B> te(8, 12, B{}, init);
  const Tensor<std::int32_t, B> t(Shape{3}, std::vector<std::int32_t>{0, 7, 999});
  Tensor<T, B> emb(Shape{3, 12});
  auto R = test::random_tensor<T, B>(emb.shape(), 62);
  auto loss = [&] {
    te.forward(t.cview(), emb.view());
    return test::dot<T>(emb.cview(), R.cview());
  };
  loss();
  test::zero_grads(te);
  te.backward(R.cview());
  test::check_parameter_gradients(te, loss);
  // parameter gradients accumulate
  const auto g1 = test::parameter_grads(te);
  loss();
  te.backward(R.cview());
  const auto g2 = test::parameter_grads(te);
  for (std::size_t k = 0; k < g1.size(); ++k) {
    std::vector<double> twice(g1[k]);
    for (double& v : twice) v *= 2;
    test::check_close("accumulated", g2[k], twice, 1e-12);
  }
  std::vector<std::string> names;
  te.visit_parameters([&](std::string_view n, auto&) { names.emplace_back(n); });
  CHECK(names == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});

  // the features: [sin(t f_i), cos(t f_i)], f_i = exp(-ln(1e4) i / (half - 1))
  Tensor<T, B> feat(Shape{3, 8});
  Ops<B>::timestep_embedding<T>(B{}, t.cview(), feat.view());
  for (std::size_t n = 0; n < 3; ++n)
    for (std::size_t i = 0; i < 4; ++i) {
      const double f = std::exp(-std::log(10000.0) * double(i) / 3.0);
      CHECK(feat.data()[n * 8 + i] == doctest::Approx(std::sin(t.data()[n] * f)).epsilon(1e-3));
      CHECK(feat.data()[n * 8 + 4 + i] == doctest::Approx(std::cos(t.data()[n] * f)).epsilon(1e-3));
    }
}

TEST_CASE("Embedding path: SiLU(time_mlp(t) + class_emb(y)) gradient check") {
  // The U-Net's conditioning: emb = time_mlp(t) + class_emb(y), and every ResBlock reads SiLU(emb).
  nn::ParamInit init(Rng{6});
  nn::TimeEmbedding<T, B> te(6, 8, B{}, init);
  nn::Embedding<T, B> ce(4, 8, B{}, init);
  const Tensor<std::int32_t, B> t(Shape{3}, std::vector<std::int32_t>{1, 500, 37});
  const Tensor<std::int32_t, B> y(Shape{3}, std::vector<std::int32_t>{3, 1, 3});
  Tensor<T, B> e(Shape{3, 8}), c(Shape{3, 8}), s(Shape{3, 8}), ds(Shape{3, 8}), de(Shape{3, 8});
  auto R = test::random_tensor<T, B>(s.shape(), 63);
  using ops = Ops<B>;
  auto loss = [&] {
    te.forward(t.cview(), e.view());
    ce.forward(y.cview(), c.view());
    ops::add<T>(B{}, e.cview(), c.cview(), e.view());
    ops::silu_forward<T>(B{}, e.cview(), s.view());
    return test::dot<T>(s.cview(), R.cview());
  };
  loss();
  test::zero_grads(te);
  test::zero_grads(ce);
  ops::silu_backward<T>(B{}, e.cview(), R.cview(), de.view(), false);
  te.backward(de.cview());
  ce.backward(y.cview(), de.cview());
  test::check_parameter_gradients(te, loss);
  test::check_parameter_gradients(ce, loss);
}
