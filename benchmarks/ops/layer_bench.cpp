// SPDX-License-Identifier: MIT
// benchmarks/ops/layer_bench.cpp — every layer of the U-Net (nn:: layers and blocks on
// backend::Cpu), forward and backward, at the shapes the three configs really use (mnist,
// manga32, anime64; batch 64), next to the machine's ceilings measured by the same program.
//
//   layer_bench --benchmark_filter='^mnist/'                  # one config
//   layer_bench --benchmark_filter='^ceiling/'                # sgemm (ddpm, Eigen) and memory copy
//   layer_bench --benchmark_filter='^anime64/res_block' --threads=1 --batch=16
//   layer_bench --benchmark_format=json --benchmark_out=layers.json
//
// The shape lists are derived from the UNetConfig (the same walk as benchmarks/flops.hpp and
// ../shared/ref/unet.py), each distinct layer once, with counter `count` = its occurrences in the
// network. Names: <config>/<layer>/<shape>/<pass>, pass = fwd (training forward where it
// differs), bwd (the layer's whole backward: input and parameter gradients; the first conv has
// no input gradient, as in the U-Net), infer (no-grad forward, blocks only).
// Counters:
//   GFLOP     printed as a rate (GFLOP/s), for compute-bound layers: 2 x MACs of the convolutions,
//             linears and attention matmuls the layer runs (backward counted as 2 x forward,
//             recomputation not counted)
//   GB        printed as a rate (GB/s), for memory-bound layers (GroupNorm, dropout): minimum
//             traffic of one pass, every input read once and every output written once (fwd 8,
//             bwd 12 bytes per element; the copy ceiling counts read + write the same way)
//   %ceiling  GFLOP/s against ddpm's sgemm, or GB/s against its threaded memory copy, both
//             measured at start-up by this program (best call over about a second each, printed
//             in the context; --no_ceiling_probe to skip). Winograd convolutions do fewer
//             multiplications than they are credited with, so a 3x3 conv can exceed 100 %; so
//             does anything when the probe itself was disturbed by other processes.
// The layer benchmarks are function templates over the backend (registered here for backend::Cpu);
// each iteration ends with the backend's synchronize() where it has one.
// Flags of this program (before the Google Benchmark ones): --threads=N (Cpu(N), default 2),
// --batch=N (default 64), --no_ceiling_probe.
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/backend/cpu/gemm.hpp"
#include "ddpm/layers/attention.hpp"
#include "ddpm/layers/conv2d.hpp"
#include "ddpm/layers/dropout.hpp"
#include "ddpm/layers/group_norm.hpp"
#include "ddpm/layers/linear.hpp"
#include "ddpm/layers/upsample.hpp"
#include "ddpm/nn/unet/attn_block.hpp"
#include "ddpm/nn/unet/config.hpp"
#include "ddpm/nn/unet/res_block.hpp"
#include "ddpm/nn/unet/workspace.hpp"

