// SPDX-License-Identifier: MIT
// benchmarks/ops/conv_bench.cpp — GEMM and conv2d kernels of the CPU backend at the U-Net's real
// shapes (configs 'mnist' and 'anime64' of ../shared/ref/bench.py, batch 64), 1 and 2 threads.
// Counter GFLOP/s = direct-convolution (or GEMM) FLOPs / wall time, also for Winograd
// ("effective"); counter GFLOP = the work of one iteration, so rates over the reported CPU time
// (process CPU time: all threads) can be derived on a machine shared with other jobs.
//
//   conv_bench --benchmark_filter='conv/anime64/.*fwd'       # one config, forward only
//   conv_bench --benchmark_filter='gemm/'                     # ddpm sgemm vs Eigen
//   conv_bench --benchmark_filter='conv/.*k3s1.*/auto/'       # dispatcher choice, 3x3 convs
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <benchmark/benchmark.h>

#include "ddpm/backend/cpu/conv.hpp"
#include "ddpm/backend/cpu/gemm.hpp"

namespace {

using ddpm::detail::cpu::Context;
using ddpm::detail::cpu::Conv2dShape;
using ddpm::detail::cpu::ConvAlgo;

std::vector<float> random_vec(std::size_t n, std::uint64_t seed) {
  std::vector<float> v(n);
  std::uint64_t s = seed * 0x9E3779B97F4A7C15ull + 7;
  for (auto& x : v) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    x = static_cast<float>(static_cast<double>(s >> 40) / double(1ull << 24) * 2.0 - 1.0);
  }
  return v;
}

Context& context(int threads) {
  static Context one(1), two(2);
  return threads == 1 ? one : two;
}

// GFLOP/s over wall time, and the work of one iteration (to rate CPU time too).
void set_flops(benchmark::State& state, double flops) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP"] = flops / 1e9;
}

// ------------------------------------------------------------------------------------- GEMM
struct GemmShape {
  const char* what;
  bool ta, tb;
  std::size_t M, N, K;
};

// The products the U-Net runs: per-image im2col GEMMs of the main 3x3 convs (M = c_out,
// N = h w, K = 9 c_in), 1x1 convs, attention (QK^T: n x n x c; AV: c x n x n) and linear layers.
const GemmShape gemm_shapes[] = {
    {"conv-anime64-64x64@64", false, false, 64, 4096, 576},
    {"conv-anime64-128x128@32", false, false, 128, 1024, 1152},
    {"conv-anime64-128x128@16", false, false, 128, 256, 1152},
    {"conv-anime64-256x256@8", false, false, 256, 64, 2304},
    {"conv-mnist-32x32@28", false, false, 32, 784, 288},
    {"conv-mnist-64x64@14", false, false, 64, 196, 576},
    {"conv-1x1-anime64-128x384@16", false, false, 384, 256, 128},
    {"attn-anime64-qk-16x16-c128", true, false, 256, 256, 128},
    {"attn-anime64-av-16x16-c128", false, true, 128, 256, 256},
    {"attn-mnist-qk-7x7-c64", true, false, 49, 49, 64},
    {"linear-anime64-b64-256x256", false, true, 64, 256, 256},
    {"square-1024", false, false, 1024, 1024, 1024},
};

