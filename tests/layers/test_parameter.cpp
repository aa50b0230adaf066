// Tests for ddpm/layers/parameter.hpp and ddpm/layers/init.hpp.
#include <doctest/doctest.h>

#include <cmath>

#include "ddpm/backend/reference.hpp"
#include "ddpm/layers/init.hpp"
#include "ddpm/layers/linear.hpp"
#include "ddpm/layers/parameter.hpp"

using namespace ddpm;
using B = backend::Reference;

TEST_CASE("Parameter: value and gradient of one shape, both zero") {
  nn::Parameter<float, B> p(Shape{3, 2});
  CHECK(p.size() == 6);
  CHECK(p.shape() == Shape{3, 2});
  CHECK(p.grad.shape() == p.value.shape());
  for (float v : p.value.to_vector()) CHECK(v == 0.0f);
  for (float v : p.grad.to_vector()) CHECK(v == 0.0f);
}

TEST_CASE("ParamInit: parameter k uses Philox stream (init, k); constant ones consume a number") {
  const Rng rng{42};
  nn::ParamInit init(rng);
  nn::Parameter<double, B> a(Shape{4}), b(Shape{3}), c(Shape{5});
  init.constant(a, 1.0);
  init.uniform(b, 0.5);
  init.normal(c, 2.0);
  CHECK(init.count() == 3);
  for (double v : a.value.to_vector()) CHECK(v == 1.0);
  const auto bv = b.value.to_vector();
  for (std::size_t i = 0; i < 3; ++i)
    CHECK(bv[i] == doctest::Approx((2 * rng.uniform(rng_stream::make(rng_stream::init, 1), i) - 1) * 0.5));
  const auto cv = c.value.to_vector();
  for (std::size_t i = 0; i < 5; ++i)
    CHECK(cv[i] == doctest::Approx(2 * rng.normal(rng_stream::make(rng_stream::init, 2), i)));
  CHECK(nn::default_init_bound(16) == 0.25);
}

TEST_CASE("detail::visit_prefixed builds PyTorch's dotted names") {
  nn::ParamInit init;
  nn::Linear<float, B> fc(2, 3, B{}, init);
  std::vector<std::string> names;
  auto v = [&](std::string_view n, auto&) { names.emplace_back(n); };
  ddpm::detail::visit_prefixed(fc, "time_mlp.0", v);
  CHECK(names == std::vector<std::string>{"time_mlp.0.weight", "time_mlp.0.bias"});
}
