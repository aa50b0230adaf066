// SPDX-License-Identifier: MIT
// tests/cuda/cuda_test_support.hpp — the oracle harness of the GPU tests: an operation is written
// once against an Env (which hands out tensors of its backend, filled from host buffers), run on
// the reference backend, on the SIMD CPU backend and on backend::Cuda, and the CUDA outputs are
// compared with both within a tolerance. The CUDA run is repeated and must be bitwise identical
// (the backend's reductions are deterministic).
//
// Tolerances must hold for a real GPU: nvcc contracts a * b + c into one FMA (no rounding of the
// product), so an element that is a sum of products differs from the host's by up to half an ulp of
// the largest product, which is much more than an ulp of the result when terms cancel. A tolerance
// is therefore never (rtol > 0, atol = 0) for such an element; (0, 0) only for exact operations
// (copies, masks, gathers).
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/backend/cuda.hpp"
#include "ddpm/backend/reference.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace cuda_test {

using Buf = std::vector<float>;
using IBuf = std::vector<std::int32_t>;
using Outputs = std::vector<Buf>;

template <class... A>
std::string cat(const A&... a) {
  std::ostringstream os;
  (os << ... << a);
  return os.str();
}

inline ddpm::backend::Reference& ref_be() {
  static ddpm::backend::Reference b;
  return b;
}
inline ddpm::backend::Cuda& cuda_be() {
  static ddpm::backend::Cuda b;  // created on first use, after main() found a device
  return b;
}
/// The SIMD CPU backend with 2 threads (as the CI machines have).
inline ddpm::backend::Cpu& cpu_be() {
  static ddpm::backend::Cpu b(2);
  return b;
}

/// n uniform floats in [lo, hi), a pure function of (n, seed).
inline Buf random(std::size_t n, std::uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Buf v(n);
  const ddpm::Rng rng{seed};
  for (std::size_t i = 0; i < n; ++i) v[i] = lo + (hi - lo) * float(rng.uniform(ddpm::rng_stream::user, i));
  return v;
}

/// Tensors of backend Be made from host buffers; the ones created by out()/inout() are the outputs,
/// read back in creation order by results().
template <class Be>
class Env {
 public:
  using backend = Be;
  using ops = ddpm::Ops<Be>;
  explicit Env(Be& b) : be(b) {}

  /// A read-only input with the contents of `b`.
  ddpm::ConstView<float> in(const Buf& b, ddpm::Shape s) { return make(b, s).cview(); }
  ddpm::ConstView<std::int32_t> in_i32(const IBuf& b) {
    auto& t = ints_.emplace_back(ddpm::Shape{b.size()});
    if (!b.empty()) t.copy_from(b);
    return t.cview();
  }
  /// An output with initial contents `b` (for accumulating outputs and in-place operations).
  ddpm::View<float> inout(const Buf& b, ddpm::Shape s) {
    auto& t = make(b, s);
    outs_.push_back(&t);
    return t.view();
  }
  /// An output whose initial contents are garbage (the operation must overwrite every element).
  ddpm::View<float> out(ddpm::Shape s) { return inout(Buf(s.numel(), 12345.0f), s); }

  /// A scalar result (sum_squares, diffusion_loss).
  void value(double v) { values_.push_back(v); }
  const std::vector<double>& values() const { return values_; }

  Outputs results() const {
    Outputs r;
    for (const auto* t : outs_) r.push_back(t->to_vector());
    return r;
  }

  Be& be;

 private:
  ddpm::Tensor<float, Be>& make(const Buf& b, ddpm::Shape s) {
    REQUIRE(b.size() == s.numel());
    auto& t = store_.emplace_back(s);
    if (!b.empty()) t.copy_from(b);
    return t;
  }
  std::deque<ddpm::Tensor<float, Be>> store_;
  std::deque<ddpm::Tensor<std::int32_t, Be>> ints_;
  std::vector<const ddpm::Tensor<float, Be>*> outs_;
  std::vector<double> values_;
};

/// Max |got - want| / (atol + rtol |want|) (NaN matches NaN, inf matches inf): <= 1 is a pass.
inline double worst_error(const Buf& got, const Buf& want, double rtol, double atol, std::size_t* where = nullptr) {
  double worst = 0.0;
  for (std::size_t i = 0; i < got.size() && i < want.size(); ++i) {
    const double g = got[i], w = want[i];
    double e;
    if (std::isnan(w) || std::isnan(g))
      e = (std::isnan(w) && std::isnan(g)) ? 0.0 : 1e30;
    else if (std::isinf(w) || std::isinf(g))
      e = g == w ? 0.0 : 1e30;
    else
      e = std::abs(g - w) / (atol + rtol * std::abs(w));
    if (e > worst) {
      worst = e;
      if (where) *where = i;
    }
  }
  return worst;
}

