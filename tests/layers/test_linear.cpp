// Tests for ddpm/layers/linear.hpp and ddpm/layers/silu.hpp.
#include <doctest/doctest.h>

#include "ddpm/backend/reference.hpp"
#include "ddpm/layers/linear.hpp"
#include "ddpm/layers/silu.hpp"
#include "support/gradient_check.hpp"
#include "support/random.hpp"

using namespace ddpm;
using T = double;
using B = backend::Reference;

static_assert(nn::Layer<nn::Linear<float, B>>);
static_assert(nn::Layer<nn::Silu<float, B>>);

TEST_CASE("Linear: gradients and accumulation") {
  nn::ParamInit init(Rng{3});
  nn::Linear<T, B> fc(5, 4, B{}, init);
  auto x = test::random_tensor<T, B>(Shape{3, 5}, 41);
  auto R = test::random_tensor<T, B>(Shape{3, 4}, 42);
  Tensor<T, B> y(Shape{3, 4});
  auto loss = [&] {
    fc.forward(x.cview(), y.view());
    return test::dot<T>(y.cview(), R.cview());
  };
  Tensor<T, B> dx(x.shape());
  test::zero_grads(fc);
  fc.backward(x.cview(), R.cview(), dx.view(), false);
  test::check_gradient("dx", x, test::to_double(dx), loss);
  test::check_parameter_gradients(fc, loss);
  test::check_accumulate(fc, dx, [&](View<T> d, bool acc) { fc.backward(x.cview(), R.cview(), d, acc); });
}

TEST_CASE("Linear: y = x W^T + b on a hand example") {
  nn::ParamInit init;
  nn::Linear<T, B> fc(2, 1, B{}, init);
  fc.visit_parameters([](std::string_view n, auto& p) {
    if (n == "weight") p.value.copy_from(std::vector<T>{2.0, -1.0});
    else p.value.copy_from(std::vector<T>{0.5});
  });
  Tensor<T, B> x(Shape{1, 2}, std::vector<T>{3.0, 4.0}), y(Shape{1, 1});
  fc.forward(x.cview(), y.view());
  CHECK(y.data()[0] == doctest::Approx(2.5));
}

TEST_CASE("Silu: gradient and values") {
  nn::Silu<T, B> act;
  auto x = test::random_tensor<T, B>(Shape{2, 7}, 43, 3.0);
  auto R = test::random_tensor<T, B>(x.shape(), 44);
  Tensor<T, B> y(x.shape()), dx(x.shape());
  auto loss = [&] {
    act.forward(x.cview(), y.view());
    return test::dot<T>(y.cview(), R.cview());
  };
  loss();
  for (std::size_t i = 0; i < x.size(); ++i)
    CHECK(y.data()[i] == doctest::Approx(x.data()[i] / (1 + std::exp(-x.data()[i]))));
  act.backward(x.cview(), R.cview(), dx.view(), false);
  test::check_gradient("dx", x, test::to_double(dx), loss);
  test::check_accumulate(act, dx, [&](View<T> d, bool acc) { act.backward(x.cview(), R.cview(), d, acc); });
}
