// SPDX-License-Identifier: MIT
// tests/backend/cpu/test_conv.cpp — conv2d forward / backward-data / backward-weight of the CPU
// backend against double-precision loops, for every algorithm, on odd shapes; 1 and 2 threads must
// give bitwise the same results.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include <doctest/doctest.h>

#include "ddpm/backend/cpu/conv.hpp"
#include "ddpm/backend/cpu/winograd.hpp"

namespace {

using ddpm::detail::cpu::Context;
using ddpm::detail::cpu::Conv2dShape;
using ddpm::detail::cpu::ConvAlgo;

std::vector<float> random_vec(std::size_t n, std::uint64_t seed) {
  std::vector<float> v(n);
  std::uint64_t s = seed * 0x9E3779B97F4A7C15ull + 12345;
  for (auto& x : v) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    x = static_cast<float>(static_cast<double>(s >> 40) / double(1ull << 24) * 2.0 - 1.0);
  }
  return v;
}

struct Data {
  Conv2dShape s;
  std::vector<float> x, w, b, dy;
  std::size_t x_size() const { return s.n * s.c_in * s.h * s.w; }
  std::size_t y_size() const { return s.n * s.c_out * s.h_out() * s.w_out(); }
  std::size_t w_size() const { return s.c_out * s.c_in * s.kernel * s.kernel; }
  explicit Data(const Conv2dShape& shape) : s(shape) {
    x = random_vec(x_size(), 1);
    w = random_vec(w_size(), 2);
    b = random_vec(s.c_out, 3);
    dy = random_vec(y_size(), 4);
  }
};

// Input index for output position (o) and kernel offset (k), or -1 outside the image.
std::ptrdiff_t in_index(std::size_t o, std::size_t k, const Conv2dShape& s, std::size_t extent) {
  const std::ptrdiff_t i = std::ptrdiff_t(o * s.stride + k) - std::ptrdiff_t(s.pad);
  return (i >= 0 && i < std::ptrdiff_t(extent)) ? i : -1;
}

std::vector<double> ref_forward(const Data& d, bool with_bias) {
  const auto& s = d.s;
  const std::size_t ho = s.h_out(), wo = s.w_out(), k = s.kernel;
  std::vector<double> y(d.y_size());
  for (std::size_t n = 0; n < s.n; ++n)
    for (std::size_t co = 0; co < s.c_out; ++co)
      for (std::size_t oh = 0; oh < ho; ++oh)
        for (std::size_t ow = 0; ow < wo; ++ow) {
          double acc = with_bias ? d.b[co] : 0.0;
          for (std::size_t ci = 0; ci < s.c_in; ++ci)
            for (std::size_t kh = 0; kh < k; ++kh) {
              const auto ih = in_index(oh, kh, s, s.h);
              if (ih < 0) continue;
              for (std::size_t kw = 0; kw < k; ++kw) {
                const auto iw = in_index(ow, kw, s, s.w);
                if (iw < 0) continue;
                acc += double(d.x[((n * s.c_in + ci) * s.h + ih) * s.w + iw]) *
                       double(d.w[((co * s.c_in + ci) * k + kh) * k + kw]);
              }
            }
          y[((n * s.c_out + co) * ho + oh) * wo + ow] = acc;
        }
  return y;
}

std::vector<double> ref_backward_data(const Data& d) {
  const auto& s = d.s;
  const std::size_t ho = s.h_out(), wo = s.w_out(), k = s.kernel;
  std::vector<double> dx(d.x_size(), 0.0);
  for (std::size_t n = 0; n < s.n; ++n)
    for (std::size_t co = 0; co < s.c_out; ++co)
      for (std::size_t oh = 0; oh < ho; ++oh)
        for (std::size_t ow = 0; ow < wo; ++ow) {
          const double g = d.dy[((n * s.c_out + co) * ho + oh) * wo + ow];
          for (std::size_t ci = 0; ci < s.c_in; ++ci)
            for (std::size_t kh = 0; kh < k; ++kh) {
              const auto ih = in_index(oh, kh, s, s.h);
              if (ih < 0) continue;
              for (std::size_t kw = 0; kw < k; ++kw) {
                const auto iw = in_index(ow, kw, s, s.w);
                if (iw < 0) continue;
                dx[((n * s.c_in + ci) * s.h + ih) * s.w + iw] +=
                    g * double(d.w[((co * s.c_in + ci) * k + kh) * k + kw]);
              }
            }
        }
  return dx;
}

