// SPDX-License-Identifier: MIT
// tests/backend/test_cpu_diffusion_ops.cpp — Ops<Cpu> dropout (vectorised Philox), normals,
// lincomb, diffusion_loss for every target x loss policy (run on xsimd batches) and predict,
// against Ops<Reference>, plus bitwise identity of Cpu(1) and Cpu(2).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "backend/cpu_ops_support.hpp"
#include "ddpm/diffusion/loss/huber.hpp"
#include "ddpm/diffusion/loss/l1.hpp"
#include "ddpm/diffusion/loss/l2.hpp"
#include "ddpm/diffusion/target/epsilon.hpp"
#include "ddpm/diffusion/target/v.hpp"
#include "ddpm/diffusion/target/x0.hpp"

using namespace cpu_test;
using ddpm::ConstView;
using ddpm::Shape;
using ddpm::View;

TEST_CASE("cpu ops: dropout masks are the reference's exactly (forward, backward, accumulate)") {
  for (std::size_t n : sizes()) {
    const Shape s{n};
    const Buf x = random(n, 70), dx0 = random(n, 71);
    for (double p : {0.0, 0.1, 0.5, 0.9, 1.0}) {
      for (std::uint64_t seed : {0ull, 12345ull, 0xFFFFFFFF00000001ull}) {
        const ddpm::Rng rng{seed};
        const std::uint64_t stream = ddpm::rng_stream::make(ddpm::rng_stream::dropout, 77);
        const std::string tag = cat(" n=", n, " p=", p, " seed=", seed);
        oracle("dropout_forward" + tag, [&](auto& be) {
          Buf y(n, 9.0f);
          OpsOf<decltype(be)>::dropout_forward(be, cview(x, s), view(y, s), p, rng, stream);
          return Outputs{y};
        }, 0.0, 1e-30);
        for (bool acc : {false, true})
          oracle("dropout_backward acc=" + std::to_string(acc) + tag, [&](auto& be) {
            Buf dx = dx0;
            OpsOf<decltype(be)>::dropout_backward(be, cview(x, s), view(dx, s), p, rng, stream, acc);
            return Outputs{dx};
          }, 0.0, 1e-30);
      }
    }
  }
}

TEST_CASE("cpu ops: dropout_threshold reproduces uniform(i) >= p for every 24-bit value near it") {
  for (double p : {0.0, 1e-12, 0.1, 0.25, 0.5, 1.0 / 3.0, 0.999999, 1.0}) {
    const std::uint32_t t = ddpm::detail::cpu::dropout_threshold(p);
    for (std::int64_t k = std::int64_t(t) - 3; k <= std::int64_t(t) + 3; ++k) {
      if (k < 0 || k >= (1 << 24)) continue;
      const bool keep = ddpm::Rng::to_uniform(std::uint32_t(k) << 8) >= p;
      CHECK(keep == (std::uint32_t(k) >= t));
    }
  }
}

TEST_CASE("cpu ops: fill_normal equals the reference (any offset)") {
  for (std::size_t n : sizes())
    for (std::uint64_t index0 : {0ull, 3ull, 1000001ull}) {
      const Shape s{n};
      oracle("fill_normal n=" + std::to_string(n) + " index0=" + std::to_string(index0), [&](auto& be) {
        Buf o(n);
        OpsOf<decltype(be)>::fill_normal(be, view(o, s), ddpm::Rng{5}, 3, index0);
        return Outputs{o};
      }, 0.0, 1e-30);
    }
}

TEST_CASE("cpu ops: lincomb with per-sample coefficients") {
  for (const Shape& s : {Shape{1, 1, 1, 1}, Shape{3, 1, 7, 7}, Shape{2, 3, 5, 5}, Shape{64, 1, 28, 28},
                         Shape{5, 3, 17, 19}}) {
    const std::size_t N = s.n();
    const Buf a = random(s.numel(), 80), b = random(s.numel(), 81), z = random(s.numel(), 82);
    const Buf ca = random(N, 83), cb = random(N, 84), cz = random(N, 85);
    const Shape sn{N};
    for (bool with_z : {false, true})
      oracle("lincomb z=" + std::to_string(with_z) + " " + s.str(), [&](auto& be) {
        Buf o(s.numel());
        OpsOf<decltype(be)>::lincomb(be, view(o, s), cview(ca, sn), cview(a, s), cview(cb, sn), cview(b, s),
                                     with_z ? cview(cz, sn) : ConstView<float>{},
                                     with_z ? cview(z, s) : ConstView<float>{});
        return Outputs{o};
      }, 1e-5, 1e-6);
  }
}

