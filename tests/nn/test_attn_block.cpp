// Tests for ddpm/nn/unet/attn_block.hpp.
#include <doctest/doctest.h>

#include "ddpm/backend/reference.hpp"
#include "ddpm/nn/unet/attn_block.hpp"
#include "support/gradient_check.hpp"
#include "support/random.hpp"

using namespace ddpm;
using T = double;
using B = backend::Reference;

static_assert(nn::Layer<nn::AttnBlock<float, B>>);

TEST_CASE("AttnBlock: gradients of x and parameters (proj randomised)") {
  nn::ParamInit init(Rng{7});
  nn::AttnBlock<T, B> blk(4, 2, B{}, init);
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
  test::check_accumulate(blk, dx, [&](View<T> d, bool acc) { blk.backward(x.cview(), R.cview(), d, acc, ws); });
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
