// Tests for ddpm/nn/unet/attn_block.hpp.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "ddpm/backend/reference.hpp"
#include "ddpm/nn/unet/attn_block.hpp"
#include "support/gradient_check.hpp"
#include "support/random.hpp"

using namespace ddpm;
using T = double;
using B = backend::Reference;

static_assert(nn::Layer<nn::AttnBlock<float, B>>);

TEST_CASE("AttnBlock: gradients of x and parameters (proj randomised), 1, 2 and 4 heads") {
  for (const std::size_t heads : {1, 2, 4}) {
    CAPTURE(heads);
    nn::ParamInit init(Rng{7});
    nn::AttnBlock<T, B> blk(4, 2, B{}, init, heads);
    CHECK(blk.heads() == heads);
    test::randomize_parameters(blk, 8);
    nn::Workspace<T, B> ws;
    auto x = test::random_tensor<T, B>(Shape{2, 4, 3, 2}, 101);
    auto R = test::random_tensor<T, B>(x.shape(), 102);
    Tensor<T, B> out(x.shape()), dx(x.shape());
    auto loss = [&] {
      blk.forward(x.cview(), out.view(), ws);
      return test::dot<T>(out.cview(), R.cview());
    };
    loss();
    test::zero_grads(blk);
    blk.backward(x.cview(), R.cview(), dx.view(), false, ws);
    test::check_gradient("dx", x, test::to_double(dx), loss);
    test::check_parameter_gradients(blk, loss);
    test::check_accumulate(blk, dx,
                           [&](View<T> d, bool acc) { blk.backward(x.cview(), R.cview(), d, acc, ws); });
  }
}

TEST_CASE("AttnBlock: starts as the identity (zero proj); names") {
  nn::ParamInit init(Rng{7});
  nn::AttnBlock<T, B> blk(4, 2, B{}, init);
  nn::Workspace<T, B> ws;
  auto x = test::random_tensor<T, B>(Shape{1, 4, 2, 2}, 103);
  Tensor<T, B> out(x.shape());
  blk.forward(x.cview(), out.view(), ws);
  CHECK(out.to_vector() == x.to_vector());
  std::vector<std::string> names;
  blk.visit_parameters([&](std::string_view n, auto&) { names.emplace_back(n); });
  CHECK(names == std::vector<std::string>{"norm.weight", "norm.bias", "qkv.weight", "qkv.bias",
                                          "proj.weight", "proj.bias"});
}

TEST_CASE("AttnBlock: heads split the channels; one head per channel group is not one head") {
  // The same parameters with 1 and 2 heads give different outputs (the heads attend separately),
  // and 2 heads equal two single-head blocks run by hand on the channel halves of qkv.
  nn::ParamInit i1(Rng{9}), i2(Rng{9});
  nn::AttnBlock<T, B> one(4, 2, B{}, i1, 1), two(4, 2, B{}, i2, 2);
  test::randomize_parameters(one, 10);
  test::randomize_parameters(two, 10);
  nn::Workspace<T, B> ws;
  auto x = test::random_tensor<T, B>(Shape{2, 4, 2, 3}, 104);
  Tensor<T, B> o1(x.shape()), o2(x.shape());
  one.forward(x.cview(), o1.view(), ws);
  two.forward(x.cview(), o2.view(), ws);
  CHECK(o1.to_vector() != o2.to_vector());
  // by hand: attention of head h reads qkv channels [6h, 6h + 6) as [q; k; v] of 2 channels
  const auto w = [&](std::string_view name) {
    std::vector<T> v;
    two.visit_parameters([&](std::string_view n, auto& p) {
      if (n == name) v = p.value.to_vector();
    });
    return v;
  };
  const auto gw = w("norm.weight"), gb = w("norm.bias"), qw = w("qkv.weight"), qb = w("qkv.bias"),
             pw = w("proj.weight"), pb = w("proj.bias");
  const auto xv = x.to_vector();
  const std::size_t C = 4, P = 6;
  for (std::size_t n = 0; n < 2; ++n) {
    std::vector<T> a(C * P), qkv(3 * C * P), att(C * P);
    for (std::size_t g = 0; g < 2; ++g) {  // GroupNorm, 2 groups of 2 channels
      double mean = 0, var = 0;
      for (std::size_t i = 0; i < 2 * P; ++i) mean += xv[n * C * P + g * 2 * P + i];
      mean /= 2 * P;
      for (std::size_t i = 0; i < 2 * P; ++i) {
        const double d = xv[n * C * P + g * 2 * P + i] - mean;
        var += d * d;
      }
      var /= 2 * P;
      for (std::size_t c = 2 * g; c < 2 * g + 2; ++c)
        for (std::size_t i = 0; i < P; ++i)
          a[c * P + i] = (xv[n * C * P + c * P + i] - mean) / std::sqrt(var + 1e-5) * gw[c] + gb[c];
    }
    for (std::size_t o = 0; o < 3 * C; ++o)
      for (std::size_t i = 0; i < P; ++i) {
        T s = qb[o];
        for (std::size_t c = 0; c < C; ++c) s += qw[o * C + c] * a[c * P + i];
        qkv[o * P + i] = s;
      }
    for (std::size_t h = 0; h < 2; ++h) {
      const T* q = &qkv[h * 6 * P];
      const T* k = q + 2 * P;
      const T* v = k + 2 * P;
      for (std::size_t i = 0; i < P; ++i) {
        std::vector<double> e(P);
        double mx = -1e300, sum = 0;
        for (std::size_t j = 0; j < P; ++j) {
          e[j] = (q[i] * k[j] + q[P + i] * k[P + j]) / std::sqrt(2.0);
          mx = std::max(mx, e[j]);
        }
        for (auto& ej : e) sum += (ej = std::exp(ej - mx));
        for (std::size_t c = 0; c < 2; ++c) {
          double s = 0;
          for (std::size_t j = 0; j < P; ++j) s += v[c * P + j] * e[j] / sum;
          att[(2 * h + c) * P + i] = s;
        }
      }
    }
    const auto got = o2.to_vector();
    for (std::size_t o = 0; o < C; ++o)
      for (std::size_t i = 0; i < P; ++i) {
        T s = pb[o] + xv[n * C * P + o * P + i];
        for (std::size_t c = 0; c < C; ++c) s += pw[o * C + c] * att[c * P + i];
        CHECK(got[n * C * P + o * P + i] == doctest::Approx(s).epsilon(1e-12));
      }
  }
}

TEST_CASE("AttnBlock: a head count that does not divide the channels is refused") {
  nn::ParamInit init(Rng{7});
  CHECK_THROWS_WITH_AS((nn::AttnBlock<T, B>(4, 2, B{}, init, 3)),
                       doctest::Contains("AttnBlock heads: 3 must be positive and divide"),
                       std::invalid_argument);
  CHECK_THROWS_AS((nn::AttnBlock<T, B>(4, 2, B{}, init, 0)), std::invalid_argument);
}
