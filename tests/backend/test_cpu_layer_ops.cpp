// SPDX-License-Identifier: MIT
// tests/backend/test_cpu_layer_ops.cpp — Ops<Cpu> group norm (+SiLU), convolution, linear and
// attention against Ops<Reference> (odd channel counts, 7x7 maps, batch 1, P = 49 and 64,
// accumulate on/off, empty optional outputs), and bitwise identity of Cpu(1) and Cpu(2).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "backend/cpu_ops_support.hpp"

using namespace cpu_test;
using ddpm::ConstView;
using ddpm::Shape;
using ddpm::View;
using RefOps = ddpm::Ops<ddpm::backend::Reference>;

TEST_CASE("cpu ops: group norm forward and backward, with and without SiLU") {
  struct Case {
    std::size_t n, c, h, w, g;
  };
  for (const Case& k : {Case{1, 1, 1, 1, 1}, Case{2, 6, 7, 7, 3}, Case{2, 64, 7, 7, 32},
                        Case{3, 12, 5, 5, 4}, Case{1, 32, 28, 28, 32}, Case{4, 64, 14, 14, 32},
                        Case{2, 40, 9, 9, 8}, Case{16, 32, 28, 28, 32}, Case{2, 64, 8, 8, 1}}) {
    const Shape s{k.n, k.c, k.h, k.w}, sc{k.c}, sg{k.n, k.g};
    const Buf x = random(s.numel(), 30, -0.5f, 1.5f), gamma = random(k.c, 31, 0.5f, 1.5f);
    const Buf beta = random(k.c, 32, -0.3f, 0.3f), dy = random(s.numel(), 33);
    const Buf dx0 = random(s.numel(), 34), dg0 = random(k.c, 35), db0 = random(k.c, 36);
    for (bool silu : {false, true}) {
      const std::string tag = cat(" ", s.str(), " G=", k.g, " silu=", silu);
      oracle("group_norm_forward" + tag, [&](auto& be) {
        Buf y(s.numel()), mean(sg.numel()), rstd(sg.numel());
        OpsOf<decltype(be)>::group_norm_forward(be, cview(x, s), cview(gamma, sc), cview(beta, sc),
                                                view(y, s), view(mean, sg), view(rstd, sg), k.g, 1e-5, silu);
        return Outputs{y, mean, rstd};
      }, 1e-4, 1e-5);
      // The saved statistics for backward come from the reference forward (same inputs for all).
      Buf y(s.numel()), mean(sg.numel()), rstd(sg.numel());
      RefOps::group_norm_forward(ref_be(), cview(x, s), cview(gamma, sc), cview(beta, sc), view(y, s),
                                 view(mean, sg), view(rstd, sg), k.g, 1e-5, silu);
      for (bool acc : {false, true})
        oracle("group_norm_backward acc=" + std::to_string(acc) + tag, [&](auto& be) {
          Buf dx = dx0, dg = dg0, db = db0;
          OpsOf<decltype(be)>::group_norm_backward(be, cview(x, s), cview(gamma, sc), cview(beta, sc),
                                                   cview(mean, sg), cview(rstd, sg), cview(dy, s),
                                                   view(dx, s), view(dg, sc), view(db, sc), k.g, silu, acc);
          return Outputs{dx, dg, db};
        }, 1e-4, 1e-4);
      oracle("group_norm_backward empty dx" + tag, [&](auto& be) {
        Buf dg = dg0, db = db0;
        OpsOf<decltype(be)>::group_norm_backward(be, cview(x, s), cview(gamma, sc), cview(beta, sc),
                                                 cview(mean, sg), cview(rstd, sg), cview(dy, s),
                                                 View<float>{}, view(dg, sc), view(db, sc), k.g, silu, false);
        return Outputs{dg, db};
      }, 1e-4, 1e-4);
    }
  }
}

