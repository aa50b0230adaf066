// SPDX-License-Identifier: MIT
// tests/backend/test_cpu_ops.cpp — Ops<Cpu> element-wise ops, activations, resampling, concat,
// channel bias, embeddings and optimiser updates against Ops<Reference>, plus bitwise identity of
// Cpu(1) and Cpu(2). Sizes around the SIMD width and across several parallel chunks.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "backend/cpu_ops_support.hpp"

using namespace cpu_test;
using ddpm::ConstView;
using ddpm::Shape;
using ddpm::View;

TEST_CASE("cpu ops: fill, copy, axpby, add, scale, guidance, clamp, ema_update") {
  for (std::size_t n : sizes()) {
    const Shape s{n};
    const std::string tag = cat(" n=", n);
    const Buf x = random(n, 1), y0 = random(n, 2);
    oracle("fill" + tag, [&](auto& be) {
      Buf y = y0;
      OpsOf<decltype(be)>::fill(be, view(y, s), 0.25f);
      return Outputs{y};
    });
    oracle("copy" + tag, [&](auto& be) {
      Buf y = y0;
      OpsOf<decltype(be)>::copy(be, cview(x, s), view(y, s));
      return Outputs{y};
    });
    for (float b : {0.0f, 0.5f}) {
      oracle("axpby b=" + std::to_string(b) + tag, [&](auto& be) {
        Buf y = y0;
        if (b == 0.0f && n > 3) y[3] = std::numeric_limits<float>::quiet_NaN();  // ignored when b = 0
        OpsOf<decltype(be)>::axpby(be, 1.5f, cview(x, s), b, view(y, s));
        return Outputs{y};
      });
    }
    oracle("add" + tag, [&](auto& be) {
      Buf y(n), z = y0;
      OpsOf<decltype(be)>::add(be, cview(x, s), cview(y0, s), view(y, s));
      OpsOf<decltype(be)>::add(be, cview(x, s), cview(z, s), view(z, s));  // aliasing b
      return Outputs{y, z};
    });
    oracle("scale" + tag, [&](auto& be) {
      Buf y = y0;
      OpsOf<decltype(be)>::scale(be, view(y, s), -3.0f);
      return Outputs{y};
    });
    oracle("guidance" + tag, [&](auto& be) {
      Buf y(n);
      OpsOf<decltype(be)>::guidance(be, cview(x, s), cview(y0, s), 2.5f, view(y, s));
      return Outputs{y};
    });
    oracle("clamp" + tag, [&](auto& be) {
      Buf y = random(n, 3, -2.0f, 2.0f);
      if (n > 5) y[5] = std::numeric_limits<float>::quiet_NaN();
      OpsOf<decltype(be)>::clamp(be, view(y, s), -1.0f, 0.5f);
      return Outputs{y};
    });
    oracle("ema_update" + tag, [&](auto& be) {
      Buf e = y0;
      OpsOf<decltype(be)>::ema_update(be, view(e, s), cview(x, s), 0.999f);
      return Outputs{e};
    });
  }
}

TEST_CASE("cpu ops: sum_squares is double-accurate and thread-count independent") {
  for (std::size_t n : sizes()) {
    const Buf x = random(n, 4, -3.0f, 3.0f);
    const ConstView<float> v(x.data(), Shape{n});
    const double want = ddpm::Ops<ddpm::backend::Reference>::sum_squares(ref_be(), v);
    const double a = ddpm::Ops<ddpm::backend::Cpu>::sum_squares(cpu1(), v);
    const double b = ddpm::Ops<ddpm::backend::Cpu>::sum_squares(cpu2(), v);
    INFO("n=", n);
    CHECK(std::abs(a - want) <= 1e-6 * want + 1e-12);
    CHECK(std::memcmp(&a, &b, sizeof a) == 0);
  }
  Buf x = random(100, 5);
  x[17] = std::numeric_limits<float>::infinity();
  CHECK(std::isinf(ddpm::Ops<ddpm::backend::Cpu>::sum_squares(cpu1(), ConstView<float>(x.data(), Shape{100}))));
  x[18] = std::numeric_limits<float>::quiet_NaN();
  CHECK(std::isnan(ddpm::Ops<ddpm::backend::Cpu>::sum_squares(cpu1(), ConstView<float>(x.data(), Shape{100}))));
}

