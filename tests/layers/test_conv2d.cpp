// Tests for ddpm/layers/conv2d.hpp and ddpm/layers/downsample.hpp.
#include <doctest/doctest.h>

#include "ddpm/backend/reference.hpp"
#include "ddpm/layers/conv2d.hpp"
#include "ddpm/layers/downsample.hpp"
#include "support/gradient_check.hpp"
#include "support/random.hpp"

using namespace ddpm;
using T = double;
using B = backend::Reference;

static_assert(nn::Layer<nn::Conv2d<float, B>>);
static_assert(nn::Layer<nn::Downsample<double, B>>);

TEST_CASE("Conv2d: input and parameter gradients, several geometries") {
  for (const ConvGeometry g : {ConvGeometry{3, 1, 1}, ConvGeometry{3, 2, 1}, ConvGeometry{1, 1, 0}}) {
    CAPTURE(g.kernel);
    CAPTURE(g.stride);
    nn::ParamInit init(Rng{1});
    nn::Conv2d<T, B> conv(3, 4, g, B{}, init);
    auto x = test::random_tensor<T, B>(Shape{2, 3, 5, 6}, 11);
    const Shape ys = conv.output_shape(x.shape());
    auto R = test::random_tensor<T, B>(ys, 12);
    Tensor<T, B> y(ys);
    auto loss = [&] {
      conv.forward(x.cview(), y.view());
      return test::dot<T>(y.cview(), R.cview());
    };
    Tensor<T, B> dx(x.shape());
    test::zero_grads(conv);
    conv.backward(x.cview(), R.cview(), dx.view(), false);
    test::check_gradient("dx", x, test::to_double(dx), loss);
    test::check_parameter_gradients(conv, loss);
    test::check_accumulate(conv, dx, [&](View<T> d, bool acc) { conv.backward(x.cview(), R.cview(), d, acc); });
  }
}

TEST_CASE("Conv2d: initialisation is PyTorch's default or zero, deterministic in the seed") {
  nn::ParamInit a(Rng{5}), b(Rng{5}), c(Rng{6});
  nn::Conv2d<float, B> ca(4, 8, ConvGeometry{3, 1, 1}, B{}, a);
  nn::Conv2d<float, B> cb(4, 8, ConvGeometry{3, 1, 1}, B{}, b);
  nn::Conv2d<float, B> cc(4, 8, ConvGeometry{3, 1, 1}, B{}, c);
  nn::Conv2d<float, B> z(4, 8, ConvGeometry{3, 1, 1}, B{}, a, /*zero_init=*/true);
  CHECK(a.count() == 4);
  const auto wa = ca.weight().value.to_vector(), wb = cb.weight().value.to_vector();
  CHECK(wa == wb);
  CHECK(wa != cc.weight().value.to_vector());
  const float bound = 1.0f / 6.0f;  // 1 / sqrt(4 * 3 * 3)
  float mx = 0;
  for (float v : wa) mx = std::max(mx, std::abs(v));
  CHECK(mx <= bound);
  CHECK(mx > 0.9f * bound);
  for (float v : ca.bias().value.to_vector()) CHECK(std::abs(v) <= bound);
  for (float v : z.weight().value.to_vector()) CHECK(v == 0.0f);
  for (float v : z.bias().value.to_vector()) CHECK(v == 0.0f);
  for (float v : ca.weight().grad.to_vector()) CHECK(v == 0.0f);
}

TEST_CASE("Conv2d: shape errors name the layer") {
  nn::ParamInit init;
  nn::Conv2d<float, B> conv(3, 4, ConvGeometry{3, 1, 1}, B{}, init);
  Tensor<float, B> x(Shape{1, 2, 4, 4}), y(Shape{1, 4, 4, 4});
  CHECK_THROWS_WITH_AS(conv.forward(x.cview(), y.view()), doctest::Contains("Conv2d::forward"),
                       std::invalid_argument);
}

TEST_CASE("Downsample: stride-2 3x3 convolution, gradients, names") {
  nn::ParamInit init(Rng{2});
  nn::Downsample<T, B> down(3, B{}, init);
  test::randomize_parameters(down, 3);
  auto x = test::random_tensor<T, B>(Shape{2, 3, 6, 6}, 21);
  const Shape ys = down.output_shape(x.shape());
  CHECK(ys == Shape{2, 3, 3, 3});
  auto R = test::random_tensor<T, B>(ys, 22);
  Tensor<T, B> y(ys);
  auto loss = [&] {
    down.forward(x.cview(), y.view());
    return test::dot<T>(y.cview(), R.cview());
  };
  Tensor<T, B> dx(x.shape());
  test::zero_grads(down);
  down.backward(x.cview(), R.cview(), dx.view(), false);
  test::check_gradient("dx", x, test::to_double(dx), loss);
  test::check_parameter_gradients(down, loss);
  std::vector<std::string> names;
  down.visit_parameters([&](std::string_view n, auto&) { names.emplace_back(n); });
  CHECK(names == std::vector<std::string>{"conv.weight", "conv.bias"});
}
