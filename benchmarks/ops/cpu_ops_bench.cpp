// SPDX-License-Identifier: MIT
// benchmarks/ops/cpu_ops_bench.cpp — Ops<backend::Cpu> throughput at the activation shapes of the
// mnist and anime64 configs (batch 64): GB/s of the memory-bound ops next to a memory-copy ceiling
// measured in the same program, GFLOP/s of attention.
//
//   ./cpu_ops_bench --benchmark_filter=anime --benchmark_repetitions=5
//                   --benchmark_report_aggregates_only=true
//
// Bytes counted per op (float32): the minimum traffic of one pass, i.e. every input read once and
// every output written once (GroupNorm forward: x + y; backward: x + dy + dx; concat: a + b + out;
// upsample forward: x + 4x; adam: p, grad, m, v read and p, m, v written). The /threads:N suffix
// is the Cpu(N) arena size, not Google Benchmark threading.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "ddpm/backend/cpu.hpp"

namespace {

using ddpm::ConstView;
using ddpm::Shape;
using ddpm::Tensor;
using ddpm::View;
using Cpu = ddpm::backend::Cpu;
using Ops = ddpm::Ops<Cpu>;
using T = Tensor<float, Cpu>;

/// A tensor of pseudo-random values in [lo, hi) (xorshift: setup stays cheap for 16.7M elements).
T make(Shape s, std::uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  T t(s);
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (std::size_t i = 0; i < t.size(); ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    t.data()[i] = lo + (hi - lo) * float(double(x >> 40) * (1.0 / 16777216.0));
  }
  return t;
}

Cpu& backend(int threads) {
  static Cpu one(1), two(2);
  return threads == 1 ? one : two;
}

void set_bytes(benchmark::State& st, double bytes_per_iter) {
  st.SetBytesProcessed(std::int64_t(double(st.iterations()) * bytes_per_iter));
}
void set_flops(benchmark::State& st, double flops_per_iter) {
  st.counters["GFLOP/s"] = benchmark::Counter(flops_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

struct Act {
  std::string config;
  Shape s;
};
const std::vector<Act>& activations() {
  static const std::vector<Act> a = {
      {"mnist", {64, 32, 28, 28}},  {"mnist", {64, 64, 14, 14}},  {"mnist", {64, 64, 7, 7}},
      {"anime", {64, 64, 64, 64}},  {"anime", {64, 128, 32, 32}}, {"anime", {64, 128, 16, 16}},
      {"anime", {64, 256, 8, 8}},
  };
  return a;
}
std::string shape_name(const Shape& s) {
  return std::to_string(s.n()) + "x" + std::to_string(s.c()) + "x" + std::to_string(s.h()) + "x" +
         std::to_string(s.w());
}

// ------------------------------------------------------------------ copy ceilings
void bm_memcpy_1thread(benchmark::State& st, Shape s) {
  T a = make(s, 1), b = make(s, 2);
  for (auto _ : st) {
    std::memcpy(b.data(), a.data(), a.size() * sizeof(float));
    benchmark::ClobberMemory();
  }
  set_bytes(st, 8.0 * double(a.size()));
}
void bm_copy(benchmark::State& st, Shape s, int threads) {
  T a = make(s, 1), b = make(s, 2);
  Cpu& be = backend(threads);
  for (auto _ : st) {
    Ops::copy(be, a.cview(), b.view());
    benchmark::ClobberMemory();
  }
  set_bytes(st, 8.0 * double(a.size()));
}

// ------------------------------------------------------------------ element-wise / norm
void bm_group_norm_fwd(benchmark::State& st, Shape s, bool silu, int threads) {
  T x = make(s, 1), y(s), g = make({s.c()}, 2, 0.5f, 1.5f), b = make({s.c()}, 3);
  T mean({s.n(), 32}), rstd({s.n(), 32});
  Cpu& be = backend(threads);
  for (auto _ : st) {
    Ops::group_norm_forward(be, x.cview(), g.cview(), b.cview(), y.view(), mean.view(), rstd.view(), 32,
                            1e-5, silu);
    benchmark::ClobberMemory();
  }
  set_bytes(st, 8.0 * double(x.size()));
}
void bm_group_norm_bwd(benchmark::State& st, Shape s, bool silu, int threads) {
  T x = make(s, 1), y(s), g = make({s.c()}, 2, 0.5f, 1.5f), b = make({s.c()}, 3);
  T mean({s.n(), 32}), rstd({s.n(), 32}), dy = make(s, 4), dx(s), dg({s.c()}), db({s.c()});
  Cpu& be = backend(threads);
  Ops::group_norm_forward(be, x.cview(), g.cview(), b.cview(), y.view(), mean.view(), rstd.view(), 32, 1e-5,
                          silu);
  for (auto _ : st) {
    Ops::group_norm_backward(be, x.cview(), g.cview(), b.cview(), mean.cview(), rstd.cview(), dy.cview(),
                             dx.view(), dg.view(), db.view(), 32, silu, false);
    benchmark::ClobberMemory();
  }
  set_bytes(st, 12.0 * double(x.size()));
}
void bm_silu_fwd(benchmark::State& st, Shape s, int threads) {
  T x = make(s, 1, -6.0f, 6.0f), y(s);
  Cpu& be = backend(threads);
  for (auto _ : st) {
    Ops::silu_forward(be, x.cview(), y.view());
    benchmark::ClobberMemory();
  }
  set_bytes(st, 8.0 * double(x.size()));
}
void bm_silu_bwd(benchmark::State& st, Shape s, int threads) {
  T x = make(s, 1, -6.0f, 6.0f), dy = make(s, 2), dx(s);
  Cpu& be = backend(threads);
  for (auto _ : st) {
    Ops::silu_backward(be, x.cview(), dy.cview(), dx.view(), false);
    benchmark::ClobberMemory();
  }
  set_bytes(st, 12.0 * double(x.size()));
}
void bm_add(benchmark::State& st, Shape s, int threads) {
  T a = make(s, 1), b = make(s, 2), o(s);
  Cpu& be = backend(threads);
  for (auto _ : st) {
    Ops::add(be, a.cview(), b.cview(), o.view());
    benchmark::ClobberMemory();
  }
  set_bytes(st, 12.0 * double(a.size()));
}
void bm_dropout_fwd(benchmark::State& st, Shape s, int threads) {
  T x = make(s, 1), y(s);
  Cpu& be = backend(threads);
  std::uint64_t step = 0;
  for (auto _ : st) {
    Ops::dropout_forward(be, x.cview(), y.view(), 0.1, ddpm::Rng{7}, ++step);
    benchmark::ClobberMemory();
  }
  set_bytes(st, 8.0 * double(x.size()));
}
void bm_concat(benchmark::State& st, Shape sa, std::size_t cb, int threads) {
  const Shape sb{sa.n(), cb, sa.h(), sa.w()}, so{sa.n(), sa.c() + cb, sa.h(), sa.w()};
  T a = make(sa, 1), b = make(sb, 2), o(so);
  Cpu& be = backend(threads);
  for (auto _ : st) {
    Ops::concat_channels(be, a.cview(), b.cview(), o.view());
    benchmark::ClobberMemory();
  }
  set_bytes(st, 8.0 * double(o.size()));
}
void bm_upsample_fwd(benchmark::State& st, Shape s, int threads) {
  const Shape s2{s.n(), s.c(), 2 * s.h(), 2 * s.w()};
  T x = make(s, 1), y(s2);
  Cpu& be = backend(threads);
  for (auto _ : st) {
    Ops::upsample2x_forward(be, x.cview(), y.view());
    benchmark::ClobberMemory();
  }
  set_bytes(st, 20.0 * double(x.size()));
}
void bm_upsample_bwd(benchmark::State& st, Shape s, int threads) {
  const Shape s2{s.n(), s.c(), 2 * s.h(), 2 * s.w()};
  T dy = make(s2, 1), dx(s);
  Cpu& be = backend(threads);
  for (auto _ : st) {
    Ops::upsample2x_backward(be, dy.cview(), dx.view(), false);
    benchmark::ClobberMemory();
  }
  set_bytes(st, 20.0 * double(dx.size()));
}
void bm_adam(benchmark::State& st, std::size_t n, int threads) {
  T p = make({n}, 1), g = make({n}, 2, -0.01f, 0.01f), m = make({n}, 3, -1e-3f, 1e-3f);
  T v = make({n}, 4, 0.0f, 1e-6f);
  Cpu& be = backend(threads);
  ddpm::AdamStep s;
  s.weight_decay = 0.01;
  for (auto _ : st) {
    ++s.step;
    Ops::adam_step(be, p.view(), g.cview(), m.view(), v.view(), s);
    benchmark::ClobberMemory();
  }
  set_bytes(st, 28.0 * double(n));
}

// ------------------------------------------------------------------ attention
double attention_gemm_flops(const Shape& s) {  // one P x P x C GEMM per sample, times 2 flops
  const double P = double(s.h() * s.w());
  return 2.0 * double(s.n()) * P * P * double(s.c());
}
void bm_attention_fwd(benchmark::State& st, Shape s, int threads) {
  const std::size_t P = s.h() * s.w();
  T qkv = make({s.n(), 3 * s.c(), s.h(), s.w()}, 1), probs({s.n(), P, P}), out(s);
  Cpu& be = backend(threads);
  for (auto _ : st) {
    Ops::attention_forward(be, qkv.cview(), probs.view(), out.view());
    benchmark::ClobberMemory();
  }
  set_flops(st, 2.0 * attention_gemm_flops(s));
}
void bm_attention_bwd(benchmark::State& st, Shape s, int threads) {
  const std::size_t P = s.h() * s.w();
  T qkv = make({s.n(), 3 * s.c(), s.h(), s.w()}, 1), probs({s.n(), P, P}), out(s), dout = make(s, 2);
  T dqkv({s.n(), 3 * s.c(), s.h(), s.w()});
  Cpu& be = backend(threads);
  Ops::attention_forward(be, qkv.cview(), probs.view(), out.view());
  for (auto _ : st) {
    Ops::attention_backward(be, qkv.cview(), probs.cview(), dout.cview(), dqkv.view());
    benchmark::ClobberMemory();
  }
  set_flops(st, 4.0 * attention_gemm_flops(s));
}

/// With --benchmark_repetitions, the "min" aggregate is the least disturbed run (the machine is
/// shared: medians and means include other processes' time).
double min_of(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

template <class F, class... A>
void reg(const std::string& name, F f, A... args) {
  for (int threads : {1, 2})
    benchmark::RegisterBenchmark((name + "/threads:" + std::to_string(threads)).c_str(),
                                 [=](benchmark::State& st) { f(st, args..., threads); })
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime()
        ->ComputeStatistics("min", min_of);
}

void register_all() {
  for (const Act& a : activations()) {
    const std::string tag = a.config + "/" + shape_name(a.s);
    benchmark::RegisterBenchmark(("memcpy_1thread/" + tag).c_str(),
                                 [s = a.s](benchmark::State& st) { bm_memcpy_1thread(st, s); })
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime()
        ->ComputeStatistics("min", min_of);
    reg("copy/" + tag, bm_copy, a.s);
    reg("group_norm_fwd/" + tag, bm_group_norm_fwd, a.s, false);
    reg("group_norm_silu_fwd/" + tag, bm_group_norm_fwd, a.s, true);
    reg("group_norm_bwd/" + tag, bm_group_norm_bwd, a.s, false);
    reg("group_norm_silu_bwd/" + tag, bm_group_norm_bwd, a.s, true);
    reg("silu_fwd/" + tag, bm_silu_fwd, a.s);
    reg("silu_bwd/" + tag, bm_silu_bwd, a.s);
    reg("add/" + tag, bm_add, a.s);
    reg("dropout_fwd/" + tag, bm_dropout_fwd, a.s);
    if (a.s.h() < 64) {  // the decoder upsamples every level below the top
      reg("upsample_fwd/" + tag, bm_upsample_fwd, a.s);
      reg("upsample_bwd/" + tag, bm_upsample_bwd, a.s);
    }
  }
  // Decoder concatenations [h, skip] (channels of h + channels of the skip).
  reg("concat/mnist/64x(64+64)x7x7", bm_concat, Shape{64, 64, 7, 7}, std::size_t{64});
  reg("concat/mnist/64x(64+32)x14x14", bm_concat, Shape{64, 64, 14, 14}, std::size_t{32});
  reg("concat/mnist/64x(64+32)x28x28", bm_concat, Shape{64, 64, 28, 28}, std::size_t{32});
  reg("concat/mnist/64x(32+32)x28x28", bm_concat, Shape{64, 32, 28, 28}, std::size_t{32});
  reg("concat/anime/64x(64+64)x64x64", bm_concat, Shape{64, 64, 64, 64}, std::size_t{64});
  reg("concat/anime/64x(128+128)x32x32", bm_concat, Shape{64, 128, 32, 32}, std::size_t{128});
  reg("concat/anime/64x(256+256)x8x8", bm_concat, Shape{64, 256, 8, 8}, std::size_t{256});
  // Optimiser over all parameters of each config.
  reg("adam_step/mnist/1624577", bm_adam, std::size_t{1624577});
  reg("adam_step/anime/17220000", bm_adam, std::size_t{17220000});
  // Attention blocks.
  reg("attention_fwd/mnist/64x64x7x7", bm_attention_fwd, Shape{64, 64, 7, 7});
  reg("attention_bwd/mnist/64x64x7x7", bm_attention_bwd, Shape{64, 64, 7, 7});
  reg("attention_fwd/anime/64x128x16x16", bm_attention_fwd, Shape{64, 128, 16, 16});
  reg("attention_bwd/anime/64x128x16x16", bm_attention_bwd, Shape{64, 128, 16, 16});
  reg("attention_fwd/anime/64x256x8x8", bm_attention_fwd, Shape{64, 256, 8, 8});
  reg("attention_bwd/anime/64x256x8x8", bm_attention_bwd, Shape{64, 256, 8, 8});
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
