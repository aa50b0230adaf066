// Tests for ddpm/nn/unet/unet.hpp: sizes and names against PyTorch, initialisation, a whole-network
// gradient check, inference vs training, the allocation-free steady state, input errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "ddpm/backend/reference.hpp"
#include "ddpm/nn.hpp"
#include "support/gradient_check.hpp"
#include "support/random.hpp"

#if __has_include("ddpm/backend/cpu.hpp")
#include "ddpm/backend/cpu.hpp"
#define DDPM_TEST_BACKENDS ddpm::backend::Reference, ddpm::backend::Cpu
#else
#define DDPM_TEST_BACKENDS ddpm::backend::Reference
#endif

using namespace ddpm;
using B = backend::Reference;
using nn::UNetConfig;

static_assert(nn::Layer<nn::UNet<float, B>>);

namespace {

/// A U-Net small enough for finite differences on the reference backend, with every kind of
/// stage: 1x1 skips, identity skips, attention in encoder, middle and decoder, down/upsampling.
UNetConfig tiny_config(std::size_t classes, double dropout) {
  UNetConfig c;
  c.in_channels = 2;
  c.image_size = 4;
  c.base_channels = 4;
  c.channel_mults = {1, 2};
  c.num_res_blocks = 1;
  c.attention_resolutions = {2};
  c.num_classes = classes;
  c.groups = 2;
  c.dropout = dropout;
  c.out_channels = 3;
  return c;
}

template <class T, class BE = backend::Reference>
struct Batch {
  Tensor<T, BE> x;
  Tensor<std::int32_t, BE> t, y;
  Batch(const UNetConfig& c, std::size_t N, std::uint64_t seed)
      : x(test::random_tensor<T, BE>(Shape{N, c.in_channels, c.image_size, c.image_size}, seed)),
        t(Shape{N}),
        y(Shape{N}) {
    std::vector<std::int32_t> tv(N), yv(N);
    for (std::size_t n = 0; n < N; ++n) {
      tv[n] = std::int32_t((n * 397 + 11) % 1000);
      yv[n] = std::int32_t(c.num_classes ? n % (c.num_classes + 1) : 0);
    }
    t.copy_from(tv);
    y.copy_from(yv);
  }
  ConstView<std::int32_t> labels(const UNetConfig& c) const {
    return c.num_classes ? y.cview() : ConstView<std::int32_t>{};
  }
};

template <class BE>
BE make_backend() {
  if constexpr (std::is_same_v<BE, backend::Reference>) return BE{};
  else return BE(2);
}

Shape out_shape(const UNetConfig& c, std::size_t N) {
  return Shape{N, c.output_channels(), c.image_size, c.image_size};
}

}  // namespace

TEST_CASE("UNet: parameter counts equal PyTorch's (../shared/ref/unet.py count_params)") {
  CHECK(nn::UNet<float, B>(UNetConfig::mnist()).num_parameters() == 1'624'577);
  CHECK(nn::UNet<float, B>(UNetConfig::manga32()).num_parameters() == 8'952'067);
  CHECK(nn::UNet<float, B>(UNetConfig::anime64()).num_parameters() == 17'217'923);
}

TEST_CASE("UNet: unusual configurations build with PyTorch's parameter counts") {
  UNetConfig a;  // three levels, no encoder ResBlocks, attention at two levels
  a.in_channels = 1;
  a.image_size = 8;
  a.base_channels = 4;
  a.channel_mults = {1, 1, 2};
  a.num_res_blocks = 0;
  a.attention_resolutions = {8, 2};
  a.groups = 2;
  CHECK(nn::UNet<float, B>(a).num_parameters() == 5345);
  UNetConfig b;  // three res blocks, mults (1, 2, 3), out_channels != in_channels
  b.in_channels = 3;
  b.image_size = 16;
  b.base_channels = 8;
  b.channel_mults = {1, 2, 3};
  b.num_res_blocks = 3;
  b.attention_resolutions = {4};
  b.groups = 4;
  b.num_classes = 5;
  b.out_channels = 6;
  CHECK(nn::UNet<float, B>(b).num_parameters() == 217198);
}

