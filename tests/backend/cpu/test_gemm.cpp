// SPDX-License-Identifier: MIT
// tests/backend/cpu/test_gemm.cpp — sgemm (single thread and parallel) against a double-precision
// loop, all transpose combinations, odd sizes, alpha/beta, and thread-count independence.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
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
