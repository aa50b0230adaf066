// SPDX-License-Identifier: MIT
// tests/backend/cpu_ops_support.hpp — the oracle harness of the Ops<Cpu> tests: run one operation on
// the reference backend, on Cpu(1) and on Cpu(2) with the same inputs, compare Cpu(1) with the
// reference within a tolerance and Cpu(2) with Cpu(1) bitwise.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/backend/reference.hpp"

namespace cpu_test {

using Buf = std::vector<float>;
using Outputs = std::vector<Buf>;

/// Concatenates the arguments as text (test names).
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
inline ddpm::backend::Cpu& cpu1() {
  static ddpm::backend::Cpu b(1);
  return b;
}
inline ddpm::backend::Cpu& cpu2() {
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

inline ddpm::View<float> view(Buf& b, ddpm::Shape s) {
  REQUIRE(b.size() == s.numel());
  return ddpm::View<float>(b.data(), s);
}
inline ddpm::ConstView<float> cview(const Buf& b, ddpm::Shape s) {
  REQUIRE(b.size() == s.numel());
  return ddpm::ConstView<float>(b.data(), s);
}

/// Max |got - want| / (atol + rtol |want|) must be <= 1; reports the worst element.
inline void check_close(const Buf& got, const Buf& want, double rtol, double atol,
                        const std::string& what) {
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
  INFO(what, ": worst element ", at, " got ", (got.empty() ? 0.0f : got[at]), " want ",
       (want.empty() ? 0.0f : want[at]), " (error/tolerance ", worst, ")");
  CHECK(worst <= 1.0);
}

inline void check_bitwise(const Buf& a, const Buf& b, const std::string& what) {
  REQUIRE_MESSAGE(a.size() == b.size(), what);
  std::size_t diff = 0, first = a.size();
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) {
      if (first == a.size()) first = i;
      ++diff;
    }
  INFO(what, ": ", diff, " elements differ bitwise between Cpu(1) and Cpu(2), first at ", first);
  CHECK(diff == 0);
}

/// fn(backend) -> Outputs runs an operation on fresh copies of the inputs; the reference result is
/// the oracle (tolerance rtol/atol), and Cpu(1) and Cpu(2) must agree bitwise. Where the CPU has
/// AVX-512, the operation also runs at each kernel level (DDPM_CPU_LEVEL's avx2 and avx512):
/// every level must meet the oracle and give the default level's bytes.
template <class Fn>
void oracle(const std::string& what, Fn&& fn, double rtol = 1e-5, double atol = 1e-6) {
  using ddpm::detail::cpu::CpuLevel;
  const Outputs want = fn(ref_be());
  const Outputs got1 = fn(cpu1());
  const Outputs got2 = fn(cpu2());
  REQUIRE(want.size() == got1.size());
  REQUIRE(want.size() == got2.size());
  for (std::size_t k = 0; k < want.size(); ++k) {
    const std::string name = what + " output " + std::to_string(k);
    check_close(got1[k], want[k], rtol, atol, name);
    check_bitwise(got1[k], got2[k], name);
  }
  if (ddpm::detail::cpu::cpu_level_supported() < CpuLevel::avx512) return;
  for (CpuLevel l : {CpuLevel::avx2, CpuLevel::avx512}) {
    ddpm::detail::cpu::set_cpu_level(l);
    const Outputs got = fn(cpu2());
    ddpm::detail::cpu::reset_cpu_level();
    REQUIRE(got.size() == want.size());
    for (std::size_t k = 0; k < want.size(); ++k) {
      const std::string name = what + " output " + std::to_string(k) + " at kernel level " +
                               std::string(ddpm::detail::cpu::to_string(l));
      check_close(got[k], want[k], rtol, atol, name);
      check_bitwise(got[k], got1[k], name);
    }
  }
}

/// The Ops of a backend object.
template <class Be>
using OpsOf = ddpm::Ops<std::remove_cvref_t<Be>>;

inline const std::vector<std::size_t>& sizes() {
  static const std::vector<std::size_t> s = {0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 100, 1000, 70001, 200003};
  return s;
}

}  // namespace cpu_test