TEST_CASE_TEMPLATE("cpu ops: diffusion_loss and predict run the target policy on SIMD batches", P,
                   ddpm::target::Epsilon, ddpm::target::X0, ddpm::target::V) {
  for (const Shape& s : {Shape{1, 1, 1, 1}, Shape{3, 1, 7, 7}, Shape{2, 3, 5, 5}, Shape{64, 1, 28, 28},
                         Shape{4, 3, 16, 16}}) {
    const std::size_t N = s.n();
    const Shape sn{N};
    const Buf out = random(s.numel(), 90, -2.0f, 2.0f), x0 = random(s.numel(), 91);
    const Buf eps = random(s.numel(), 92, -2.0f, 2.0f), w = random(N, 93, 0.5f, 2.0f);
    Buf a = random(N, 94, 0.05f, 0.99f), sd(N);
    for (std::size_t n = 0; n < N; ++n) sd[n] = std::sqrt(1.0f - a[n] * a[n]);
    const std::string tag = cat(" ", P::name, " ", s.str());

    auto loss_case = [&](const auto& loss, const std::string& lname) {
      for (bool weighted : {false, true}) {
        const std::string what = cat("diffusion_loss ", lname, " w=", weighted, tag);
        double value[5];  // reference, Cpu(1), Cpu(2), then per kernel level where AVX-512 runs
        int k = 0;
        oracle(what, [&](auto& be) {
          Buf d(s.numel(), 5.0f);
          value[k++] = OpsOf<decltype(be)>::template diffusion_loss<P>(
              be, loss, cview(out, s), cview(x0, s), cview(eps, s), cview(a, sn), cview(sd, sn),
              weighted ? cview(w, sn) : ConstView<float>{}, view(d, s));
          return Outputs{d};
        }, 1e-5, 1e-9);
        INFO(what, ": loss ref ", value[0], " cpu ", value[1]);
        CHECK(std::abs(value[1] - value[0]) <= 1e-6 * std::abs(value[0]) + 1e-9);
        CHECK(std::memcmp(&value[1], &value[2], sizeof(double)) == 0);
        for (int l = 3; l < k; ++l) CHECK(std::memcmp(&value[1], &value[l], sizeof(double)) == 0);
      }
    };
    loss_case(ddpm::loss::L2{}, "l2");
    loss_case(ddpm::loss::L1{}, "l1");
    loss_case(ddpm::loss::Huber{0.5f}, "huber");

    for (bool clip : {false, true})
      for (bool want_eps : {false, true})
        oracle("predict clip=" + std::to_string(clip) + " eps=" + std::to_string(want_eps) + tag, [&](auto& be) {
          Buf px(s.numel()), pe(want_eps ? s.numel() : 0);
          OpsOf<decltype(be)>::template predict<P>(be, cview(x0, s), cview(out, s), cview(a, sn), cview(sd, sn),
                                                   clip, view(px, s),
                                                   want_eps ? view(pe, s) : View<float>{});
          return Outputs{px, pe};
        }, 1e-5, 1e-5);
  }
}

namespace {
/// A user's loss written for float only (no template members): log(cosh(d)).
struct LogCosh {
  static constexpr std::string_view name() { return "logcosh"; }
  float value(float d) const { return std::log(std::cosh(d)); }
  float grad(float d) const { return std::tanh(d); }
};
static_assert(ddpm::Loss<LogCosh>);
/// A user's target written for float only: out = 2 eps.
struct ScaledEps {
  static constexpr std::string_view name = "scaled-eps";
  static float target(float, float eps, float, float) { return 2.0f * eps; }
  static float x0(float xt, float out, float a, float s) { return (xt - s * 0.5f * out) / a; }
  static float eps(float, float out, float, float) { return 0.5f * out; }
};
static_assert(ddpm::Target<ScaledEps>);
}  // namespace

TEST_CASE("cpu ops: a float-only target and loss run lane by lane and match the reference") {
  for (const Shape& s : {Shape{1, 1, 1, 1}, Shape{3, 1, 7, 7}, Shape{4, 3, 16, 16}}) {
    const std::size_t N = s.n();
    const Shape sn{N};
    const Buf out = random(s.numel(), 190, -2.0f, 2.0f), x0 = random(s.numel(), 191);
    const Buf eps = random(s.numel(), 192, -2.0f, 2.0f);
    Buf a = random(N, 194, 0.05f, 0.99f), sd(N);
    for (std::size_t n = 0; n < N; ++n) sd[n] = std::sqrt(1.0f - a[n] * a[n]);
    double value[5];  // reference, Cpu(1), Cpu(2), then per kernel level where AVX-512 runs
    int k = 0;
    // The element values are the float functions' own, lane by lane (up to the compiler's FMA
    // contraction of the scalar code around them); the loss differs also in the summation order.
    oracle("diffusion_loss scaled-eps logcosh " + s.str(), [&](auto& be) {
      Buf d(s.numel(), 5.0f);
      value[k++] = OpsOf<decltype(be)>::template diffusion_loss<ScaledEps>(
          be, LogCosh{}, cview(out, s), cview(x0, s), cview(eps, s), cview(a, sn), cview(sd, sn),
          ConstView<float>{}, view(d, s));
      return Outputs{d};
    }, 1e-6, 1e-9);
    CHECK(std::abs(value[1] - value[0]) <= 1e-6 * std::abs(value[0]));
    for (int l = 3; l < k; ++l) CHECK(std::memcmp(&value[1], &value[l], sizeof(double)) == 0);
    for (bool clip : {false, true})
      oracle("predict scaled-eps clip=" + std::to_string(clip) + " " + s.str(), [&](auto& be) {
        Buf px(s.numel()), pe(s.numel());
        OpsOf<decltype(be)>::template predict<ScaledEps>(be, cview(x0, s), cview(out, s), cview(a, sn),
                                                         cview(sd, sn), clip, view(px, s), view(pe, s));
        return Outputs{px, pe};
      }, 1e-6, 1e-6);
  }
}