TEST_CASE("cpu ops: SiLU forward and backward (accumulate on/off)") {
  for (std::size_t n : sizes()) {
    const Shape s{n};
    const std::string tag = cat(" n=", n);
    Buf x = random(n, 6, -12.0f, 12.0f);
    if (n > 2) {
      x[0] = -100.0f;
      x[1] = 100.0f;
      x[2] = 0.0f;
    }
    const Buf dy = random(n, 7), dx0 = random(n, 8);
    oracle("silu_forward" + tag, [&](auto& be) {
      Buf y(n);
      OpsOf<decltype(be)>::silu_forward(be, cview(x, s), view(y, s));
      return Outputs{y};
    });
    for (bool acc : {false, true})
      oracle("silu_backward acc=" + std::to_string(acc) + tag, [&](auto& be) {
        Buf dx = dx0;
        OpsOf<decltype(be)>::silu_backward(be, cview(x, s), cview(dy, s), view(dx, s), acc);
        return Outputs{dx};
      });
  }
}

TEST_CASE("cpu ops: upsample2x forward and backward") {
  const std::vector<Shape> shapes = {{1, 1, 1, 1}, {2, 3, 7, 7}, {2, 5, 9, 13}, {4, 8, 16, 16},
                                     {3, 2, 4, 17}, {64, 16, 14, 14}};
  for (const Shape& s : shapes) {
    const Shape s2{s.n(), s.c(), 2 * s.h(), 2 * s.w()};
    const std::string tag = cat(" ", s.str());
    const Buf x = random(s.numel(), 9), dy = random(s2.numel(), 10), dx0 = random(s.numel(), 11);
    oracle("upsample2x_forward" + tag, [&](auto& be) {
      Buf y(s2.numel());
      OpsOf<decltype(be)>::upsample2x_forward(be, cview(x, s), view(y, s2));
      return Outputs{y};
    });
    for (bool acc : {false, true})
      oracle("upsample2x_backward acc=" + std::to_string(acc) + tag, [&](auto& be) {
        Buf dx = dx0;
        OpsOf<decltype(be)>::upsample2x_backward(be, cview(dy, s2), view(dx, s), acc);
        return Outputs{dx};
      });
  }
}

TEST_CASE("cpu ops: concat_channels and split_channels (accumulate, empty outputs)") {
  struct Case {
    std::size_t n, ca, cb, h, w;
  };
  for (const Case& c : {Case{1, 1, 1, 1, 1}, Case{2, 3, 5, 7, 7}, Case{3, 13, 6, 5, 3},
                        Case{64, 64, 32, 14, 14}, Case{5, 64, 64, 7, 7}}) {
    const Shape sa{c.n, c.ca, c.h, c.w}, sb{c.n, c.cb, c.h, c.w}, so{c.n, c.ca + c.cb, c.h, c.w};
    const std::string tag = cat(" ", so.str());
    const Buf a = random(sa.numel(), 12), b = random(sb.numel(), 13), d = random(so.numel(), 14);
    const Buf a0 = random(sa.numel(), 15), b0 = random(sb.numel(), 16);
    oracle("concat_channels" + tag, [&](auto& be) {
      Buf o(so.numel());
      OpsOf<decltype(be)>::concat_channels(be, cview(a, sa), cview(b, sb), view(o, so));
      return Outputs{o};
    });
    for (bool acc_a : {false, true})
      for (bool acc_b : {false, true})
        oracle("split_channels acc=" + std::to_string(acc_a) + std::to_string(acc_b) + tag, [&](auto& be) {
          Buf da = a0, db = b0;
          OpsOf<decltype(be)>::split_channels(be, cview(d, so), c.ca, view(da, sa), acc_a, view(db, sb), acc_b);
          return Outputs{da, db};
        });
    oracle("split_channels empty da" + tag, [&](auto& be) {
      Buf db = b0;
      OpsOf<decltype(be)>::split_channels(be, cview(d, so), c.ca, View<float>{}, false, view(db, sb), true);
      return Outputs{db};
    });
    oracle("split_channels empty db" + tag, [&](auto& be) {
      Buf da = a0;
      OpsOf<decltype(be)>::split_channels(be, cview(d, so), c.ca, view(da, sa), true, View<float>{}, false);
      return Outputs{da};
    });
  }
}

