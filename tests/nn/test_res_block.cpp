// Tests for ddpm/nn/unet/res_block.hpp.
#include <doctest/doctest.h>

#include "ddpm/backend/reference.hpp"
#include "ddpm/nn/unet/res_block.hpp"
#include "support/gradient_check.hpp"
#include "support/random.hpp"

using namespace ddpm;
using T = double;
using B = backend::Reference;

static_assert(nn::Layer<nn::ResBlock<float, B>>);

namespace {

struct Case {
  std::size_t cin, cout;
  double dropout;
};

void check_res_block(const Case& c) {
  CAPTURE(c.cin);
  CAPTURE(c.cout);
  CAPTURE(c.dropout);
  const std::size_t E = 5;
  nn::ParamInit init(Rng{1});
  nn::ResBlock<T, B> rb(c.cin, c.cout, E, 2, c.dropout, 3, B{}, init);
  test::randomize_parameters(rb, 2);
  nn::Workspace<T, B> ws;
  auto x = test::random_tensor<T, B>(Shape{2, c.cin, 4, 3}, 91);
  auto e = test::random_tensor<T, B>(Shape{2, E}, 92);
  auto R = test::random_tensor<T, B>(Shape{2, c.cout, 4, 3}, 93);
  Tensor<T, B> out(R.shape()), dx(x.shape()), de(e.shape());
  const nn::Pass pass{.train = true, .rng = Rng{5}, .step = 2};
  auto loss = [&] {
    rb.forward(x.cview(), e.cview(), out.view(), ws, pass);
    return test::dot<T>(out.cview(), R.cview());
  };
  loss();
  test::zero_grads(rb);
  de.zero();
  rb.backward(x.cview(), e.cview(), R.cview(), dx.view(), false, de.view(), ws);
  test::check_gradient("dx", x, test::to_double(dx), loss);
  test::check_gradient("d emb_silu", e, test::to_double(de), loss);
  test::check_parameter_gradients(rb, loss);
  loss();
  test::check_accumulate(rb, dx, [&](View<T> d, bool acc) {
    rb.backward(x.cview(), e.cview(), R.cview(), d, acc, View<T>{}, ws);
  });
}

}  // namespace

TEST_CASE("ResBlock: gradients (1x1 skip, identity skip, dropout)") {
  check_res_block({4, 8, 0.0});
  check_res_block({6, 6, 0.0});
  check_res_block({4, 6, 0.3});
}

TEST_CASE("ResBlock: parameter names and zero-initialised conv2") {
  nn::ParamInit init;
  nn::ResBlock<float, B> rb(4, 8, 6, 2, 0.1, 0, B{}, init);
  std::vector<std::string> names;
  rb.visit_parameters([&](std::string_view n, auto& p) {
    names.emplace_back(n);
    if (n.starts_with("conv2"))
      for (float v : p.value.to_vector()) CHECK(v == 0.0f);
  });
  CHECK(names == std::vector<std::string>{"norm1.weight", "norm1.bias", "conv1.weight", "conv1.bias",
                                          "emb_proj.weight", "emb_proj.bias", "norm2.weight",
                                          "norm2.bias", "conv2.weight", "conv2.bias", "skip.weight",
                                          "skip.bias"});
  CHECK(init.count() == 12);
}

TEST_CASE("ResBlock: inference equals training without dropout; dropout only in training") {
  for (const double p : {0.0, 0.5}) {
    nn::ParamInit init(Rng{3});
    nn::ResBlock<T, B> rb(4, 4, 5, 2, p, 0, B{}, init);
    test::randomize_parameters(rb, 4);
    nn::Workspace<T, B> ws;
    auto x = test::random_tensor<T, B>(Shape{2, 4, 3, 3}, 94);
    auto e = test::random_tensor<T, B>(Shape{2, 5}, 95);
    Tensor<T, B> a(x.shape()), b(x.shape());
    rb.forward(x.cview(), e.cview(), a.view(), ws, nn::Pass{});
    rb.forward(x.cview(), e.cview(), b.view(), ws, nn::Pass{.train = true, .rng = Rng{1}, .step = 0});
    if (p == 0.0) CHECK(a.to_vector() == b.to_vector());
    else CHECK(a.to_vector() != b.to_vector());
  }
}

TEST_CASE("ResBlock: backward without a training forward is an error") {
  nn::ParamInit init;
  nn::ResBlock<T, B> rb(4, 4, 5, 2, 0.0, 0, B{}, init);
  nn::Workspace<T, B> ws;
  auto x = test::random_tensor<T, B>(Shape{1, 4, 2, 2}, 96);
  auto e = test::random_tensor<T, B>(Shape{1, 5}, 97);
  Tensor<T, B> y(x.shape()), dx(x.shape());
  rb.forward(x.cview(), e.cview(), y.view(), ws, nn::Pass{});
  CHECK_THROWS_AS(rb.backward(x.cview(), e.cview(), y.cview(), dx.view(), false, View<T>{}, ws),
                  std::invalid_argument);
}