TEST_CASE("UNet: PyTorch's parameter names, in named_parameters() order") {
  const nn::UNet<float, B> net(UNetConfig::mnist());
  std::vector<std::string> names;
  std::size_t total = 0;
  net.visit_parameters([&](std::string_view n, const nn::Parameter<float, B>& p) {
    names.emplace_back(n);
    total += p.size();
    CHECK(p.grad.shape() == p.value.shape());
  });
  CHECK(total == net.num_parameters());
  REQUIRE(names.size() > 10);
  CHECK(names[0] == "time_mlp.0.weight");
  CHECK(names[3] == "time_mlp.2.bias");
  CHECK(names[4] == "class_emb.weight");
  CHECK(names[5] == "conv_in.weight");
  CHECK(names[7] == "down.0.0.norm1.weight");
  CHECK(names.back() == "conv_out.bias");
  CHECK(names[names.size() - 4] == "norm_out.weight");
  auto has = [&](const char* n) { return std::find(names.begin(), names.end(), n) != names.end(); };
  for (const char* n : {"down.2.conv.weight", "down.3.0.skip.weight", "down.6.1.qkv.weight",
                        "down.7.1.proj.bias", "mid1.conv1.weight", "mid_attn.proj.bias",
                        "mid2.emb_proj.weight", "up.0.1.norm.weight", "up.3.conv.weight",
                        "up.7.conv.bias", "up.10.0.skip.bias"})
    CHECK_MESSAGE(has(n), n);
  CHECK_FALSE(has("down.8.conv.weight"));  // no Downsample after the last level
  // mid1 comes after every down entry and before every up entry
  const auto pos = [&](const char* n) { return std::find(names.begin(), names.end(), n) - names.begin(); };
  CHECK(pos("down.7.1.proj.bias") < pos("mid1.norm1.weight"));
  CHECK(pos("mid2.conv2.bias") < pos("up.0.0.norm1.weight"));
}

TEST_CASE("UNet: initialisation (PyTorch defaults, zero output layers, deterministic seed)") {
  const UNetConfig c = tiny_config(3, 0.1);
  nn::UNet<double, B> a(c, B{}, 7), b(c, B{}, 7), other(c, B{}, 8);
  std::vector<std::vector<double>> va, vb, vo;
  a.visit_parameters([&](std::string_view, auto& p) { va.push_back(p.value.to_vector()); });
  b.visit_parameters([&](std::string_view, auto& p) { vb.push_back(p.value.to_vector()); });
  other.visit_parameters([&](std::string_view, auto& p) { vo.push_back(p.value.to_vector()); });
  CHECK(va == vb);
  CHECK(va != vo);
  std::size_t k = 0;
  a.visit_parameters([&](std::string_view n, auto& p) {
    const auto v = p.value.to_vector();
    const bool zero = n.find("conv2.") != std::string_view::npos ||
                      n.find(".proj.") != std::string_view::npos || n.starts_with("conv_out.");
    const bool norm = n.find("norm") != std::string_view::npos;
    if (zero || (norm && n.ends_with("bias"))) {
      for (double x : v) CHECK_MESSAGE(x == 0.0, n);
    } else if (norm) {
      for (double x : v) CHECK_MESSAGE(x == 1.0, n);
    }
    if (n == "conv_in.weight") {  // parameter number 5: U(-1/sqrt(2*9), 1/sqrt(2*9)) from stream (init, 5)
      CHECK(k == 5);
      const double u = Rng{7}.uniform(rng_stream::make(rng_stream::init, 5), 0);
      CHECK(v[0] == doctest::Approx((2 * u - 1) / std::sqrt(18.0)));
    }
    ++k;
  });
  // the freshly initialised network predicts exactly 0 (conv_out is zero)
  Batch<double> in(c, 2, 1);
  Tensor<double, B> out(out_shape(c, 2));
  a.forward(in.x.cview(), in.t.cview(), in.y.cview(), out.view());
  for (double v : out.to_vector()) CHECK(v == 0.0);
}

