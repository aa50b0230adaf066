// Tests for ddpm/layers/attention.hpp (the core single-head attention on a packed qkv tensor).
#include <doctest/doctest.h>

#include "ddpm/backend/reference.hpp"
#include "ddpm/layers/attention.hpp"
#include "support/gradient_check.hpp"
#include "support/random.hpp"

using namespace ddpm;
using T = double;
using B = backend::Reference;

TEST_CASE("Attention: probabilities are a softmax per query, gradient of qkv") {
  const nn::Attention<T, B> attn;
  auto qkv = test::random_tensor<T, B>(Shape{2, 3 * 3, 2, 3}, 71);
  const Shape ps = nn::Attention<T, B>::probs_shape(qkv.shape());
  const Shape os = nn::Attention<T, B>::output_shape(qkv.shape());
  CHECK(ps == Shape{2, 6, 6});
  CHECK(os == Shape{2, 3, 2, 3});
  Tensor<T, B> probs(ps), out(os), dqkv(qkv.shape());
  auto R = test::random_tensor<T, B>(os, 72);
  auto loss = [&] {
    attn.forward(qkv.cview(), probs.view(), out.view());
    return test::dot<T>(out.cview(), R.cview());
  };
  loss();
  for (std::size_t r = 0; r < 12; ++r) {
    double s = 0;
    for (std::size_t j = 0; j < 6; ++j) s += probs.data()[r * 6 + j];
    CHECK(s == doctest::Approx(1.0));
  }
  attn.backward(qkv.cview(), probs.cview(), R.cview(), dqkv.view());
  test::check_gradient("dqkv", qkv, test::to_double(dqkv), loss);
}