namespace {

using ddpm::ConstView;
using ddpm::ConvGeometry;
using ddpm::Shape;
using ddpm::View;
using Cpu = ddpm::backend::Cpu;
using T = float;
template <class B>
using Tensor = ddpm::Tensor<T, B>;
namespace nn = ddpm::nn;

int g_threads = 2;
std::size_t g_batch = 64;
double g_sgemm_gflops = 0, g_copy_gbps = 0;  // ceilings probed at start-up (0 = not probed)

/// The backend every benchmark of B uses (Cpu(--threads); a default-constructed B otherwise).
template <class B>
B& backend() {
  static B be = [] {
    if constexpr (std::is_same_v<B, Cpu>)
      return Cpu(g_threads);
    else
      return B{};
  }();
  return be;
}

/// Waits for the backend's queued work (CUDA); nothing to wait for on the CPU.
template <class B>
void sync(const B& be) {
  if constexpr (requires { be.synchronize(); }) be.synchronize();
}

/// Pseudo-random values in [lo, hi) (xorshift: cheap for tens of millions of elements).
template <class B>
void fill(Tensor<B>& t, std::uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::vector<float> host;
  float* out = nullptr;
  if constexpr (std::is_same_v<B, Cpu>) {
    out = t.data();
  } else {
    host.resize(t.size());
    out = host.data();
  }
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (std::size_t i = 0; i < t.size(); ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[i] = lo + (hi - lo) * float(double(x >> 40) * (1.0 / 16777216.0));
  }
  if constexpr (!std::is_same_v<B, Cpu>) t.copy_from(host);
}
template <class B>
Tensor<B> random(Shape s, std::uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Tensor<B> t(s);
  fill<B>(t, seed, lo, hi);
  return t;
}

/// Runs the benchmark loop over body(); returns its wall time (for the %ceiling counter: Google
/// Benchmark 1.7 gives a benchmark no access to its own timer).
template <class B, class F>
double timed_loop(benchmark::State& st, F&& body) {
  const B& be = backend<B>();
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : st) {
    body();
    sync(be);  // each iteration ends when the device is done
    benchmark::ClobberMemory();
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Counters GFLOP (printed as a rate, GFLOP/s) and %ceiling of the sgemm ceiling.
void set_flops(benchmark::State& st, double flops, double seconds) {
  st.counters["GFLOP"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  if (g_sgemm_gflops > 0 && seconds > 0)
    st.counters["%ceiling"] =
        flops * double(st.iterations()) / seconds * 1e-9 / g_sgemm_gflops * 100.0;
}
/// Counters GB (printed as a rate, GB/s) and %ceiling of the memory-copy ceiling.
void set_bytes(benchmark::State& st, double bytes, double seconds) {
  st.counters["GB"] =
      benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  if (g_copy_gbps > 0 && seconds > 0)
    st.counters["%ceiling"] =
        bytes * double(st.iterations()) / seconds * 1e-9 / g_copy_gbps * 100.0;
}

// ------------------------------------------------------------------ the layers of one config
struct Uses {
  // key -> occurrences; keys are the layer's sizes
  std::map<std::tuple<std::size_t, std::size_t, std::size_t, std::size_t, std::size_t, bool>, int>
      conv;  // cin, cout, k, stride, res_in, need_dx
  std::map<std::tuple<std::size_t, std::size_t, bool>, int> norm;              // c, res, silu
  std::map<std::pair<std::size_t, std::size_t>, int> dropout;                  // c, res
  std::map<std::pair<std::size_t, std::size_t>, int> linear;                   // in, out
  std::map<std::pair<std::size_t, std::size_t>, int> attention;                // c, res
  std::map<std::pair<std::size_t, std::size_t>, int> upsample;                 // c, res_in
  std::map<std::tuple<std::size_t, std::size_t, std::size_t>, int> res_block;  // cin, cout, res
  std::map<std::pair<std::size_t, std::size_t>, int> attn_block;               // c, res
};

/// Walks the U-Net of ../shared/ref/unet.py (as benchmarks/flops.hpp does) and records every layer.
Uses walk(const nn::UNetConfig& c) {
  Uses u;
  const std::size_t E = c.emb_dim(), base = c.base_channels;
  auto res_block = [&](std::size_t cin, std::size_t cout, std::size_t r) {
    ++u.res_block[{cin, cout, r}];
    ++u.norm[{cin, r, true}];
    ++u.conv[{cin, cout, 3, 1, r, true}];
    ++u.linear[{E, cout}];
    ++u.norm[{cout, r, true}];
    if (c.dropout > 0) ++u.dropout[{cout, r}];
    ++u.conv[{cout, cout, 3, 1, r, true}];
    if (cin != cout) ++u.conv[{cin, cout, 1, 1, r, true}];
  };
  auto attn = [&](std::size_t ch, std::size_t r) {
    ++u.attn_block[{ch, r}];
    ++u.norm[{ch, r, false}];
    ++u.conv[{ch, 3 * ch, 1, 1, r, true}];
    ++u.attention[{ch, r}];
    ++u.conv[{ch, ch, 1, 1, r, true}];
  };
  ++u.linear[{base, E}];
  ++u.linear[{E, E}];
  std::size_t res = c.image_size, ch = base;
  ++u.conv[{c.in_channels, base, 3, 1, res, false}];
  std::vector<std::size_t> skips{base};
  const std::size_t L = c.channel_mults.size();
  for (std::size_t i = 0; i < L; ++i) {
    for (std::size_t b = 0; b < c.num_res_blocks; ++b) {
      res_block(ch, base * c.channel_mults[i], res);
      ch = base * c.channel_mults[i];
      if (c.has_attention(res)) attn(ch, res);
      skips.push_back(ch);
    }
    if (i + 1 != L) {
      ++u.conv[{ch, ch, 3, 2, res, true}];
      skips.push_back(ch);
      res /= 2;
    }
  }
  res_block(ch, ch, res);
  attn(ch, res);
  res_block(ch, ch, res);
  for (std::size_t i = L; i-- > 0;) {
    for (std::size_t b = 0; b <= c.num_res_blocks; ++b) {
      const std::size_t sk = skips.back();
      skips.pop_back();
      res_block(ch + sk, base * c.channel_mults[i], res);
      ch = base * c.channel_mults[i];
      if (c.has_attention(res)) attn(ch, res);
    }
    if (i != 0) {
      ++u.upsample[{ch, res}];
      ++u.conv[{ch, ch, 3, 1, 2 * res, true}];  // the Upsample's conv, also listed on its own
      res *= 2;
    }
  }
  ++u.norm[{ch, res, true}];
  ++u.conv[{ch, c.output_channels(), 3, 1, res, true}];
  return u;
}

// ------------------------------------------------------------------ benchmarks
enum class Pass { fwd, bwd, infer };

double conv_flops(std::size_t cin, std::size_t cout, std::size_t k, std::size_t res_out) {
  return 2.0 * double(g_batch * cout * res_out * res_out) * double(cin * k * k);
}

template <class B>
void bm_conv(benchmark::State& st, std::size_t cin, std::size_t cout, std::size_t k,
             std::size_t stride, std::size_t res, bool need_dx, Pass pass) {
  ddpm::nn::ParamInit init(ddpm::Rng{1});
  nn::Conv2d<T, B> conv(cin, cout, ConvGeometry{k, stride, k / 2}, backend<B>(), init);
  const Tensor<B> x = random<B>(Shape{g_batch, cin, res, res}, 2);
  const Shape ys = conv.output_shape(x.shape());
  Tensor<B> y(ys);
  const double f = conv_flops(cin, cout, k, ys.h());
  if (pass == Pass::fwd) {
    const double sec = timed_loop<B>(st, [&] { conv.forward(x.cview(), y.view()); });
    set_flops(st, f, sec);
  } else {
    const Tensor<B> dy = random<B>(ys, 3);
    Tensor<B> dx(need_dx ? x.shape() : Shape{});
    const double sec = timed_loop<B>(
        st, [&] { conv.backward(x.cview(), dy.cview(), need_dx ? dx.view() : View<T>{}, false); });
    set_flops(st, need_dx ? 2 * f : f, sec);
  }
}

template <class B>
void bm_norm(benchmark::State& st, std::size_t c, std::size_t res, bool silu, std::size_t groups,
             Pass pass) {
  ddpm::nn::ParamInit init(ddpm::Rng{1});
  nn::GroupNorm<T, B> gn(c, groups, backend<B>(), init);
  const Tensor<B> x = random<B>(Shape{g_batch, c, res, res}, 2);
  Tensor<B> y(x.shape());
  gn.forward(x.cview(), y.view(), silu);
  if (pass == Pass::fwd) {
    const double sec = timed_loop<B>(st, [&] { gn.forward(x.cview(), y.view(), silu); });
    set_bytes(st, 8.0 * double(x.size()), sec);
  } else {
    const Tensor<B> dy = random<B>(x.shape(), 3);
    Tensor<B> dx(x.shape());
    const double sec =
        timed_loop<B>(st, [&] { gn.backward(x.cview(), dy.cview(), dx.view(), silu, false); });
    set_bytes(st, 12.0 * double(x.size()), sec);
  }
}

template <class B>
void bm_dropout(benchmark::State& st, std::size_t c, std::size_t res, double p, Pass pass) {
  nn::Dropout<T, B> d(p, backend<B>());
  const Tensor<B> x = random<B>(Shape{g_batch, c, res, res}, 2);
  Tensor<B> y(x.shape());
  std::uint64_t stream = 0;
  const double sec = timed_loop<B>(st, [&] {
    if (pass == Pass::fwd)
      d.forward(x.cview(), y.view(), ddpm::Rng{5}, ++stream);
    else
      d.backward(x.cview(), y.view(), ddpm::Rng{5}, ++stream, false);
  });
  set_bytes(st, 8.0 * double(x.size()), sec);
}

template <class B>
void bm_linear(benchmark::State& st, std::size_t in, std::size_t out, Pass pass) {
  ddpm::nn::ParamInit init(ddpm::Rng{1});
  nn::Linear<T, B> lin(in, out, backend<B>(), init);
  const Tensor<B> x = random<B>(Shape{g_batch, in}, 2);
  Tensor<B> y(Shape{g_batch, out});
  const double f = 2.0 * double(g_batch * in * out);
  if (pass == Pass::fwd) {
    const double sec = timed_loop<B>(st, [&] { lin.forward(x.cview(), y.view()); });
    set_flops(st, f, sec);
  } else {
    const Tensor<B> dy = random<B>(y.shape(), 3);
    Tensor<B> dx(x.shape());
    const double sec =
        timed_loop<B>(st, [&] { lin.backward(x.cview(), dy.cview(), dx.view(), false); });
    set_flops(st, 2 * f, sec);
  }
}

double attention_flops(std::size_t c, std::size_t res) {  // QK^T and AV
  const double P = double(res * res);
  return 2.0 * 2.0 * double(g_batch) * P * P * double(c);
}

template <class B>
void bm_attention(benchmark::State& st, std::size_t c, std::size_t res, Pass pass) {
  nn::Attention<T, B> attn(backend<B>());
  const Tensor<B> qkv = random<B>(Shape{g_batch, 3 * c, res, res}, 2);
  const Shape qs = qkv.shape();
  Tensor<B> probs(nn::Attention<T, B>::probs_shape(qs)), out(nn::Attention<T, B>::output_shape(qs));
  attn.forward(qkv.cview(), probs.view(), out.view());
  if (pass == Pass::fwd) {
    const double sec =
        timed_loop<B>(st, [&] { attn.forward(qkv.cview(), probs.view(), out.view()); });
    set_flops(st, attention_flops(c, res), sec);
  } else {
    const Tensor<B> dout = random<B>(out.shape(), 3);
    Tensor<B> dqkv(qs);
    const double sec = timed_loop<B>(
        st, [&] { attn.backward(qkv.cview(), probs.cview(), dout.cview(), dqkv.view()); });
    set_flops(st, 2 * attention_flops(c, res), sec);
  }
}

template <class B>
void bm_upsample(benchmark::State& st, std::size_t c, std::size_t res, Pass pass) {
  ddpm::nn::ParamInit init(ddpm::Rng{1});
  nn::Upsample<T, B> up(c, backend<B>(), init);
  const Tensor<B> x = random<B>(Shape{g_batch, c, res, res}, 2);
  const Shape ys = nn::Upsample<T, B>::output_shape(x.shape());
  Tensor<B> y(ys), scratch(ys), dscratch(ys);
  const double f = conv_flops(c, c, 3, 2 * res);
  if (pass == Pass::fwd) {
    const double sec = timed_loop<B>(st, [&] { up.forward(x.cview(), y.view(), scratch.view()); });
    set_flops(st, f, sec);
  } else {
    const Tensor<B> dy = random<B>(ys, 3);
    Tensor<B> dx(x.shape());
    const double sec = timed_loop<B>(st, [&] {
      up.backward(x.cview(), dy.cview(), dx.view(), false, scratch.view(), dscratch.view());
    });
    set_flops(st, 2 * f, sec);
  }
}

template <class B>
void bm_res_block(benchmark::State& st, const nn::UNetConfig& cfg, std::size_t cin,
                  std::size_t cout, std::size_t res, Pass pass) {
  ddpm::nn::ParamInit init(ddpm::Rng{1});
  const std::size_t E = cfg.emb_dim();
  nn::ResBlock<T, B> blk(cin, cout, E, cfg.groups, cfg.dropout, 0, backend<B>(), init);
  // conv2 is zero-initialised in the network; give it values so that nothing is trivially zero
  blk.visit_parameters([](auto, auto& p) { fill<B>(p.value, 9, -0.05f, 0.05f); });
  nn::Workspace<T, B> ws;
  const Tensor<B> x = random<B>(Shape{g_batch, cin, res, res}, 2),
                  emb = random<B>(Shape{g_batch, E}, 3);
  Tensor<B> out(Shape{g_batch, cout, res, res});
  double f = conv_flops(cin, cout, 3, res) + conv_flops(cout, cout, 3, res) +
             2.0 * double(g_batch * E * cout);
  if (cin != cout) f += conv_flops(cin, cout, 1, res);
  const nn::Pass train{.train = true, .rng = ddpm::Rng{4}, .step = 1};
  if (pass != Pass::bwd) {
    const nn::Pass p = pass == Pass::fwd ? train : nn::Pass{};
    const double sec =
        timed_loop<B>(st, [&] { blk.forward(x.cview(), emb.cview(), out.view(), ws, p); });
    set_flops(st, f, sec);
  } else {
    blk.forward(x.cview(), emb.cview(), out.view(), ws, train);
    const Tensor<B> dy = random<B>(out.shape(), 5);
    Tensor<B> dx(x.shape()), demb(emb.shape());
    const double sec = timed_loop<B>(st, [&] {
      blk.backward(x.cview(), emb.cview(), dy.cview(), dx.view(), false, demb.view(), ws);
    });
    set_flops(st, 2 * f, sec);
  }
}

template <class B>
void bm_attn_block(benchmark::State& st, const nn::UNetConfig& cfg, std::size_t c, std::size_t res,
                   Pass pass) {
  ddpm::nn::ParamInit init(ddpm::Rng{1});
  nn::AttnBlock<T, B> blk(c, cfg.groups, backend<B>(), init);
  blk.visit_parameters([](auto, auto& p) { fill<B>(p.value, 9, -0.05f, 0.05f); });
  nn::Workspace<T, B> ws;
  const Tensor<B> x = random<B>(Shape{g_batch, c, res, res}, 2);
  Tensor<B> out(x.shape());
  const double f =
      conv_flops(c, 3 * c, 1, res) + conv_flops(c, c, 1, res) + attention_flops(c, res);
  blk.forward(x.cview(), out.view(), ws);
  if (pass != Pass::bwd) {
    const double sec = timed_loop<B>(st, [&] { blk.forward(x.cview(), out.view(), ws); });
    set_flops(st, f, sec);
  } else {
    const Tensor<B> dy = random<B>(x.shape(), 5);
    Tensor<B> dx(x.shape());
    const double sec =
        timed_loop<B>(st, [&] { blk.backward(x.cview(), dy.cview(), dx.view(), false, ws); });
    set_flops(st, 2 * f, sec);
  }
}

// ------------------------------------------------------------------ ceilings
void bm_sgemm_ddpm(benchmark::State& st, std::size_t n, bool threaded) {
  Tensor<Cpu> a = random<Cpu>(Shape{n, n}, 1), b = random<Cpu>(Shape{n, n}, 2), c(Shape{n, n});
  const double sec = timed_loop<Cpu>(st, [&] {
    if (threaded)
      ddpm::detail::cpu::sgemm(backend<Cpu>().ctx(), false, false, n, n, n, 1.0f, a.data(), n,
                               b.data(), n, 0.0f, c.data(), n);
    else
      ddpm::detail::cpu::sgemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f,
                               c.data(), n);
    benchmark::DoNotOptimize(c.data());
  });
  set_flops(st, 2.0 * double(n) * double(n) * double(n), sec);
}

void bm_sgemm_eigen(benchmark::State& st, std::size_t n) {
  using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Tensor<Cpu> a = random<Cpu>(Shape{n, n}, 1), b = random<Cpu>(Shape{n, n}, 2), c(Shape{n, n});
  Eigen::Map<const Mat> ma(a.data(), Eigen::Index(n), Eigen::Index(n)),
      mb(b.data(), Eigen::Index(n), Eigen::Index(n));
  Eigen::Map<Mat> mc(c.data(), Eigen::Index(n), Eigen::Index(n));
  const double sec = timed_loop<Cpu>(st, [&] {
    mc.noalias() = ma * mb;
    benchmark::DoNotOptimize(c.data());
  });
  set_flops(st, 2.0 * double(n) * double(n) * double(n), sec);
}

constexpr std::size_t copy_floats = std::size_t{64}
                                    << 20;  // 256 MiB per buffer: far beyond the caches

void bm_copy(benchmark::State& st, bool threaded) {
  Tensor<Cpu> a = random<Cpu>(Shape{copy_floats}, 1), b(Shape{copy_floats});
  const double sec = timed_loop<Cpu>(st, [&] {
    if (threaded)
      ddpm::Ops<Cpu>::copy(backend<Cpu>(), a.cview(), b.view());
    else
      std::memcpy(b.data(), a.data(), copy_floats * sizeof(T));
  });
  // traffic: read + write (the GB/s convention of the layers); bytes copied per second is half
  set_bytes(st, 8.0 * double(copy_floats), sec);
  st.counters["copied_GB"] = benchmark::Counter(4.0 * double(copy_floats) * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

/// Best rate of f (units per second; f returns the units of one call) over at least `reps` calls
/// and at least `min_s` seconds: the least disturbed call on a shared machine.
template <class F>
double best_rate(int reps, double min_s, F&& f) {
  double best = 0, total = 0;
  for (int r = 0; r < reps || (total < min_s && r < 100); ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const double units = f();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, units / s);
    total += s;
  }
  return best;
}

void probe_ceilings() {
  const std::size_t n = 1024;
  Tensor<Cpu> a = random<Cpu>(Shape{n, n}, 1), b = random<Cpu>(Shape{n, n}, 2), c(Shape{n, n});
  g_sgemm_gflops =
      best_rate(8, 1.0,
                [&] {
                  ddpm::detail::cpu::sgemm(backend<Cpu>().ctx(), false, false, n, n, n, 1.0f,
                                           a.data(), n, b.data(), n, 0.0f, c.data(), n);
                  return 2.0 * double(n * n * n);
                }) *
      1e-9;
  Tensor<Cpu> x = random<Cpu>(Shape{copy_floats}, 3), y(Shape{copy_floats});
  g_copy_gbps = best_rate(4, 1.0,
                          [&] {
                            ddpm::Ops<Cpu>::copy(backend<Cpu>(), x.cview(), y.view());
                            return 8.0 * double(copy_floats);
                          }) *
                1e-9;
}

// ------------------------------------------------------------------ registration
std::string dims(std::size_t c, std::size_t res) {
  return std::to_string(c) + "x" + std::to_string(res) + "x" + std::to_string(res);
}

template <class F>
void reg(const std::string& name, int count, F f) {
  auto* b = benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) {
    f(st);
    st.counters["count"] = double(count);
  });
  b->UseRealTime()->Unit(benchmark::kMicrosecond);
}

/// Registers every layer of one config for backend B, named <prefix><config>/<layer>/<shape>/<pass>
/// (prefix "" for the CPU; a CUDA build would instantiate this for backend::Cuda with "cuda/").
template <class B>
void register_config(const std::string& prefix, const std::string& name,
                     const nn::UNetConfig& cfg) {
  const Uses u = walk(cfg);
  const std::string p = prefix + name + "/";
  for (const auto& [key, count] : u.conv) {
    const auto [cin, cout, k, stride, res, need_dx] = key;
    const std::string n = p + "conv" + std::to_string(k) + "x" + std::to_string(k) +
                          (stride == 2 ? "s2" : "") + "/" + std::to_string(cin) + "-" +
                          std::to_string(cout) + "@" + std::to_string(res) + "/";
    reg(n + "fwd", count, [=](benchmark::State& st) {
      bm_conv<B>(st, cin, cout, k, stride, res, need_dx, Pass::fwd);
    });
    reg(n + "bwd", count, [=](benchmark::State& st) {
      bm_conv<B>(st, cin, cout, k, stride, res, need_dx, Pass::bwd);
    });
  }
  for (const auto& [key, count] : u.norm) {
    const auto [c, res, silu] = key;
    const std::string n = p + (silu ? "group_norm_silu/" : "group_norm/") + dims(c, res) + "/";
    const std::size_t g = cfg.groups;
    reg(n + "fwd", count,
        [=](benchmark::State& st) { bm_norm<B>(st, c, res, silu, g, Pass::fwd); });
    reg(n + "bwd", count,
        [=](benchmark::State& st) { bm_norm<B>(st, c, res, silu, g, Pass::bwd); });
  }
  for (const auto& [key, count] : u.dropout) {
    const auto [c, res] = key;
    const double pr = cfg.dropout;
    reg(p + "dropout/" + dims(c, res) + "/fwd", count,
        [=](benchmark::State& st) { bm_dropout<B>(st, c, res, pr, Pass::fwd); });
    reg(p + "dropout/" + dims(c, res) + "/bwd", count,
        [=](benchmark::State& st) { bm_dropout<B>(st, c, res, pr, Pass::bwd); });
  }
  for (const auto& [key, count] : u.linear) {
    const auto [in, out] = key;
    const std::string n = p + "linear/" + std::to_string(in) + "-" + std::to_string(out) + "/";
    reg(n + "fwd", count, [=](benchmark::State& st) { bm_linear<B>(st, in, out, Pass::fwd); });
    reg(n + "bwd", count, [=](benchmark::State& st) { bm_linear<B>(st, in, out, Pass::bwd); });
  }
  for (const auto& [key, count] : u.attention) {
    const auto [c, res] = key;
    reg(p + "attention/" + dims(c, res) + "/fwd", count,
        [=](benchmark::State& st) { bm_attention<B>(st, c, res, Pass::fwd); });
    reg(p + "attention/" + dims(c, res) + "/bwd", count,
        [=](benchmark::State& st) { bm_attention<B>(st, c, res, Pass::bwd); });
  }
  for (const auto& [key, count] : u.upsample) {
    const auto [c, res] = key;
    reg(p + "upsample/" + dims(c, res) + "/fwd", count,
        [=](benchmark::State& st) { bm_upsample<B>(st, c, res, Pass::fwd); });
    reg(p + "upsample/" + dims(c, res) + "/bwd", count,
        [=](benchmark::State& st) { bm_upsample<B>(st, c, res, Pass::bwd); });
  }
  for (const auto& [key, count] : u.res_block) {
    const auto [cin, cout, res] = key;
    const std::string n = p + "res_block/" + std::to_string(cin) + "-" + std::to_string(cout) +
                          "@" + std::to_string(res) + "/";
    for (const auto& [pass, pn] :
         {std::pair{Pass::infer, "infer"}, {Pass::fwd, "fwd"}, {Pass::bwd, "bwd"}})
      reg(n + pn, count, [=, pass = pass](benchmark::State& st) {
        bm_res_block<B>(st, cfg, cin, cout, res, pass);
      });
  }
  for (const auto& [key, count] : u.attn_block) {
    const auto [c, res] = key;
    const std::string n = p + "attn_block/" + dims(c, res) + "/";
    reg(n + "fwd", count,
        [=](benchmark::State& st) { bm_attn_block<B>(st, cfg, c, res, Pass::fwd); });
    reg(n + "bwd", count,
        [=](benchmark::State& st) { bm_attn_block<B>(st, cfg, c, res, Pass::bwd); });
  }
}

void register_all() {
  for (std::size_t n : {std::size_t{1024}, std::size_t{2048}}) {
    const std::string s = std::to_string(n);
    reg("ceiling/sgemm/" + s + "/ddpm/threads:" + std::to_string(g_threads), 1,
        [=](benchmark::State& st) { bm_sgemm_ddpm(st, n, true); });
    reg("ceiling/sgemm/" + s + "/ddpm/threads:1", 1,
        [=](benchmark::State& st) { bm_sgemm_ddpm(st, n, false); });
    reg("ceiling/sgemm/" + s + "/eigen/threads:1", 1,
        [=](benchmark::State& st) { bm_sgemm_eigen(st, n); });
  }
  reg("ceiling/copy/256MiB/ddpm/threads:" + std::to_string(g_threads), 1,
      [](benchmark::State& st) { bm_copy(st, true); });
  reg("ceiling/copy/256MiB/memcpy/threads:1", 1, [](benchmark::State& st) { bm_copy(st, false); });
  register_config<Cpu>("", "mnist", nn::UNetConfig::mnist());
  register_config<Cpu>("", "manga32", nn::UNetConfig::manga32());
  register_config<Cpu>("", "anime64", nn::UNetConfig::anime64());
}

}  // namespace

int main(int argc, char** argv) {
  bool probe = true;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {  // this program's flags; the rest goes to Google Benchmark
    const std::string a = argv[i];
    if (a.rfind("--threads=", 0) == 0)
      g_threads = std::max(1, std::atoi(a.c_str() + 10));
    else if (a.rfind("--batch=", 0) == 0)
      g_batch = std::size_t(std::max(1, std::atoi(a.c_str() + 8)));
    else if (a == "--no_ceiling_probe")
      probe = false;
    else
      argv[kept++] = argv[i];
  }
  argc = kept;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  if (probe) probe_ceilings();
  char buf[64];
  benchmark::AddCustomContext("ddpm_threads", std::to_string(g_threads));
  benchmark::AddCustomContext("ddpm_batch", std::to_string(g_batch));
  std::snprintf(buf, sizeof buf, "%.1f", g_sgemm_gflops);
  benchmark::AddCustomContext("ceiling_sgemm_1024_gflops", probe ? buf : "not probed");
  std::snprintf(buf, sizeof buf, "%.1f", g_copy_gbps);
  benchmark::AddCustomContext("ceiling_copy_traffic_gbps", probe ? buf : "not probed");
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