TEST_CASE("UNet: whole-network gradient check (double, reference backend, dropout on)") {
  for (const std::size_t classes : {std::size_t{3}, std::size_t{0}}) {
    CAPTURE(classes);
    const UNetConfig c = tiny_config(classes, 0.2);
    nn::UNet<double, B> net(c, B{}, 1);
    test::randomize_parameters(net, 5);
    Batch<double> in(c, 2, 10);
    auto R = test::random_tensor<double, B>(out_shape(c, 2), 11);
    Tensor<double, B> out(R.shape()), dx(in.x.shape());
    const nn::Pass pass{.train = true, .rng = Rng{3}, .step = 4};
    auto loss = [&] {
      net.forward(in.x.cview(), in.t.cview(), in.labels(c), out.view(), pass);
      return test::dot<double>(out.cview(), R.cview());
    };
    loss();
    net.zero_grad();
    net.backward(R.cview(), dx.view());
    test::GradCheckOptions o;
    o.max_points = 12;
    test::check_gradient("dx", in.x, test::to_double(dx), loss, o);
    test::check_parameter_gradients(net, loss, o);
  }
}

TEST_CASE("UNet: gradient check of a 3-level network without encoder ResBlocks") {
  UNetConfig c;
  c.in_channels = 1;
  c.image_size = 8;
  c.base_channels = 4;
  c.channel_mults = {1, 1, 2};
  c.num_res_blocks = 0;
  c.attention_resolutions = {8, 2};
  c.groups = 2;
  c.dropout = 0.1;
  nn::UNet<double, B> net(c, B{}, 2);
  test::randomize_parameters(net, 12);
  Batch<double> in(c, 2, 20);
  auto R = test::random_tensor<double, B>(out_shape(c, 2), 21);
  Tensor<double, B> out(R.shape()), dx(in.x.shape());
  const nn::Pass pass{.train = true, .rng = Rng{4}, .step = 1};
  auto loss = [&] {
    net.forward(in.x.cview(), in.t.cview(), {}, out.view(), pass);
    return test::dot<double>(out.cview(), R.cview());
  };
  loss();
  net.zero_grad();
  net.backward(R.cview(), dx.view());
  test::GradCheckOptions o;
  o.max_points = 6;
  test::check_gradient("dx", in.x, test::to_double(dx), loss, o);
  test::check_parameter_gradients(net, loss, o);
}

TEST_CASE("UNet: a conditional model with empty labels uses the null class") {
  const UNetConfig c = tiny_config(3, 0.0);
  nn::UNet<double, B> net(c, B{}, 2);
  test::randomize_parameters(net, 6);
  Batch<double> in(c, 2, 12);
  const Tensor<std::int32_t, B> null(Shape{2}, std::vector<std::int32_t>{3, 3});
  Tensor<double, B> a(out_shape(c, 2)), b(out_shape(c, 2)), d(out_shape(c, 2));
  net.forward(in.x.cview(), in.t.cview(), ConstView<std::int32_t>{}, a.view());
  net.forward(in.x.cview(), in.t.cview(), null.cview(), b.view());
  net.forward(in.x.cview(), in.t.cview(), in.y.cview(), d.view());
  CHECK(a.to_vector() == b.to_vector());
  CHECK(a.to_vector() != d.to_vector());
}

