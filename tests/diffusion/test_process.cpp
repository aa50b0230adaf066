// Tests for ddpm/diffusion/process.hpp: q_sample statistics, loss/gradient, predict, signatures.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "ddpm/backend/reference.hpp"
#include "ddpm/diffusion/loss/huber.hpp"
#include "ddpm/diffusion/loss/l1.hpp"
#include "ddpm/diffusion/loss/l2.hpp"
#include "ddpm/diffusion/process.hpp"
#include "ddpm/diffusion/schedule/cosine.hpp"
#include "ddpm/diffusion/schedule/linear.hpp"
#include "ddpm/diffusion/target/epsilon.hpp"
#include "ddpm/diffusion/target/v.hpp"
#include "ddpm/diffusion/target/x0.hpp"

using namespace ddpm;
using Ref = backend::Reference;

TEST_CASE("q_sample: mean and variance of x_t for a fixed x0 over many draws") {
  DiffusionProcess<schedule::Cosine, target::Epsilon, loss::L2, Ref, double> proc(
      schedule::Cosine{.steps = 1000});
  const std::size_t draws = 20000, item = 4;
  std::vector<double> x0_host(draws * item);
  const double pixel[item] = {-1.0, -0.25, 0.5, 1.0};
  for (std::size_t n = 0; n < draws; ++n)
    for (std::size_t i = 0; i < item; ++i) x0_host[n * item + i] = pixel[i];
  Tensor<double, Ref> x0(Shape{draws, 1, 2, 2}, x0_host), eps(Shape{draws, 1, 2, 2}),
      xt(Shape{draws, 1, 2, 2});
  Ops<Ref>::fill_normal(Ref{}, eps.view(), Rng{3}, 11, 0);
  for (std::int32_t t : {0, 100, 500, 900, 999}) {
    std::vector<std::int32_t> ts(draws, t);
    proc.q_sample(x0.cview(), eps.cview(), ts, xt.view());
    const double abar = proc.table().alpha_bar_f64[std::size_t(t)];
    for (std::size_t i = 0; i < item; ++i) {
      double m = 0, v = 0;
      for (std::size_t n = 0; n < draws; ++n) m += xt.view()[n * item + i];
      m /= draws;
      for (std::size_t n = 0; n < draws; ++n) v += std::pow(xt.view()[n * item + i] - m, 2);
      v /= draws;
      // mean sqrt(abar) x0, variance 1 - abar; 5 standard errors.
      const double se_m = std::sqrt((1 - abar) / draws), se_v = (1 - abar) * std::sqrt(2.0 / draws);
      CHECK(std::abs(m - std::sqrt(abar) * pixel[i]) < 5 * se_m + 1e-12);
      CHECK(std::abs(v - (1 - abar)) < 5 * se_v + 1e-12);
    }
  }
}

TEST_CASE_TEMPLATE("loss_and_grad: value and finite-difference gradient", L, loss::L1, loss::L2,
                   loss::Huber) {
  DiffusionProcess<schedule::Linear, target::V, L, Ref, double> proc(schedule::Linear{.steps = 100},
                                                                     L{}, Ref{},
                                                                     ProcessOptions{.min_snr_gamma = 5});
  const Shape shape{3, 1, 2, 3};
  Tensor<double, Ref> x0(shape), eps(shape), out(shape), dout(shape);
  Ops<Ref>::fill_normal(Ref{}, x0.view(), Rng{1}, 1, 0);
  Ops<Ref>::fill_normal(Ref{}, eps.view(), Rng{1}, 2, 0);
  Ops<Ref>::fill_normal(Ref{}, out.view(), Rng{1}, 3, 0);
  const std::vector<std::int32_t> t{0, 42, 99};
  const double l0 = proc.loss_and_grad(out.cview(), x0.cview(), eps.cview(), t, dout.view());
  CHECK(std::isfinite(l0));
  Tensor<double, Ref> scratch(shape);
  for (std::size_t i = 0; i < shape.numel(); ++i) {
    const double h = 1e-6, keep = out.view()[i];
    out.view()[i] = keep + h;
    const double lp = proc.loss_and_grad(out.cview(), x0.cview(), eps.cview(), t, scratch.view());
    out.view()[i] = keep - h;
    const double lm = proc.loss_and_grad(out.cview(), x0.cview(), eps.cview(), t, scratch.view());
    out.view()[i] = keep;
    CHECK(dout.view()[i] == doctest::Approx((lp - lm) / (2 * h)).epsilon(1e-5));
  }
}

