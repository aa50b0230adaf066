// Tests for ddpm/diffusion/target/*.hpp and ddpm/diffusion/loss/*.hpp.
#include <doctest/doctest.h>

#include <cmath>
#include <algorithm>
#include <random>
#include <string_view>

#include "ddpm/diffusion/loss/huber.hpp"
#include "ddpm/diffusion/loss/l1.hpp"
#include "ddpm/diffusion/loss/l2.hpp"
#include "ddpm/diffusion/target/epsilon.hpp"
#include "ddpm/diffusion/target/v.hpp"
#include "ddpm/core/policy.hpp"
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

namespace {
/// A built-in target's element functions without its min_snr_weight: the library must derive it.
template <class P>
struct WithoutMinSnr {
  static constexpr std::string_view name = P::name;
  template <class V>
  static V target(V x0, V eps, V a, V s) { return P::target(x0, eps, a, s); }
  template <class V>
  static V x0(V xt, V out, V a, V s) { return P::x0(xt, out, a, s); }
  template <class V>
  static V eps(V xt, V out, V a, V s) { return P::eps(xt, out, a, s); }
};
/// A user's target written for float only: out = 2 eps.
struct ScaledEps {
  static constexpr std::string_view name = "scaled-eps";
  static float target(float, float eps, float, float) { return 2.0f * eps; }
  static float x0(float xt, float out, float a, float s) { return (xt - s * 0.5f * out) / a; }
  static float eps(float, float out, float, float) { return 0.5f * out; }
};
static_assert(ddpm::Target<ScaledEps>);
}  // namespace

TEST_CASE_TEMPLATE("min-SNR weight derived from x0() equals the published one of each target", P,
                   ddpm::target::Epsilon, ddpm::target::X0, ddpm::target::V) {
  for (double snr : {1e-4, 0.3, 1.0, 4.0, 10.0, 1e4})
    for (double gamma : {1.0, 5.0}) {
      INFO(P::name, " snr=", snr, " gamma=", gamma);
      CHECK(ddpm::detail::min_snr_weight<WithoutMinSnr<P>>(snr, gamma) ==
            doctest::Approx(P::min_snr_weight(snr, gamma)).epsilon(1e-12));
      CHECK(ddpm::detail::min_snr_weight<P>(snr, gamma) == P::min_snr_weight(snr, gamma));
    }
}

TEST_CASE("a float-only target: derived min-SNR weight and element functions through the adapters") {
  // x0 = (xt - s out / 2) / a: d x0 / d out = -s / (2 a), so w = min(snr, gamma) / (4 snr).
  for (double snr : {0.5, 2.0, 8.0})
    CHECK(ddpm::detail::min_snr_weight<ScaledEps>(snr, 5.0) ==
          doctest::Approx(std::min(snr, 5.0) / (4.0 * snr)).epsilon(1e-6));
  // On double the float members are called through float.
  CHECK(ddpm::detail::target_target<ScaledEps, double>(0.1, 0.25, 0.6, 0.8) == 0.5);
  CHECK(ddpm::detail::target_eps<ScaledEps, double>(0.1, 0.5, 0.6, 0.8) == 0.25);
}