void bm_gemm_ddpm(benchmark::State& state, GemmShape g, int threads) {
  const auto A = random_vec(g.M * g.K, 1), B = random_vec(g.K * g.N, 2);
  std::vector<float> C(g.M * g.N);
  const std::size_t lda = g.ta ? g.M : g.K, ldb = g.tb ? g.K : g.N;
  for (auto _ : state) {
    if (threads == 0) {
      ddpm::detail::cpu::sgemm(g.ta, g.tb, g.M, g.N, g.K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f,
                               C.data(), g.N);
    } else {
      ddpm::detail::cpu::sgemm(context(threads), g.ta, g.tb, g.M, g.N, g.K, 1.0f, A.data(), lda,
                               B.data(), ldb, 0.0f, C.data(), g.N);
    }
    benchmark::DoNotOptimize(C.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, 2.0 * double(g.M) * double(g.N) * double(g.K));
}

void bm_gemm_eigen(benchmark::State& state, GemmShape g) {
  using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const auto A = random_vec(g.M * g.K, 1), B = random_vec(g.K * g.N, 2);
  std::vector<float> C(g.M * g.N);
  Eigen::Map<const Mat> a(A.data(), g.ta ? g.K : g.M, g.ta ? g.M : g.K);
  Eigen::Map<const Mat> b(B.data(), g.tb ? g.N : g.K, g.tb ? g.K : g.N);
  Eigen::Map<Mat> c(C.data(), g.M, g.N);
  for (auto _ : state) {
    if (g.ta && g.tb) {
      c.noalias() = a.transpose() * b.transpose();
    } else if (g.ta) {
      c.noalias() = a.transpose() * b;
    } else if (g.tb) {
      c.noalias() = a * b.transpose();
    } else {
      c.noalias() = a * b;
    }
    benchmark::DoNotOptimize(C.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, 2.0 * double(g.M) * double(g.N) * double(g.K));
}

// ------------------------------------------------------------------------------------- conv
struct ConvCase {
  const char* config;
  std::size_t c_in, c_out, hw, kernel, stride, count;  // count: occurrences in the network
};

// Every distinct conv of the two U-Nets (derived from ../shared/ref/unet.py: conv_in, ResBlock
// 3x3 convs incl. decoder concat inputs, 1x1 skips on channel changes, stride-2 downsamples,
// upsample convs at the doubled resolution, attention qkv/proj 1x1, conv_out), batch 64.
const ConvCase conv_cases[] = {
    // mnist: 1x28x28, base 32, mults 1,2,2, attention at 7 (0.5504 GFLOP/img)
    {"mnist", 1, 32, 28, 3, 1, 1},
    {"mnist", 32, 32, 28, 3, 1, 7},
    {"mnist", 64, 32, 28, 3, 1, 2},
    {"mnist", 96, 32, 28, 3, 1, 1},
    {"mnist", 64, 64, 28, 3, 1, 1},
    {"mnist", 32, 1, 28, 3, 1, 1},
    {"mnist", 32, 64, 14, 3, 1, 1},
    {"mnist", 64, 64, 14, 3, 1, 7},
    {"mnist", 96, 64, 14, 3, 1, 1},
    {"mnist", 128, 64, 14, 3, 1, 2},
    {"mnist", 64, 64, 7, 3, 1, 11},
    {"mnist", 128, 64, 7, 3, 1, 3},
    {"mnist", 32, 32, 28, 3, 2, 1},
    {"mnist", 64, 64, 14, 3, 2, 1},
    {"mnist", 64, 32, 28, 1, 1, 2},
    {"mnist", 96, 32, 28, 1, 1, 1},
    {"mnist", 32, 64, 14, 1, 1, 1},
    {"mnist", 96, 64, 14, 1, 1, 1},
    {"mnist", 128, 64, 14, 1, 1, 2},
    {"mnist", 64, 64, 7, 1, 1, 6},
    {"mnist", 64, 192, 7, 1, 1, 6},
    {"mnist", 128, 64, 7, 1, 1, 3},
    // anime64: 3x64x64, base 64, mults 1,2,2,4, attention at 16 (12.873 GFLOP/img)
    {"anime64", 3, 64, 64, 3, 1, 1},
    {"anime64", 64, 64, 64, 3, 1, 7},
    {"anime64", 128, 64, 64, 3, 1, 2},
    {"anime64", 192, 64, 64, 3, 1, 1},
    {"anime64", 128, 128, 64, 3, 1, 1},
    {"anime64", 64, 3, 64, 3, 1, 1},
    {"anime64", 64, 128, 32, 3, 1, 1},
    {"anime64", 128, 128, 32, 3, 1, 7},
    {"anime64", 192, 128, 32, 3, 1, 1},
    {"anime64", 256, 128, 32, 3, 1, 2},
    {"anime64", 128, 128, 16, 3, 1, 7},
    {"anime64", 256, 128, 16, 3, 1, 2},
    {"anime64", 384, 128, 16, 3, 1, 1},
    {"anime64", 256, 256, 16, 3, 1, 1},
    {"anime64", 128, 256, 8, 3, 1, 1},
    {"anime64", 256, 256, 8, 3, 1, 10},
    {"anime64", 384, 256, 8, 3, 1, 1},
    {"anime64", 512, 256, 8, 3, 1, 2},
    {"anime64", 64, 64, 64, 3, 2, 1},
    {"anime64", 128, 128, 32, 3, 2, 1},
    {"anime64", 128, 128, 16, 3, 2, 1},
    {"anime64", 128, 64, 64, 1, 1, 2},
    {"anime64", 192, 64, 64, 1, 1, 1},
    {"anime64", 64, 128, 32, 1, 1, 1},
    {"anime64", 192, 128, 32, 1, 1, 1},
    {"anime64", 256, 128, 32, 1, 1, 2},
    {"anime64", 128, 128, 16, 1, 1, 5},
    {"anime64", 128, 384, 16, 1, 1, 5},
    {"anime64", 256, 128, 16, 1, 1, 2},
    {"anime64", 384, 128, 16, 1, 1, 1},
    {"anime64", 128, 256, 8, 1, 1, 1},
    {"anime64", 256, 256, 8, 1, 1, 1},
    {"anime64", 256, 768, 8, 1, 1, 1},
    {"anime64", 384, 256, 8, 1, 1, 1},
    {"anime64", 512, 256, 8, 1, 1, 2},
};

constexpr std::size_t batch = 64;

Conv2dShape to_shape(const ConvCase& c) {
  return Conv2dShape{batch, c.c_in, c.hw, c.hw, c.c_out, c.kernel, c.stride, c.kernel / 2};
}

enum class Pass { fwd, bwd_data, bwd_weight };

struct ConvBuffers {
  std::vector<float> x, w, b, y, dx, dw, db;
  explicit ConvBuffers(const Conv2dShape& s)
      : x(random_vec(s.n * s.c_in * s.h * s.w, 1)),
        w(random_vec(s.c_out * s.c_in * s.kernel * s.kernel, 2)),
        b(random_vec(s.c_out, 3)),
        y(random_vec(s.n * s.c_out * s.h_out() * s.w_out(), 4)),
        dx(x.size()),
        dw(w.size()),
        db(b.size()) {
    for (auto& v : w) v *= 0.05f;
  }
};

void bm_conv(benchmark::State& state, ConvCase c, Pass pass, ConvAlgo algo, int threads) {
  const Conv2dShape s = to_shape(c);
  ConvBuffers buf(s);
  Context& ctx = context(threads);
  for (auto _ : state) {
    switch (pass) {
      case Pass::fwd:
        conv2d_forward(ctx, s, buf.x.data(), buf.w.data(), buf.b.data(), buf.y.data(), algo);
        break;
      case Pass::bwd_data:
        conv2d_backward_data(ctx, s, buf.w.data(), buf.y.data(), buf.dx.data(), false, algo);
        break;
      case Pass::bwd_weight:
        conv2d_backward_weight(ctx, s, buf.x.data(), buf.y.data(), buf.dw.data(), buf.db.data(),
                               algo);
        break;
    }
    benchmark::ClobberMemory();
  }
  set_flops(state, s.flops());
  state.counters["net_count"] = double(c.count);
}

std::string conv_name(const ConvCase& c) {
  return std::string(c.config) + "/" + std::to_string(c.c_in) + "-" + std::to_string(c.c_out) +
         "@" + std::to_string(c.hw) + "/k" + std::to_string(c.kernel) + "s" +
         std::to_string(c.stride);
}

struct AlgoName {
  ConvAlgo algo;
  const char* name;
};

const AlgoName algos[] = {
    {ConvAlgo::automatic, "auto"},
    {ConvAlgo::gemm, "gemm"},
    {ConvAlgo::winograd, "winograd"},
    {ConvAlgo::direct, "direct"},
};

void register_all() {
  for (const auto& g : gemm_shapes) {
    const std::string base = std::string("gemm/") + g.what + "/";
    benchmark::RegisterBenchmark((base + "eigen/threads:1").c_str(), bm_gemm_eigen, g)
        ->UseRealTime()
        ->MeasureProcessCPUTime();
    benchmark::RegisterBenchmark((base + "ddpm/threads:1").c_str(), bm_gemm_ddpm, g, 0)
        ->UseRealTime()
        ->MeasureProcessCPUTime();
    benchmark::RegisterBenchmark((base + "ddpm/threads:2").c_str(), bm_gemm_ddpm, g, 2)
        ->UseRealTime()
        ->MeasureProcessCPUTime();
  }
  const std::pair<Pass, const char*> passes[] = {
      {Pass::fwd, "fwd"}, {Pass::bwd_data, "bwd_data"}, {Pass::bwd_weight, "bwd_weight"}};
  for (const auto& c : conv_cases) {
    for (const auto& [pass, pname] : passes) {
      for (const auto& a : algos) {
        const bool wino_ok = c.kernel == 3 && c.stride == 1;
        if ((a.algo == ConvAlgo::winograd || a.algo == ConvAlgo::direct) && !wino_ok) continue;
        for (int threads : {1, 2}) {
          const std::string name = "conv/" + conv_name(c) + "/" + pname + "/" + a.name +
                                   "/threads:" + std::to_string(threads);
          benchmark::RegisterBenchmark(name.c_str(), bm_conv, c, pass, a.algo, threads)
              ->UseRealTime()
              ->MeasureProcessCPUTime()
              ->Unit(benchmark::kMillisecond);
        }
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
