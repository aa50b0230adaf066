// SPDX-License-Identifier: MIT
// tests/backend/cpu/test_gemm.cpp — sgemm (single thread and parallel) against a double-precision
// loop, all transpose combinations, odd sizes, alpha/beta, and thread-count independence.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "ddpm/backend/cpu/gemm.hpp"

namespace {

using ddpm::detail::cpu::Context;

std::vector<float> random_vec(std::size_t n, std::uint64_t seed) {
  std::vector<float> v(n);
  std::uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& x : v) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    x = static_cast<float>(static_cast<double>(s >> 40) / double(1ull << 24) * 2.0 - 1.0);
  }
  return v;
}

struct GemmCase {
  bool ta, tb;
  std::size_t M, N, K;
  float alpha, beta;
};

// Max |got - want| / (max |want| + tiny) over the matrix, with want computed in double.
double check_gemm(const GemmCase& g, const std::vector<float>& A, std::size_t lda,
                  const std::vector<float>& B, std::size_t ldb, const std::vector<float>& C0,
                  const std::vector<float>& C, std::size_t ldc) {
  double max_err = 0.0, max_ref = 1e-30;
  std::vector<double> want(g.M * g.N);
  for (std::size_t i = 0; i < g.M; ++i) {
    for (std::size_t j = 0; j < g.N; ++j) {
      double acc = 0.0;
      for (std::size_t k = 0; k < g.K; ++k) {
        const double a = g.ta ? A[k * lda + i] : A[i * lda + k];
        const double b = g.tb ? B[j * ldb + k] : B[k * ldb + j];
        acc += a * b;
      }
      double w = double(g.alpha) * acc;
      if (g.beta != 0.0f) w += double(g.beta) * C0[i * ldc + j];
      want[i * g.N + j] = w;
      max_ref = std::max(max_ref, std::abs(w));
    }
  }
  for (std::size_t i = 0; i < g.M; ++i)
    for (std::size_t j = 0; j < g.N; ++j)
      max_err = std::max(max_err, std::abs(double(C[i * ldc + j]) - want[i * g.N + j]));
  return max_err / max_ref;
}

void run_case(const GemmCase& g) {
  // Padded leading dimensions so the strides are exercised.
  const std::size_t a_rows = g.ta ? g.K : g.M, a_cols = g.ta ? g.M : g.K;
  const std::size_t b_rows = g.tb ? g.N : g.K, b_cols = g.tb ? g.K : g.N;
  const std::size_t lda = a_cols + 3, ldb = b_cols + 5, ldc = g.N + 2;
  const auto A = random_vec(std::max<std::size_t>(a_rows * lda, 1), 1 + g.M);
  const auto B = random_vec(std::max<std::size_t>(b_rows * ldb, 1), 2 + g.N);
  auto C0 = random_vec(std::max<std::size_t>(g.M * ldc, 1), 3 + g.K);
  if (g.beta == 0.0f) {  // beta == 0: C must not be read, NaN included
    for (auto& x : C0) x = std::numeric_limits<float>::quiet_NaN();
  }
  auto C1 = C0;
  ddpm::detail::cpu::sgemm(g.ta, g.tb, g.M, g.N, g.K, g.alpha, A.data(), lda, B.data(), ldb, g.beta,
                           C1.data(), ldc);
  const double tol = 2e-6 * std::sqrt(double(std::max<std::size_t>(g.K, 1))) + 1e-6;
  CHECK(check_gemm(g, A, lda, B, ldb, C0, C1, ldc) < tol);
  // Padding columns of C untouched.
  for (std::size_t i = 0; i < g.M; ++i)
    for (std::size_t j = g.N; j < ldc && i * ldc + j < C1.size(); ++j) {
      const float a = C1[i * ldc + j], b = C0[i * ldc + j];
      CHECK((std::memcmp(&a, &b, sizeof(float)) == 0));
    }
  // Parallel overload, 1 and 2 threads: bitwise equal to the single-thread result.
  for (int threads : {1, 2}) {
    Context ctx(threads);
    auto C2 = C0;
    ddpm::detail::cpu::sgemm(ctx, g.ta, g.tb, g.M, g.N, g.K, g.alpha, A.data(), lda, B.data(), ldb,
                             g.beta, C2.data(), ldc);
    CHECK(std::memcmp(C1.data(), C2.data(), C1.size() * sizeof(float)) == 0);
  }
}

}  // namespace

TEST_CASE("cpu sgemm: all transposes, odd sizes, alpha/beta, vs double loops") {
  const std::size_t sizes[][3] = {{1, 1, 1},    {5, 7, 3},     {6, 16, 8},   {7, 17, 9},
                                  {13, 33, 65}, {64, 49, 288}, {150, 70, 300}, {145, 2050, 20},
                                  {31, 40, 0},  {3, 300, 513}};
  for (const auto& s : sizes) {
    for (int t = 0; t < 4; ++t) {
      for (const auto& ab : {std::pair{1.0f, 0.0f}, std::pair{0.5f, 1.0f}, std::pair{-2.0f, 0.25f}}) {
        const GemmCase g{(t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2], ab.first, ab.second};
        CAPTURE(g.ta);
        CAPTURE(g.tb);
        CAPTURE(g.M);
        CAPTURE(g.N);
        CAPTURE(g.K);
        CAPTURE(g.alpha);
        CAPTURE(g.beta);
        run_case(g);
      }
    }
  }
}