TEST_CASE_TEMPLATE("UNet: inference forward equals training forward with dropout 0", BE,
                   DDPM_TEST_BACKENDS) {
  using B = BE;
  const UNetConfig c = tiny_config(3, 0.0);
  nn::UNet<float, B> net(c, make_backend<B>(), 3);
  test::randomize_parameters(net, 7);
  Batch<float, B> in(c, 3, 13);
  Tensor<float, B> inf(out_shape(c, 3)), tr(out_shape(c, 3)), inf2(out_shape(c, 3));
  net.forward(in.x.cview(), in.t.cview(), in.y.cview(), inf.view());
  net.forward(in.x.cview(), in.t.cview(), in.y.cview(), tr.view(), nn::Pass{.train = true});
  net.forward(in.x.cview(), in.t.cview(), in.y.cview(), inf2.view());
  CHECK(inf.to_vector() == tr.to_vector());
  CHECK(inf.to_vector() == inf2.to_vector());
  // with dropout the training forward differs, and depends on the step
  UNetConfig cd = c;
  cd.dropout = 0.3;
  nn::UNet<float, B> dnet(cd, make_backend<B>(), 3);
  test::randomize_parameters(dnet, 7);
  Tensor<float, B> d0(out_shape(c, 3)), d1(out_shape(c, 3)), d1b(out_shape(c, 3));
  dnet.forward(in.x.cview(), in.t.cview(), in.y.cview(), d0.view());
  dnet.forward(in.x.cview(), in.t.cview(), in.y.cview(), d1.view(), nn::Pass{.train = true, .step = 1});
  dnet.forward(in.x.cview(), in.t.cview(), in.y.cview(), d1b.view(), nn::Pass{.train = true, .step = 1});
  CHECK(d0.to_vector() == inf.to_vector());
  CHECK(d1.to_vector() != d0.to_vector());
  CHECK(d1.to_vector() == d1b.to_vector());
}

TEST_CASE_TEMPLATE("UNet: a second forward/backward of the same or a smaller batch allocates nothing",
                   BE, DDPM_TEST_BACKENDS) {
  using B = BE;
  const UNetConfig c = tiny_config(3, 0.1);
  nn::UNet<float, B> net(c, make_backend<B>(), 4);
  test::randomize_parameters(net, 8);
  Batch<float, B> in(c, 4, 14);
  Tensor<float, B> out(out_shape(c, 4)), dout(out_shape(c, 4)), dx(in.x.shape());
  dout.copy_from(std::vector<float>(dout.size(), 0.5f));
  auto& count = ddpm::detail::tensor_allocation_count();
  const nn::Pass pass{.train = true, .rng = Rng{1}, .step = 0};
  net.forward(in.x.cview(), in.t.cview(), in.y.cview(), out.view(), pass);
  net.backward(dout.cview(), dx.view());
  net.forward(in.x.cview(), in.t.cview(), in.y.cview(), out.view());  // inference
  const std::size_t after_first = count.load();
  for (std::uint64_t step = 1; step < 3; ++step) {
    net.forward(in.x.cview(), in.t.cview(), in.y.cview(), out.view(), nn::Pass{.train = true, .step = step});
    net.backward(dout.cview(), dx.view());
    net.forward(in.x.cview(), in.t.cview(), in.y.cview(), out.view());
  }
  CHECK(count.load() == after_first);
  // a smaller batch reuses the buffers too
  const ConstView<float> x2 = in.x.cview().slice(0, 2);
  net.forward(x2, in.t.cview().slice(0, 2), in.y.cview().slice(0, 2), out.view().slice(0, 2), pass);
  net.backward(dout.cview().slice(0, 2), dx.view().slice(0, 2));
  CHECK(count.load() == after_first);
}