void ref_backward_weight(const Data& d, std::vector<double>& dw, std::vector<double>& db) {
  const auto& s = d.s;
  const std::size_t ho = s.h_out(), wo = s.w_out(), k = s.kernel;
  dw.assign(d.w_size(), 0.0);
  db.assign(s.c_out, 0.0);
  for (std::size_t n = 0; n < s.n; ++n)
    for (std::size_t co = 0; co < s.c_out; ++co)
      for (std::size_t oh = 0; oh < ho; ++oh)
        for (std::size_t ow = 0; ow < wo; ++ow) {
          const double g = d.dy[((n * s.c_out + co) * ho + oh) * wo + ow];
          db[co] += g;
          for (std::size_t ci = 0; ci < s.c_in; ++ci)
            for (std::size_t kh = 0; kh < k; ++kh) {
              const auto ih = in_index(oh, kh, s, s.h);
              if (ih < 0) continue;
              for (std::size_t kw = 0; kw < k; ++kw) {
                const auto iw = in_index(ow, kw, s, s.w);
                if (iw < 0) continue;
                dw[((co * s.c_in + ci) * k + kh) * k + kw] +=
                    g * double(d.x[((n * s.c_in + ci) * s.h + ih) * s.w + iw]);
              }
            }
        }
}

// max |got - (base + want)| / max(max |base + want|, 1e-30)
double rel_err(const std::vector<float>& got, const std::vector<double>& want,
               const std::vector<float>* base = nullptr) {
  double err = 0.0, ref = 1e-30;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double w = want[i] + (base ? double((*base)[i]) : 0.0);
    ref = std::max(ref, std::abs(w));
    err = std::max(err, std::abs(double(got[i]) - w));
  }
  return err / ref;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

double tolerance(ConvAlgo algo, const Conv2dShape& s) {
  const double gemm_tol = 2e-6 * std::sqrt(double(s.c_in * s.kernel * s.kernel + s.c_out)) + 1e-6;
  // Winograd F(4x4, 3x3): transforms with entries up to 8 cost about one decimal digit.
  return algo == ConvAlgo::gemm || algo == ConvAlgo::direct ? gemm_tol : std::max(gemm_tol, 1e-4);
}

void check_shape(const Conv2dShape& s, ConvAlgo algo) {
  CAPTURE(s.n);
  CAPTURE(s.c_in);
  CAPTURE(s.h);
  CAPTURE(s.w);
  CAPTURE(s.c_out);
  CAPTURE(s.kernel);
  CAPTURE(s.stride);
  CAPTURE(s.pad);
  CAPTURE(static_cast<int>(algo));
  const Data d(s);
  const double tol = tolerance(algo, s);
  Context one(1), two(2);

  // forward, bias null and not null
  for (bool with_bias : {false, true}) {
    CAPTURE(with_bias);
    const auto want = ref_forward(d, with_bias);
    std::vector<float> y1(d.y_size(), std::nanf("")), y2(d.y_size(), 7.0f);
    conv2d_forward(one, s, d.x.data(), d.w.data(), with_bias ? d.b.data() : nullptr, y1.data(), algo);
    conv2d_forward(two, s, d.x.data(), d.w.data(), with_bias ? d.b.data() : nullptr, y2.data(), algo);
    CHECK(rel_err(y1, want) < tol);
    CHECK(same_bits(y1, y2));
  }
  // backward data, accumulate off and on
  {
    const auto want = ref_backward_data(d);
    for (bool acc : {false, true}) {
      CAPTURE(acc);
      const auto base = random_vec(d.x_size(), 9);
      std::vector<float> dx1 = acc ? base : std::vector<float>(d.x_size(), std::nanf(""));
      std::vector<float> dx2 = acc ? base : std::vector<float>(d.x_size(), 3.0f);
      conv2d_backward_data(one, s, d.w.data(), d.dy.data(), dx1.data(), acc, algo);
      conv2d_backward_data(two, s, d.w.data(), d.dy.data(), dx2.data(), acc, algo);
      CHECK(rel_err(dx1, want, acc ? &base : nullptr) < tol);
      CHECK(same_bits(dx1, dx2));
    }
  }
  // backward weight (always accumulates), db null and not null
  {
    std::vector<double> want_dw, want_db;
    ref_backward_weight(d, want_dw, want_db);
    const auto dw0 = random_vec(d.w_size(), 5), db0 = random_vec(s.c_out, 6);
    for (bool with_db : {false, true}) {
      CAPTURE(with_db);
      auto dw1 = dw0, dw2 = dw0, db1 = db0, db2 = db0;
      conv2d_backward_weight(one, s, d.x.data(), d.dy.data(), dw1.data(),
                             with_db ? db1.data() : nullptr, algo);
      conv2d_backward_weight(two, s, d.x.data(), d.dy.data(), dw2.data(),
                             with_db ? db2.data() : nullptr, algo);
      const double tol_w = tol * std::sqrt(double(s.n * s.h_out() * s.w_out()) / 64.0 + 1.0);
      CHECK(rel_err(dw1, want_dw, &dw0) < tol_w);
      CHECK(same_bits(dw1, dw2));
      if (with_db) {
        CHECK(rel_err(db1, want_db, &db0) < 1e-6);
        CHECK(same_bits(db1, db2));
      } else {
        CHECK(same_bits(db1, db0));
      }
    }
  }
}