TEST_CASE("cpu ops: conv2d forward and backward") {
  struct Case {
    std::size_t n, ci, h, w, co, k, stride, pad;
  };
  for (const Case& k : {Case{1, 1, 1, 1, 1, 1, 1, 0}, Case{2, 3, 7, 7, 5, 3, 1, 1},
                        Case{2, 4, 8, 8, 6, 3, 2, 1}, Case{1, 5, 9, 9, 3, 1, 1, 0},
                        Case{3, 17, 7, 7, 9, 3, 1, 1}, Case{2, 32, 14, 14, 64, 3, 1, 1},
                        Case{1, 8, 28, 28, 8, 3, 2, 1}, Case{2, 6, 11, 11, 10, 3, 1, 1}}) {
    const ddpm::ConvGeometry g{k.k, k.stride, k.pad};
    const Shape sx{k.n, k.ci, k.h, k.w}, sw{k.co, k.ci, k.k, k.k}, sb{k.co};
    const Shape sy{k.n, k.co, g.out_size(k.h), g.out_size(k.w)};
    const std::string tag = cat(" x", sx.str(), " w", sw.str(), " s", k.stride);
    const Buf x = random(sx.numel(), 40), w = random(sw.numel(), 41, -0.3f, 0.3f), b = random(k.co, 42);
    const Buf dy = random(sy.numel(), 43), dx0 = random(sx.numel(), 44), dw0 = random(sw.numel(), 45);
    const Buf db0 = random(k.co, 46);
    for (bool with_bias : {false, true})
      oracle("conv2d_forward bias=" + std::to_string(with_bias) + tag, [&](auto& be) {
        Buf y(sy.numel());
        OpsOf<decltype(be)>::conv2d_forward(be, cview(x, sx), cview(w, sw),
                                            with_bias ? cview(b, sb) : ConstView<float>{}, view(y, sy), g);
        return Outputs{y};
      }, 1e-4, 1e-4);  // outputs are O(1); Winograd's error is ~1e-5 of the output scale
    for (bool acc : {false, true})
      oracle("conv2d_backward acc=" + std::to_string(acc) + tag, [&](auto& be) {
        Buf dx = dx0, dw = dw0, db = db0;
        OpsOf<decltype(be)>::conv2d_backward(be, cview(x, sx), cview(w, sw), cview(dy, sy), view(dx, sx),
                                             view(dw, sw), view(db, sb), g, acc);
        return Outputs{dx, dw, db};
      }, 1e-4, 1e-4);
    oracle("conv2d_backward empty dx, db" + tag, [&](auto& be) {
      Buf dw = dw0;
      OpsOf<decltype(be)>::conv2d_backward(be, cview(x, sx), cview(w, sw), cview(dy, sy), View<float>{},
                                           view(dw, sw), View<float>{}, g, false);
      return Outputs{dw};
    }, 1e-4, 1e-4);
  }
}

TEST_CASE("cpu ops: linear forward and backward") {
  struct Case {
    std::size_t n, in, out;
  };
  for (const Case& k : {Case{1, 1, 1}, Case{3, 17, 9}, Case{64, 32, 128}, Case{5, 128, 64}, Case{1, 7, 33}}) {
    const Shape sx{k.n, k.in}, sw{k.out, k.in}, sb{k.out}, sy{k.n, k.out};
    const std::string tag = cat(" ", sx.str(), "->", k.out);
    const Buf x = random(sx.numel(), 50), w = random(sw.numel(), 51, -0.3f, 0.3f), b = random(k.out, 52);
    const Buf dy = random(sy.numel(), 53), dx0 = random(sx.numel(), 54), dw0 = random(sw.numel(), 55);
    const Buf db0 = random(k.out, 56);
    for (bool with_bias : {false, true})
      oracle("linear_forward bias=" + std::to_string(with_bias) + tag, [&](auto& be) {
        Buf y(sy.numel());
        OpsOf<decltype(be)>::linear_forward(be, cview(x, sx), cview(w, sw),
                                            with_bias ? cview(b, sb) : ConstView<float>{}, view(y, sy));
        return Outputs{y};
      }, 1e-4, 1e-5);
    for (bool acc : {false, true})
      oracle("linear_backward acc=" + std::to_string(acc) + tag, [&](auto& be) {
        Buf dx = dx0, dw = dw0, db = db0;
        OpsOf<decltype(be)>::linear_backward(be, cview(x, sx), cview(w, sw), cview(dy, sy), view(dx, sx),
                                             view(dw, sw), view(db, sb), acc);
        return Outputs{dx, dw, db};
      }, 1e-4, 1e-5);
    oracle("linear_backward empty dx, db" + tag, [&](auto& be) {
      Buf dw = dw0;
      OpsOf<decltype(be)>::linear_backward(be, cview(x, sx), cview(w, sw), cview(dy, sy), View<float>{},
                                           view(dw, sw), View<float>{}, false);
      return Outputs{dw};
    }, 1e-4, 1e-5);
  }
}