TEST_CASE("UNet: inference keeps less than training; release_buffers frees everything") {
  const UNetConfig c = tiny_config(0, 0.1);
  Batch<float> in(c, 4, 15);
  Tensor<float, B> out(out_shape(c, 4)), dout(out_shape(c, 4));
  dout.zero();
  nn::UNet<float, B> inf(c), tr(c);
  inf.forward(in.x.cview(), in.t.cview(), {}, out.view());
  tr.forward(in.x.cview(), in.t.cview(), {}, out.view(), nn::Pass{.train = true});
  tr.backward(dout.cview());
  const auto mi = inf.memory_use(), mt = tr.memory_use();
  CHECK(mi.parameters == tr.num_parameters() * sizeof(float));
  CHECK(mi.gradients == mi.parameters);
  CHECK(mi.activations < mt.activations);
  CHECK(mi.workspace <= mt.workspace);
  tr.release_buffers();
  CHECK(tr.memory_use().activations == 0);
  CHECK(tr.memory_use().workspace == 0);
  CHECK_THROWS_AS(tr.backward(dout.cview()), std::logic_error);
}

TEST_CASE("UNet: errors name the argument") {
  const UNetConfig c = tiny_config(3, 0.0);
  nn::UNet<float, B> net(c);
  Batch<float> in(c, 2, 16);
  Tensor<float, B> out(out_shape(c, 2)), dout(out_shape(c, 2));
  const Tensor<float, B> bad_x(Shape{2, 1, 4, 4});
  CHECK_THROWS_WITH_AS(net.forward(bad_x.cview(), in.t.cview(), in.y.cview(), out.view()),
                       doctest::Contains("UNet::forward x"), std::invalid_argument);
  const Tensor<std::int32_t, B> bad_y(Shape{2}, std::vector<std::int32_t>{0, 4});
  CHECK_THROWS_WITH_AS(net.forward(in.x.cview(), in.t.cview(), bad_y.cview(), out.view()),
                       doctest::Contains("label 4 at index 1"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(net.forward(in.x.cview(), in.t.cview().slice(0, 1), in.y.cview(), out.view()),
                       doctest::Contains("UNet::forward t"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(net.forward(in.x.cview(), in.t.cview(), in.y.cview(), out.view().slice(0, 1)),
                       doctest::Contains("UNet::forward out"), std::invalid_argument);
  CHECK_THROWS_AS(net.backward(dout.cview()), std::logic_error);
  nn::UNet<float, B> uncond(tiny_config(0, 0.0));
  CHECK_THROWS_WITH_AS(uncond.forward(in.x.cview(), in.t.cview(), in.y.cview(), out.view()),
                       doctest::Contains("unconditional"), std::invalid_argument);
  UNetConfig badc = c;
  badc.image_size = 6;
  badc.attention_resolutions = {3};
  badc.channel_mults = {1, 2, 2};
  CHECK_THROWS_WITH_AS((nn::UNet<float, B>{badc}), doctest::Contains("UNetConfig.image_size"),
                       std::invalid_argument);
}

TEST_CASE("UNet: zero_grad clears every gradient; backward accumulates") {
  const UNetConfig c = tiny_config(3, 0.0);
  nn::UNet<double, B> net(c, B{}, 5);
  test::randomize_parameters(net, 9);
  Batch<double> in(c, 2, 17);
  auto R = test::random_tensor<double, B>(out_shape(c, 2), 18);
  Tensor<double, B> out(R.shape());
  net.forward(in.x.cview(), in.t.cview(), in.y.cview(), out.view(), nn::Pass{.train = true});
  net.zero_grad();
  net.backward(R.cview());
  const auto g1 = test::parameter_grads(net);
  net.backward(R.cview());  // a second backward of the same forward adds the same gradients
  const auto g2 = test::parameter_grads(net);
  for (std::size_t k = 0; k < g1.size(); ++k) {
    std::vector<double> twice(g1[k]);
    for (double& v : twice) v *= 2;
    test::check_close("accumulated", g2[k], twice, 1e-12);
  }
  net.zero_grad();
  net.visit_parameters([](std::string_view, auto& p) {
    for (double v : p.grad.to_vector()) CHECK(v == 0.0);
  });
}