const Conv2dShape shapes[] = {
    // n, c_in, h, w, c_out, kernel, stride, pad
    {2, 3, 7, 7, 5, 3, 1, 1},      // tiny, Cin=3, H=W=7
    {1, 1, 28, 28, 32, 3, 1, 1},   // mnist conv_in, batch 1
    {2, 32, 28, 28, 1, 3, 1, 1},   // mnist conv_out (Cout=1)
    {2, 64, 8, 8, 3, 3, 1, 1},     // Cout=3
    {2, 13, 9, 11, 10, 3, 1, 1},   // odd channel counts, non-square
    {2, 9, 7, 7, 10, 3, 1, 1},     // C not divisible by 8, 7x7
    {1, 64, 16, 16, 64, 3, 1, 1},  // a real ResBlock conv, batch 1
    {3, 24, 14, 14, 20, 3, 1, 1},  // partial 4x4 tiles (14 = 3*4 + 2)
    {1, 3, 40, 40, 5, 3, 1, 1},    // output columns split into chunks
    {2, 16, 14, 14, 16, 3, 2, 1},  // stride-2 downsample
    {2, 20, 8, 8, 24, 3, 2, 1},    // stride-2, even size
    {1, 17, 5, 5, 7, 3, 2, 1},     // stride-2, odd size
    {1, 5, 40, 37, 7, 3, 2, 1},    // stride-2, wide rows (vectorised gather), odd width
    {2, 6, 9, 37, 2, 3, 1, 1},     // Cout=2, rows of 4 vectors + a partial one
    {3, 12, 7, 7, 20, 1, 1, 0},    // 1x1 skip / attention projection
    {2, 96, 14, 14, 64, 1, 1, 0},  // 1x1 with decoder concat input
    {2, 4, 9, 9, 6, 5, 1, 2},      // 5x5 pad 2 (general path)
    {2, 5, 6, 6, 4, 3, 1, 0},      // 3x3 pad 0
    {3, 12, 64, 64, 8, 1, 1, 0},   // 1x1, long K (n h w = 12288): dw in 3 K chunks
    {2, 4, 128, 128, 6, 3, 2, 1},  // stride 2, K = 8192, 3 column panels: 2 K chunks
};

}  // namespace

TEST_CASE("cpu conv2d: gemm algorithm vs double loops, 1 and 2 threads bitwise equal") {
  for (const auto& s : shapes) check_shape(s, ConvAlgo::gemm);
}

TEST_CASE("cpu conv2d: winograd algorithm vs double loops, 1 and 2 threads bitwise equal") {
  for (const auto& s : shapes) check_shape(s, ConvAlgo::winograd);
}

TEST_CASE("cpu conv2d: direct algorithm vs double loops, 1 and 2 threads bitwise equal") {
  for (const auto& s : shapes) check_shape(s, ConvAlgo::direct);
}

TEST_CASE("cpu conv2d: automatic algorithm vs double loops, 1 and 2 threads bitwise equal") {
  for (const auto& s : shapes) check_shape(s, ConvAlgo::automatic);
}

TEST_CASE("cpu conv2d: every kernel level this CPU supports: vs double loops, and the same bytes") {
  using ddpm::detail::cpu::CpuLevel;
  const CpuLevel best = ddpm::detail::cpu::cpu_level_supported();
  if (best < CpuLevel::avx512) {
    MESSAGE("no AVX-512F on this CPU: only the AVX2 kernel level runs (the other tests)");
    return;
  }
  for (ConvAlgo algo : {ConvAlgo::gemm, ConvAlgo::winograd, ConvAlgo::direct}) {
    for (const auto& s : shapes) {
      CAPTURE(static_cast<int>(algo));
      CAPTURE(s.c_in);
      CAPTURE(s.c_out);
      CAPTURE(s.h);
      const Data d(s);
      std::vector<float> out[2][3];
      int k = 0;
      for (CpuLevel l : {CpuLevel::avx2, CpuLevel::avx512}) {
        ddpm::detail::cpu::set_cpu_level(l);
        if (l == CpuLevel::avx512) check_shape(s, algo);  // the AVX2 level runs in the tests above
        Context two(2);
        out[k][0].assign(d.y_size(), 0.0f);
        conv2d_forward(two, s, d.x.data(), d.w.data(), d.b.data(), out[k][0].data(), algo);
        out[k][1].assign(d.x_size(), 0.0f);
        conv2d_backward_data(two, s, d.w.data(), d.dy.data(), out[k][1].data(), false, algo);
        out[k][2] = random_vec(d.w_size(), 5);
        conv2d_backward_weight(two, s, d.x.data(), d.dy.data(), out[k][2].data(), nullptr, algo);
        ++k;
      }
      ddpm::detail::cpu::reset_cpu_level();
      for (int i = 0; i < 3; ++i) CHECK(same_bits(out[0][i], out[1][i]));
    }
  }
}

