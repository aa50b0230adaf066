// Tests for ddpm/layers/dropout.hpp.
#include <doctest/doctest.h>

#include "ddpm/backend/reference.hpp"
#include "ddpm/layers/dropout.hpp"
#include "support/gradient_check.hpp"
#include "support/random.hpp"

using namespace ddpm;
using T = double;
using B = backend::Reference;

TEST_CASE("Dropout: mask from the stream, inverted scaling, gradient regenerates the mask") {
  const nn::Dropout<T, B> drop(0.3, B{});
  const Rng rng{17};
  const std::uint64_t stream = rng_stream::make(rng_stream::dropout, 5);
  auto x = test::random_tensor<T, B>(Shape{4, 3, 8, 8}, 51);
  auto R = test::random_tensor<T, B>(x.shape(), 52);
  Tensor<T, B> y(x.shape()), dx(x.shape());
  drop.forward(x.cview(), y.view(), rng, stream);
  std::size_t zeros = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (y.data()[i] == 0.0) ++zeros;
    else CHECK(y.data()[i] == doctest::Approx(x.data()[i] / 0.7));
  }
  const double frac = double(zeros) / double(x.size());
  CHECK(frac > 0.25);
  CHECK(frac < 0.35);
  // another stream gives another mask
  Tensor<T, B> y2(x.shape());
  drop.forward(x.cview(), y2.view(), rng, stream + 1);
  CHECK(y.to_vector() != y2.to_vector());

  auto loss = [&] {
    drop.forward(x.cview(), y.view(), rng, stream);
    return test::dot<T>(y.cview(), R.cview());
  };
  drop.backward(R.cview(), dx.view(), rng, stream, false);
  test::check_gradient("dx", x, test::to_double(dx), loss);
  test::check_accumulate(drop, dx, [&](View<T> d, bool acc) { drop.backward(R.cview(), d, rng, stream, acc); });
  CHECK_THROWS_AS((nn::Dropout<T, B>(1.0, B{})), std::invalid_argument);
}

TEST_CASE("Dropout: p = 0 is the identity") {
  const nn::Dropout<T, B> drop(0.0, B{});
  auto x = test::random_tensor<T, B>(Shape{2, 5}, 53);
  Tensor<T, B> y(x.shape());
  drop.forward(x.cview(), y.view(), Rng{1}, 0);
  CHECK(y.to_vector() == x.to_vector());
}