TEST_CASE("cpu ops: add_channel_bias and channel_sum") {
  for (const Shape& s : {Shape{1, 1, 1, 1}, Shape{3, 5, 7, 7}, Shape{2, 64, 28, 28}, Shape{4, 9, 1, 1},
                         Shape{64, 32, 28, 28}}) {
    const std::string tag = cat(" ", s.str());
    const Shape sb{s.n(), s.c()};
    const Buf x0 = random(s.numel(), 17), bias = random(sb.numel(), 18);
    oracle("add_channel_bias" + tag, [&](auto& be) {
      Buf x = x0;
      OpsOf<decltype(be)>::add_channel_bias(be, view(x, s), cview(bias, sb));
      return Outputs{x};
    });
    oracle("channel_sum" + tag, [&](auto& be) {
      Buf d(sb.numel(), 7.0f);
      OpsOf<decltype(be)>::channel_sum(be, cview(x0, s), view(d, sb));
      return Outputs{d};
    }, 1e-5, 1e-4);  // the reference sums 784 floats in one float accumulator
  }
}

TEST_CASE("cpu ops: embeddings and timestep embedding") {
  const Shape st{11, 32};
  const Buf table = random(st.numel(), 19);
  const std::vector<std::int32_t> labels = {3, 0, 10, 3, 3, 7, 0};
  const ConstView<std::int32_t> lv(labels.data(), Shape{labels.size()});
  const Shape so{labels.size(), 32};
  const Buf dout = random(so.numel(), 20), dt0 = random(st.numel(), 21);
  oracle("embedding_forward", [&](auto& be) {
    Buf o(so.numel());
    OpsOf<decltype(be)>::embedding_forward(be, cview(table, st), lv, view(o, so));
    return Outputs{o};
  }, 0.0, 1e-30);
  oracle("embedding_backward", [&](auto& be) {
    Buf dt = dt0;
    OpsOf<decltype(be)>::embedding_backward(be, lv, cview(dout, so), view(dt, st));
    return Outputs{dt};
  }, 0.0, 1e-30);
  const std::vector<std::int32_t> t = {0, 1, 999, 500, 17};
  const ConstView<std::int32_t> tv(t.data(), Shape{t.size()});
  for (std::size_t D : {1, 2, 7, 32, 128}) {
    oracle("timestep_embedding D=" + std::to_string(D), [&](auto& be) {
      Buf o(t.size() * D, 5.0f);
      OpsOf<decltype(be)>::timestep_embedding(be, tv, view(o, Shape{t.size(), D}));
      return Outputs{o};
    }, 0.0, 1e-30);
  }
}

TEST_CASE("cpu ops: adam_step (Adam, AdamW, L2, grad scale) and its steps") {
  for (std::size_t n : sizes()) {
    const Shape s{n};
    const Buf p0 = random(n, 22), g = random(n, 23, -0.1f, 0.1f), m0 = random(n, 24, -0.01f, 0.01f);
    const Buf v0 = random(n, 25, 0.0f, 1e-4f);
    for (int mode = 0; mode < 3; ++mode)
      for (std::uint64_t step : {1u, 10u}) {
        ddpm::AdamStep st;
        st.lr = 2e-4;
        st.step = step;
        st.grad_scale = 0.7;
        st.weight_decay = mode == 0 ? 0.0 : 0.01;
        st.decoupled = mode == 1;
        oracle("adam mode=" + std::to_string(mode) + " step=" + std::to_string(step) +
                   " n=" + std::to_string(n),
               [&](auto& be) {
                 Buf p = p0, m = m0, v = v0;
                 OpsOf<decltype(be)>::adam_step(be, view(p, s), cview(g, s), view(m, s), view(v, s), st);
                 return Outputs{p, m, v};
               },
               1e-5, 1e-7);
      }
  }
}