TEST_CASE("cpu winograd weight gradient: many blocks and chunks: double loops' result, and the "
          "same bytes for 1, 2 and 3 threads and every kernel level") {
  // Small blocks and forced chunk counts give many blocks and chunks (10 blocks of 16 tiles in 8
  // chunks of 1 or 2; 21 tiles: no multiple of the 16-column panels; 3 chunks of unequal length),
  // so chunk sums and their reduction run on a shape the double loops check quickly.
  using ddpm::detail::cpu::CpuLevel;
  namespace wg = ddpm::detail::cpu::winograd;
  const Conv2dShape s{10, 20, 14, 13, 22, 3, 1, 1};  // 4 x 4 tiles per image, 160 in all
  const wg::Problem p{s.n, s.c_in, s.h, s.w, s.c_out};
  REQUIRE(p.tiles() == 160);
  const Data d(s);
  std::vector<double> want_dw, want_db;
  ref_backward_weight(d, want_dw, want_db);
  const auto dw0 = random_vec(d.w_size(), 5);
  std::vector<CpuLevel> levels{CpuLevel::avx2};
  const CpuLevel best = ddpm::detail::cpu::cpu_level_supported();
  if (best >= CpuLevel::avx512) levels.push_back(CpuLevel::avx512);
  if (best < CpuLevel::avx2) levels.clear();  // portable build: one run at the scalar level
  const std::size_t cases[][2] = {{16, 8}, {21, 3}, {48, 0}, {0, 0}};  // tiles per block, chunks
  for (const auto& c : cases) {
    const std::size_t block = c[0], chunks = c[1];
    CAPTURE(block);
    CAPTURE(chunks);
    std::vector<std::vector<float>> out;
    const auto run = [&](int threads) {
      Context ctx(threads);
      auto dw = dw0;
      wg::weight_gradient(ctx, p, d.x.data(), d.dy.data(), dw.data(), block, chunks);
      return dw;
    };
    if (levels.empty())
      for (int threads : {1, 2, 3}) out.push_back(run(threads));
    for (CpuLevel l : levels) {
      ddpm::detail::cpu::set_cpu_level(l);
      for (int threads : {1, 2, 3}) out.push_back(run(threads));
    }
    ddpm::detail::cpu::reset_cpu_level();
    const double tol = 1e-4 * std::sqrt(double(s.n * s.h * s.w) / 64.0 + 1.0);
    CHECK(rel_err(out[0], want_dw, &dw0) < tol);
    for (std::size_t i = 1; i < out.size(); ++i) CHECK(same_bits(out[0], out[i]));
  }
}

TEST_CASE("cpu conv2d: Conv2dShape output sizes") {
  CHECK(Conv2dShape{1, 1, 28, 28, 1, 3, 1, 1}.h_out() == 28);
  CHECK(Conv2dShape{1, 1, 28, 28, 1, 3, 2, 1}.h_out() == 14);
  CHECK(Conv2dShape{1, 1, 7, 9, 1, 3, 2, 1}.w_out() == 5);
  CHECK(Conv2dShape{1, 1, 7, 7, 1, 1, 1, 0}.w_out() == 7);
}

TEST_CASE("cpu conv2d: no allocation in steady state (scratch grows once)") {
  // One thread, so the same worker runs every task and the second call of each kind must find
  // all its scratch already large enough.
  Context ctx(1);
  for (const Conv2dShape& s : {Conv2dShape{2, 16, 12, 12, 24, 3, 1, 1},
                               Conv2dShape{2, 16, 12, 12, 24, 3, 2, 1},
                               Conv2dShape{2, 16, 12, 12, 24, 1, 1, 0},
                               Conv2dShape{2, 3, 12, 12, 24, 3, 1, 1},
                               Conv2dShape{2, 24, 12, 12, 3, 3, 1, 1}}) {
    const Data d(s);
    std::vector<float> y(d.y_size()), dx(d.x_size()), dw(d.w_size()), db(s.c_out);
    auto all = [&] {
      conv2d_forward(ctx, s, d.x.data(), d.w.data(), d.b.data(), y.data());
      conv2d_backward_data(ctx, s, d.w.data(), d.dy.data(), dx.data(), false);
      conv2d_backward_weight(ctx, s, d.x.data(), d.dy.data(), dw.data(), db.data());
    };
    all();
    const std::size_t before = ddpm::detail::tensor_allocation_count().load();
    all();
    all();
    CHECK(ddpm::detail::tensor_allocation_count().load() == before);
  }
}
