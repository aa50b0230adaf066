// Tests for ddpm/diffusion/target/*.hpp and ddpm/diffusion/loss/*.hpp.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "ddpm/diffusion/loss/huber.hpp"
#include "ddpm/diffusion/loss/l1.hpp"
#include "ddpm/diffusion/loss/l2.hpp"
#include "ddpm/diffusion/target/epsilon.hpp"
#include "ddpm/diffusion/target/v.hpp"
#include "ddpm/diffusion/target/x0.hpp"

TEST_CASE_TEMPLATE("target round trip: (x0, eps) -> target -> (x0_hat, eps_hat)", P,
                   ddpm::target::Epsilon, ddpm::target::X0, ddpm::target::V) {
  std::mt19937 gen(1);
  std::normal_distribution<double> nd;
  for (double abar : {0.9999, 0.9, 0.5, 0.1, 1e-3}) {
    const double a = std::sqrt(abar), s = std::sqrt(1 - abar);
    for (int i = 0; i < 100; ++i) {
      const double x0 = nd(gen), eps = nd(gen);
      const double xt = a * x0 + s * eps;
      const double out = P::target(x0, eps, a, s);
      CHECK(P::x0(xt, out, a, s) == doctest::Approx(x0).epsilon(1e-9));
      CHECK(P::eps(xt, out, a, s) == doctest::Approx(eps).epsilon(1e-9));
    }
  }
}

TEST_CASE_TEMPLATE("loss gradients pass a finite-difference check", L, ddpm::loss::L1,
                   ddpm::loss::L2, ddpm::loss::Huber) {
  const L loss{};
  for (double d : {-3.0, -1.2, -0.7, -0.2, 0.3, 0.9, 1.1, 2.5}) {
    const double h = 1e-6;
    const double fd = (loss.value(d + h) - loss.value(d - h)) / (2 * h);
    CHECK(loss.grad(d) == doctest::Approx(fd).epsilon(1e-6));
  }
}

TEST_CASE("Huber equals L2/2 inside delta and L1 - delta/2 outside (delta = 1)") {
  const ddpm::loss::Huber h{};
  const ddpm::loss::L2 l2{};
  const ddpm::loss::L1 l1{};
  for (double d : {-0.99, -0.5, 0.0, 0.25, 1.0})
    CHECK(h.value(d) == doctest::Approx(l2.value(d) / 2));
  for (double d : {-5.0, -1.5, 1.01, 3.0})
    CHECK(h.value(d) == doctest::Approx(l1.value(d) - 0.5));
  const ddpm::loss::Huber h2{.delta = 0.5f};
  CHECK(h2.value(2.0) == doctest::Approx(0.5 * (2.0 - 0.25)));
  CHECK(h2.grad(2.0) == doctest::Approx(0.5));
  CHECK(h2.grad(-0.3) == doctest::Approx(-0.3));
}

TEST_CASE("L1 gradient is 0 at 0, as PyTorch") {
  CHECK(ddpm::loss::L1{}.grad(0.0) == 0.0);
  CHECK(ddpm::loss::L1{}.grad(-2.0) == -1.0);
}

TEST_CASE("Huber delta <= 0 or NaN is rejected with the parameter name") {
  CHECK_THROWS_WITH_AS(ddpm::loss::Huber{.delta = 0.0f}.validate(),
                       doctest::Contains("loss::Huber::delta"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(ddpm::loss::Huber{.delta = -1.0f}.validate(),
                       doctest::Contains("loss::Huber::delta"), std::invalid_argument);
  CHECK_THROWS_AS(ddpm::loss::Huber{.delta = std::nanf("")}.validate(), std::invalid_argument);
}

TEST_CASE("min-SNR weights") {
  using namespace ddpm::target;
  CHECK(Epsilon::min_snr_weight(10.0, 5.0) == doctest::Approx(0.5));
  CHECK(Epsilon::min_snr_weight(2.0, 5.0) == doctest::Approx(1.0));
  CHECK(X0::min_snr_weight(10.0, 5.0) == doctest::Approx(5.0));
  CHECK(V::min_snr_weight(4.0, 5.0) == doctest::Approx(4.0 / 5.0));
}