TEST_CASE("predict inverts the target (no clipping) and clips x0 when asked") {
  DiffusionProcess<schedule::Cosine, target::X0, loss::L2, Ref, double> proc(
      schedule::Cosine{.steps = 200});
  const Shape shape{2, 1, 1, 2};
  Tensor<double, Ref> xt(shape, std::vector<double>{0.3, -0.2, 1.5, 0.1});
  Tensor<double, Ref> out(shape, std::vector<double>{0.5, -3.0, 2.0, 0.25});
  Tensor<double, Ref> x0(shape), eps(shape);
  const std::vector<std::int32_t> t{10, 150};
  proc.predict(xt.cview(), out.cview(), t, false, x0.view(), eps.view());
  CHECK(x0.view()[1] == doctest::Approx(-3.0));
  proc.predict(xt.cview(), out.cview(), t, true, x0.view(), eps.view());
  CHECK(x0.view()[1] == doctest::Approx(-1.0));
  CHECK(x0.view()[2] == doctest::Approx(1.0));
  // eps is consistent with the clipped x0: xt = a x0 + s eps.
  const auto& tab = proc.table();
  for (std::size_t n = 0; n < 2; ++n)
    for (std::size_t i = 0; i < 2; ++i) {
      const std::size_t e = n * 2 + i;
      CHECK(xt.view()[e] == doctest::Approx(tab.sqrt_alpha_bar[std::size_t(t[n])] * x0.view()[e] +
                                            tab.sqrt_one_minus_alpha_bar[std::size_t(t[n])] *
                                                eps.view()[e]));
    }
}

TEST_CASE("signature names every policy and differs between configurations") {
  DiffusionProcess<schedule::Cosine, target::Epsilon, loss::Huber, Ref> a(
      schedule::Cosine{.steps = 1000});
  DiffusionProcess<schedule::Linear, target::Epsilon, loss::Huber, Ref> b(
      schedule::Linear{.steps = 1000});
  const auto sa = a.signature(), sb = b.signature();
  CHECK(sa.at("target") == "epsilon");
  CHECK(sa.at("loss") == "huber(delta=1)");
  CHECK(sa.at("T") == "1000");
  CHECK(sa.at("schedule").rfind("cosine", 0) == 0);
  CHECK(sa.at("schedule_fingerprint") != sb.at("schedule_fingerprint"));
}

TEST_CASE("process rejects bad input naming the parameter") {
  using P = DiffusionProcess<schedule::Linear, target::Epsilon, loss::Huber, Ref>;
  CHECK_THROWS_WITH_AS(P(schedule::Linear{}, loss::Huber{.delta = -1.0f}),
                       doctest::Contains("loss::Huber::delta"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(P(schedule::Linear{.steps = 0}), doctest::Contains("steps"),
                       std::invalid_argument);
  P p(schedule::Linear{.steps = 10});
  Tensor<float, Ref> x(Shape{1, 1, 1, 1}), e(Shape{1, 1, 1, 1}), y(Shape{1, 1, 1, 1});
  const std::vector<std::int32_t> bad{10};
  CHECK_THROWS_WITH_AS(p.q_sample(x.cview(), e.cview(), bad, y.view()),
                       doctest::Contains("timestep 10 outside [0, 10)"), std::invalid_argument);
  const std::vector<std::int32_t> two{1, 2};
  CHECK_THROWS_WITH_AS(p.q_sample(x.cview(), e.cview(), two, y.view()),
                       doctest::Contains("1 images but 2 timesteps"), std::invalid_argument);
}