TEST_CASE("cpu sgemm: large parallel product equals the single-thread product bitwise") {
  const std::size_t M = 300, N = 1000, K = 600;
  const auto A = random_vec(M * K, 11), B = random_vec(K * N, 12);
  std::vector<float> c1(M * N), c2(M * N, 1.0f), c3(M * N, 2.0f);
  ddpm::detail::cpu::sgemm(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, c1.data(), N);
  Context one(1), two(2);
  ddpm::detail::cpu::sgemm(one, false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f,
                           c2.data(), N);
  ddpm::detail::cpu::sgemm(two, false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f,
                           c3.data(), N);
  CHECK(std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(c1.data(), c3.data(), c1.size() * sizeof(float)) == 0);
  const GemmCase g{false, false, M, N, K, 1.0f, 0.0f};
  CHECK(check_gemm(g, A, K, B, N, c1, c1, N) < 1e-5);
}

TEST_CASE("cpu sgemm: every kernel level this CPU supports gives the AVX2 kernels' bytes") {
  using ddpm::detail::cpu::CpuLevel;
  const CpuLevel best = ddpm::detail::cpu::cpu_level_supported();
  MESSAGE("kernel levels here: best ", std::string(ddpm::detail::cpu::to_string(best)),
          std::string(best == CpuLevel::avx512 ? " (the AVX-512 tiles run)"
                                               : " (no AVX-512 on this CPU: only the AVX2 level runs)"));
  std::vector<CpuLevel> levels;
  if (best >= CpuLevel::avx2) levels.push_back(CpuLevel::avx2);
  if (best >= CpuLevel::avx512) levels.push_back(CpuLevel::avx512);
  const std::size_t sizes[][3] = {{1, 1, 1}, {6, 16, 8}, {7, 17, 9}, {12, 32, 4}, {13, 33, 65},
                                  {18, 48, 7}, {64, 49, 288}, {150, 70, 300}, {145, 2050, 20}};
  for (const auto& s : sizes)
    for (int t = 0; t < 4; ++t)
      for (float beta : {0.0f, 0.5f}) {
        const GemmCase g{(t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2], 1.5f, beta};
        CAPTURE(g.M);
        CAPTURE(g.N);
        CAPTURE(g.K);
        CAPTURE(t);
        CAPTURE(beta);
        const std::size_t lda = g.ta ? g.M : g.K, ldb = g.tb ? g.K : g.N;
        const auto A = random_vec(std::max<std::size_t>(g.M * g.K, 1), 21 + g.M);
        const auto B = random_vec(std::max<std::size_t>(g.K * g.N, 1), 22 + g.N);
        const auto C0 = random_vec(g.M * g.N, 23);
        std::vector<std::vector<float>> out;
        for (CpuLevel l : levels) {
          ddpm::detail::cpu::set_cpu_level(l);
          auto C = C0;
          Context two(2);
          ddpm::detail::cpu::sgemm(two, g.ta, g.tb, g.M, g.N, g.K, g.alpha, A.data(), lda, B.data(),
                                   ldb, g.beta, C.data(), g.N);
          CHECK(check_gemm(g, A, lda, B, ldb, C0, C, g.N) < 2e-6 * std::sqrt(double(g.K)) + 1e-6);
          out.push_back(std::move(C));
        }
        ddpm::detail::cpu::reset_cpu_level();
        for (std::size_t i = 1; i < out.size(); ++i)
          CHECK(std::memcmp(out[0].data(), out[i].data(), out[0].size() * sizeof(float)) == 0);
      }
}

TEST_CASE("cpu kernel level: DDPM_CPU_LEVEL values are parsed and checked") {
  using namespace ddpm::detail::cpu;
  if (cpu_level_supported() >= CpuLevel::avx2) {
    CHECK(parse_cpu_level("avx2") == CpuLevel::avx2);
    CHECK_THROWS_AS((void)parse_cpu_level("portable"), std::invalid_argument);
  }
  CHECK_THROWS_WITH_AS((void)parse_cpu_level("sse9"), doctest::Contains("DDPM_CPU_LEVEL"),
                       std::invalid_argument);
  if (cpu_level_supported() == CpuLevel::avx512)
    CHECK(parse_cpu_level("avx512") == CpuLevel::avx512);
  else
    CHECK_THROWS_WITH_AS((void)parse_cpu_level("avx512"), doctest::Contains("more than this CPU"),
                         std::invalid_argument);
}