/// Max |got - want| / (atol + rtol |want|) must be <= 1 (NaN matches NaN, inf matches inf).
inline void check_close(const Buf& got, const Buf& want, double rtol, double atol, const std::string& what) {
  REQUIRE_MESSAGE(got.size() == want.size(), what);
  double worst = 0.0;
  std::size_t at = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    double e;
    if (std::isnan(w) || std::isnan(g))
      e = (std::isnan(w) && std::isnan(g)) ? 0.0 : 1e30;
    else if (std::isinf(w) || std::isinf(g))
      e = g == w ? 0.0 : 1e30;
    else
      e = std::abs(g - w) / (atol + rtol * std::abs(w));
    if (e > worst) {
      worst = e;
      at = i;
    }
  }
  INFO(what, ": worst element ", at, " of ", got.size(), ": got ", (got.empty() ? 0.0f : got[at]), " want ",
       (want.empty() ? 0.0f : want[at]), " (error/tolerance ", worst, ")");
  CHECK(worst <= 1.0);
}

inline std::size_t bitwise_differences(const Buf& a, const Buf& b) {
  std::size_t diff = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) ++diff;
  return diff + (a.size() > b.size() ? a.size() - b.size() : b.size() - a.size());
}

/// fn(env) runs one operation through an Env on the tag `gpu`. The reference result is the oracle
/// (tolerance rtol/atol); the CPU backend's result is a second one: CUDA must be within twice the
/// tolerance of it, plus 2 ulp (both differ from the reference by up to the tolerance; an exact
/// operation may still round once differently on the CPU). Two CUDA runs must agree bitwise.
template <class Fn>
void oracle_on(ddpm::backend::Cuda& gpu, const std::string& what, Fn&& fn, double rtol = 1e-5, double atol = 1e-6) {
  Env<ddpm::backend::Reference> er(ref_be());
  fn(er);
  const Outputs want = er.results();
  Env<ddpm::backend::Cpu> ec(cpu_be());
  fn(ec);
  const Outputs cpu = ec.results();
  Env<ddpm::backend::Cuda> e1(gpu);
  fn(e1);
  const Outputs got = e1.results();
  Env<ddpm::backend::Cuda> e2(gpu);
  fn(e2);
  const Outputs again = e2.results();
  REQUIRE(want.size() == got.size());
  REQUIRE(cpu.size() == got.size());
  REQUIRE(got.size() == again.size());
  REQUIRE(er.values().size() == e1.values().size());
  REQUIRE(ec.values().size() == e1.values().size());
  const double crtol = 2 * rtol + 2.4e-7, catol = 2 * atol + 1e-7;
  // Scalar results (sum_squares, the loss): the CPU backend sums in float lanes of 32 terms per
  // 1024-element block (blocks added in double), up to ~2e-6 relative; CUDA and the reference sum
  // in double. So the CPU comparison of a value allows 4e-6 relative at least.
  const double vrtol = (2 * rtol > 4e-6 ? 2 * rtol : 4e-6) + 2.4e-7;
  for (std::size_t k = 0; k < er.values().size(); ++k) {
    const double w = er.values()[k], g = e1.values()[k], c = ec.values()[k];
    INFO(what, " value ", k, ": cuda ", g, " reference ", w, " cpu ", c, ", cuda again ", e2.values()[k]);
    CHECK(std::abs(g - w) <= atol + rtol * std::abs(w));
    CHECK(std::abs(g - c) <= catol + vrtol * std::abs(c));
    CHECK(std::memcmp(&g, &e2.values()[k], sizeof(double)) == 0);
  }
  for (std::size_t k = 0; k < want.size(); ++k) {
    const std::string name = what + " output " + std::to_string(k);
    check_close(got[k], want[k], rtol, atol, name + " (cuda vs reference)");
    {
      // When the CPU backend disagrees with the reference too, say so: then the CPU is at fault.
      std::size_t at = 0;
      const double cpu_vs_ref = worst_error(cpu[k], want[k], rtol, atol, &at);
      INFO(name, ": cpu vs reference error/tolerance ", cpu_vs_ref, " at ", at);
      check_close(got[k], cpu[k], crtol, catol, name + " (cuda vs cpu)");
    }
    INFO(name, ": two CUDA runs differ bitwise");
    CHECK(bitwise_differences(got[k], again[k]) == 0);
  }
}

/// oracle_on with the default CUDA tag (device 0, fp32, default chunk budget).
template <class Fn>
void oracle(const std::string& what, Fn&& fn, double rtol = 1e-5, double atol = 1e-6) {
  oracle_on(cuda_be(), what, std::forward<Fn>(fn), rtol, atol);
}

/// The Ops of an Env.
template <class E>
using OpsOf = typename std::remove_cvref_t<E>::ops;

}  // namespace cuda_test
