// Tests for ddpm/layers/upsample.hpp.
#include <doctest/doctest.h>

#include "ddpm/backend/reference.hpp"
#include "ddpm/layers/upsample.hpp"
#include "support/gradient_check.hpp"
#include "support/random.hpp"

using namespace ddpm;
using T = double;
using B = backend::Reference;

static_assert(nn::Layer<nn::Upsample<float, B>>);

TEST_CASE("Upsample: nearest x2 then conv, gradients with recomputed upsampling") {
  nn::ParamInit init(Rng{9});
  nn::Upsample<T, B> up(3, B{}, init);
  auto x = test::random_tensor<T, B>(Shape{2, 3, 3, 2}, 81);
  const Shape ys = nn::Upsample<T, B>::output_shape(x.shape());
  CHECK(ys == Shape{2, 3, 6, 4});
  auto R = test::random_tensor<T, B>(ys, 82);
  Tensor<T, B> y(ys), s1(ys), s2(ys), dx(x.shape());
  auto loss = [&] {
    up.forward(x.cview(), y.view(), s1.view());
    return test::dot<T>(y.cview(), R.cview());
  };
  loss();
  // the scratch holds the nearest-neighbour copy
  CHECK(s1.data()[0] == x.data()[0]);
  CHECK(s1.data()[1] == x.data()[0]);
  CHECK(s1.data()[4] == x.data()[0]);
  CHECK(s1.data()[2] == x.data()[1]);
  test::zero_grads(up);
  up.backward(x.cview(), R.cview(), dx.view(), false, s1.view(), s2.view());
  test::check_gradient("dx", x, test::to_double(dx), loss);
  test::check_parameter_gradients(up, loss);
  test::check_accumulate(up, dx, [&](View<T> d, bool acc) {
    up.backward(x.cview(), R.cview(), d, acc, s1.view(), s2.view());
  });
  std::vector<std::string> names;
  up.visit_parameters([&](std::string_view n, auto&) { names.emplace_back(n); });
  CHECK(names == std::vector<std::string>{"conv.weight", "conv.bias"});
}
