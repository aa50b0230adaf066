// Tests for ddpm/layers/group_norm.hpp.
#include <doctest/doctest.h>

#include "ddpm/backend/reference.hpp"
#include "ddpm/layers/group_norm.hpp"
#include "support/gradient_check.hpp"
#include "support/random.hpp"

using namespace ddpm;
using T = double;
using B = backend::Reference;

static_assert(nn::Layer<nn::GroupNorm<float, B>>);

TEST_CASE("GroupNorm: gradients with and without the fused SiLU") {
  for (const bool silu : {false, true}) {
    CAPTURE(silu);
    nn::ParamInit init(Rng{1});
    nn::GroupNorm<T, B> gn(6, 3, B{}, init);
    test::randomize_parameters(gn, 4);
    auto x = test::random_tensor<T, B>(Shape{2, 6, 3, 4}, 31, 2.0);
    auto R = test::random_tensor<T, B>(x.shape(), 32);
    Tensor<T, B> y(x.shape());
    auto loss = [&] {
      gn.forward(x.cview(), y.view(), silu);
      return test::dot<T>(y.cview(), R.cview());
    };
    loss();
    Tensor<T, B> dx(x.shape());
    test::zero_grads(gn);
    gn.backward(x.cview(), R.cview(), dx.view(), silu, false);
    test::check_gradient("dx", x, test::to_double(dx), loss);
    loss();
    test::check_parameter_gradients(gn, loss);
    loss();
    test::check_accumulate(gn, dx, [&](View<T> d, bool acc) { gn.backward(x.cview(), R.cview(), d, silu, acc); });
  }
}

TEST_CASE("GroupNorm: default parameters normalise each group to mean 0, variance 1") {
  nn::ParamInit init;
  nn::GroupNorm<T, B> gn(4, 2, B{}, init);
  auto x = test::random_tensor<T, B>(Shape{1, 4, 3, 3}, 5, 3.0);
  Tensor<T, B> y(x.shape());
  gn.forward(x.cview(), y.view(), false);
  for (std::size_t g = 0; g < 2; ++g) {
    double s = 0, ss = 0;
    for (std::size_t i = 0; i < 18; ++i) s += y.data()[g * 18 + i];
    for (std::size_t i = 0; i < 18; ++i) ss += y.data()[g * 18 + i] * y.data()[g * 18 + i];
    CHECK(s / 18 == doctest::Approx(0.0).epsilon(1e-12));
    CHECK(ss / 18 == doctest::Approx(1.0).epsilon(1e-4));  // eps = 1e-5 inside the square root
  }
  CHECK_THROWS_AS((nn::GroupNorm<T, B>(6, 4, B{}, init)), std::invalid_argument);
}