TEST_CASE("cpu ops: double tensors forward to the reference backend") {
  std::vector<double> a = {1, 2, 3}, b = {4, 5, 6}, o(3);
  const Shape s{3};
  ddpm::Ops<ddpm::backend::Cpu>::add(cpu2(), ConstView<double>(a.data(), s), ConstView<double>(b.data(), s),
                                     View<double>(o.data(), s));
  CHECK(o == std::vector<double>{5, 7, 9});
  CHECK(ddpm::Ops<ddpm::backend::Cpu>::sum_squares(cpu2(), ConstView<double>(a.data(), s)) == 14.0);
}

TEST_CASE("cpu simd: exp within 2 ulp over its range, sigmoid within 3 ulp, VMath on batches") {
  using ddpm::detail::cpu::fbatch;
  constexpr std::size_t W = ddpm::detail::cpu::simd_width;
  double worst_exp = 0.0, worst_sig = 0.0;
  for (float x = -87.0f; x < 88.0f; x += 0.0137f) {
    alignas(64) float e[W], s[W];
    ddpm::detail::cpu::exp(fbatch(x)).store_aligned(e);
    ddpm::detail::cpu::sigmoid(fbatch(x)).store_aligned(s);
    const double re = std::exp(double(x)), rs = 1.0 / (1.0 + std::exp(-double(x)));
    worst_exp = std::max(worst_exp, std::abs(e[0] - re) / re);
    if (rs > 1e-30) worst_sig = std::max(worst_sig, std::abs(s[0] - rs) / rs);
  }
  CHECK(worst_exp < 2 * 5.97e-8);
  CHECK(worst_sig < 3 * 5.97e-8);
  alignas(64) float o[W];
  ddpm::detail::cpu::exp(fbatch(-1e4f)).store_aligned(o);
  CHECK((o[0] >= 0.0f && o[0] < 1.2e-38f));
  ddpm::detail::cpu::silu(fbatch(-1e4f)).store_aligned(o);
  CHECK(std::abs(o[0]) < 1e-30f);
  ddpm::detail::cpu::silu(fbatch(1e4f)).store_aligned(o);
  CHECK(o[0] == 1e4f);
  // VMath<batch> follows the scalar VMath lane by lane, NaN included.
  using VB = ddpm::detail::VMath<fbatch>;
  using VS = ddpm::detail::VMath<float>;
  const float vals[] = {-2.0f, -0.0f, 0.0f, 0.5f, 3.0f, std::numeric_limits<float>::quiet_NaN()};
  for (float a : vals)
    for (float b : vals) {
      alignas(64) float r[5][W];
      VB::min(fbatch(a), fbatch(b)).store_aligned(r[0]);
      VB::max(fbatch(a), fbatch(b)).store_aligned(r[1]);
      VB::sign(fbatch(a)).store_aligned(r[2]);
      VB::abs(fbatch(a)).store_aligned(r[3]);
      VB::clamp(fbatch(a), fbatch(-1.0f), fbatch(b)).store_aligned(r[4]);
      const float want[5] = {VS::min(a, b), VS::max(a, b), VS::sign(a), VS::abs(a), VS::clamp(a, -1.0f, b)};
      for (int k = 0; k < 5; ++k) {
        INFO("a=", a, " b=", b, " function ", k);
        if (k == 3)  // abs: +0 for -0 on batches (sign bit cleared), -0 in the scalar version
          CHECK((r[k][0] == want[k] || (std::isnan(r[k][0]) && std::isnan(want[k]))));
        else
          CHECK(std::memcmp(&r[k][0], &want[k], sizeof(float)) == 0);
      }
    }
}