TEST_CASE("cpu ops: attention forward and backward (P = 49, 64, odd C, batch 1)") {
  for (const Shape& s : {Shape{1, 4, 3, 3}, Shape{2, 8, 7, 7}, Shape{2, 64, 7, 7}, Shape{3, 16, 8, 8},
                         Shape{1, 32, 8, 8}, Shape{2, 5, 4, 4}, Shape{1, 3, 1, 1}, Shape{2, 24, 9, 9}}) {
    const std::size_t N = s.n(), C = s.c(), P = s.h() * s.w();
    const Shape sq{N, 3 * C, s.h(), s.w()}, sp{N, P, P};
    const std::string tag = cat(" ", s.str());
    const Buf qkv = random(sq.numel(), 60, -1.5f, 1.5f), dout = random(s.numel(), 61);
    oracle("attention_forward" + tag, [&](auto& be) {
      Buf probs(sp.numel()), out(s.numel());
      OpsOf<decltype(be)>::attention_forward(be, cview(qkv, sq), view(probs, sp), view(out, s));
      return Outputs{probs, out};
    }, 1e-4, 1e-6);
    Buf probs(sp.numel()), out(s.numel());
    RefOps::attention_forward(ref_be(), cview(qkv, sq), view(probs, sp), view(out, s));
    oracle("attention_backward" + tag, [&](auto& be) {
      Buf dqkv(sq.numel(), 3.0f);
      OpsOf<decltype(be)>::attention_backward(be, cview(qkv, sq), cview(probs, sp), cview(dout, s),
                                              view(dqkv, sq));
      return Outputs{dqkv};
    }, 1e-4, 1e-5);
  }
}

TEST_CASE("cpu ops: steady state allocates no scratch after the first call") {
  const Shape s{4, 64, 8, 8}, sc{64}, sg{4, 32}, sq{4, 192, 8, 8}, sp{4, 64, 64};
  const Buf x = random(s.numel(), 70), gamma = random(64, 71), beta = random(64, 72), dy = random(s.numel(), 73);
  const Buf qkv = random(sq.numel(), 74);
  Buf y(s.numel()), mean(sg.numel()), rstd(sg.numel()), dx(s.numel()), dg(64), db(64);
  Buf probs(sp.numel()), out(s.numel()), dqkv(sq.numel());
  auto step = [&](ddpm::backend::Cpu& be) {
    using O = ddpm::Ops<ddpm::backend::Cpu>;
    O::group_norm_forward(be, cview(x, s), cview(gamma, sc), cview(beta, sc), view(y, s), view(mean, sg),
                          view(rstd, sg), 32, 1e-5, true);
    O::group_norm_backward(be, cview(x, s), cview(gamma, sc), cview(beta, sc), cview(mean, sg),
                           cview(rstd, sg), cview(dy, s), view(dx, s), view(dg, sc), view(db, sc), 32, true,
                           false);
    O::attention_forward(be, cview(qkv, sq), view(probs, sp), view(out, s));
    O::attention_backward(be, cview(qkv, sq), cview(probs, sp), cview(dy, s), view(dqkv, sq));
    (void)O::sum_squares(be, cview(x, s));
  };
  // One thread: nothing grows after the first call.
  step(cpu1());
  std::size_t before = ddpm::detail::tensor_allocation_count().load();
  step(cpu1());
  step(cpu1());
  CHECK(ddpm::detail::tensor_allocation_count().load() == before);
  // Two threads: a worker's scratch grows the first time a task lands on it, at most once per
  // buffer whichever call that is.
  for (int i = 0; i < 10; ++i) step(cpu2());
  before = ddpm::detail::tensor_allocation_count().load();
  for (int i = 0; i < 3; ++i) step(cpu2());
  CHECK(ddpm::detail::tensor_allocation_count().load() - before <= 2);
}
