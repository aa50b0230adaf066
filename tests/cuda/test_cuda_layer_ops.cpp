// SPDX-License-Identifier: MIT
// tests/cuda/test_cuda_layer_ops.cpp — Ops<backend::Cuda> group norm (+SiLU), convolution, linear and
// attention against Ops<backend::Reference> (channels not divisible by 8, 7x7 maps, batch 1, strided
// and 1x1 convolutions, accumulate on/off, empty optional outputs), determinism, and no device
// allocation in steady state.
#include <doctest/doctest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/cuda_test_support.hpp"
#include "ddpm/backend/cuda.hpp"
#include "ddpm/backend/reference.hpp"

using namespace cuda_test;
using ddpm::ConstView;
using ddpm::Shape;
using ddpm::View;
using Cuda = ddpm::backend::Cuda;
using RefOps = ddpm::Ops<ddpm::backend::Reference>;

// Tolerances: outputs and gradients are O(1); fp32 with other summation orders (cuBLAS blocking,
// block reductions) differs from the reference's sequential loops by ~1e-6 relative per term.

TEST_CASE("cuda ops: group norm forward and backward, with and without SiLU") {
  struct Case {
    std::size_t n, c, h, w, g;
  };
  for (const Case& k : {Case{1, 1, 1, 1, 1}, Case{2, 6, 7, 7, 3}, Case{2, 64, 7, 7, 32}, Case{3, 12, 5, 5, 4},
                        Case{1, 32, 28, 28, 32}, Case{4, 64, 14, 14, 32}, Case{2, 40, 9, 9, 8},
                        Case{16, 32, 28, 28, 32}, Case{2, 64, 8, 8, 1}, Case{1, 9, 7, 7, 3},
                        Case{2, 128, 64, 64, 32},
                        // 512-thread blocks: forward above 16384 elements per group (8 x 64 x 64),
                        // backward above 4096 positions (72 x 72: both kernels)
                        Case{2, 64, 64, 64, 8}, Case{1, 16, 72, 72, 4},
                        // 6000 channels in one group: 48,128 bytes of shared memory in backward,
                        // just under the 48 KiB of cudaDevAttrMaxSharedMemoryPerBlock
                        Case{1, 6000, 1, 3, 1}}) {
    const Shape s{k.n, k.c, k.h, k.w}, sc{k.c}, sg{k.n, k.g};
    const Buf x = random(s.numel(), 30, -0.5f, 1.5f), gamma = random(k.c, 31, 0.5f, 1.5f);
    const Buf beta = random(k.c, 32, -0.3f, 0.3f), dy = random(s.numel(), 33);
    const Buf dx0 = random(s.numel(), 34), dg0 = random(k.c, 35), db0 = random(k.c, 36);
    for (bool silu : {false, true}) {
      const std::string tag = cat(" ", s.str(), " G=", k.g, " silu=", silu);
      oracle("group_norm_forward" + tag, [&](auto& e) {
        OpsOf<decltype(e)>::group_norm_forward(e.be, e.in(x, s), e.in(gamma, sc), e.in(beta, sc), e.out(s), e.out(sg),
                                               e.out(sg), k.g, 1e-5, silu);
      }, 1e-4, 1e-5);
      // The saved statistics for backward come from the reference forward (same inputs for all).
      Buf y(s.numel()), mean(sg.numel()), rstd(sg.numel());
      RefOps::group_norm_forward(ref_be(), ConstView<float>(x.data(), s), ConstView<float>(gamma.data(), sc),
                                 ConstView<float>(beta.data(), sc), View<float>(y.data(), s),
                                 View<float>(mean.data(), sg), View<float>(rstd.data(), sg), k.g, 1e-5, silu);
      for (bool acc : {false, true})
        oracle(cat("group_norm_backward acc=", acc, tag), [&](auto& e) {
          OpsOf<decltype(e)>::group_norm_backward(e.be, e.in(x, s), e.in(gamma, sc), e.in(beta, sc), e.in(mean, sg),
                                                  e.in(rstd, sg), e.in(dy, s), e.inout(dx0, s), e.inout(dg0, sc),
                                                  e.inout(db0, sc), k.g, silu, acc);
        }, 1e-4, 1e-4);
      oracle("group_norm_backward empty dx" + tag, [&](auto& e) {
        OpsOf<decltype(e)>::group_norm_backward(e.be, e.in(x, s), e.in(gamma, sc), e.in(beta, sc), e.in(mean, sg),
                                                e.in(rstd, sg), e.in(dy, s), View<float>{}, e.inout(dg0, sc),
                                                e.inout(db0, sc), k.g, silu, false);
      }, 1e-4, 1e-4);
    }
  }
}

TEST_CASE("cuda ops: group norm backward with more channels per group than shared memory holds fails clearly") {
  // 16384 channels in one group need 2 x 16384 floats (128 KiB) of shared memory per block, more
  // than cudaDevAttrMaxSharedMemoryPerBlock (48 KiB): an error that says so, not a failed launch.
  const Shape s{1, 16384, 1, 1}, sc{16384}, sg{1, 1};
  ddpm::Tensor<float, Cuda> x(s, random(s.numel(), 1)), gamma(sc, random(16384, 2)), beta(sc, random(16384, 3));
  ddpm::Tensor<float, Cuda> mean(sg, Buf{0.0f}), rstd(sg, Buf{1.0f}), dy(s, random(s.numel(), 4));
  ddpm::Tensor<float, Cuda> dx(s), dg(sc), db(sc);
  std::string msg;
  try {
    ddpm::Ops<Cuda>::group_norm_backward(cuda_be(), x.cview(), gamma.cview(), beta.cview(), mean.cview(),
                                         rstd.cview(), dy.cview(), dx.view(), dg.view(), db.view(), 1, false, false);
  } catch (const std::invalid_argument& e) {
    msg = e.what();
  }
  INFO("message: ", msg);
  CHECK(msg.find("group_norm_backward") != std::string::npos);
  CHECK(msg.find("cudaDevAttrMaxSharedMemoryPerBlock") != std::string::npos);
  cuda_be().synchronize();  // nothing was launched: the stream is healthy
}

TEST_CASE("cuda ops: conv2d forward and backward (3x3, strided, 1x1)") {
  struct Case {
    std::size_t n, ci, h, w, co, k, stride, pad;
  };
  for (const Case& k : {Case{1, 1, 1, 1, 1, 1, 1, 0}, Case{2, 3, 7, 7, 5, 3, 1, 1}, Case{2, 4, 8, 8, 6, 3, 2, 1},
                        Case{1, 5, 9, 9, 3, 1, 1, 0}, Case{3, 17, 7, 7, 9, 3, 1, 1}, Case{2, 32, 14, 14, 64, 3, 1, 1},
                        Case{1, 8, 28, 28, 8, 3, 2, 1}, Case{2, 6, 11, 11, 10, 3, 1, 1},
                        Case{4, 96, 7, 7, 33, 1, 1, 0}, Case{1, 3, 5, 5, 2, 3, 1, 0}, Case{2, 5, 7, 7, 4, 1, 2, 0}}) {
    const ddpm::ConvGeometry g{k.k, k.stride, k.pad};
    const Shape sx{k.n, k.ci, k.h, k.w}, sw{k.co, k.ci, k.k, k.k}, sb{k.co};
    const Shape sy{k.n, k.co, g.out_size(k.h), g.out_size(k.w)};
    const std::string tag = cat(" x", sx.str(), " w", sw.str(), " s", k.stride, " p", k.pad);
    const Buf x = random(sx.numel(), 40), w = random(sw.numel(), 41, -0.3f, 0.3f), b = random(k.co, 42);
    const Buf dy = random(sy.numel(), 43), dx0 = random(sx.numel(), 44), dw0 = random(sw.numel(), 45);
    const Buf db0 = random(k.co, 46);
    for (bool with_bias : {false, true})
      oracle(cat("conv2d_forward bias=", with_bias, tag), [&](auto& e) {
        OpsOf<decltype(e)>::conv2d_forward(e.be, e.in(x, sx), e.in(w, sw), with_bias ? e.in(b, sb) : ConstView<float>{},
                                           e.out(sy), g);
      }, 1e-4, 1e-4);
    for (bool acc : {false, true})
      oracle(cat("conv2d_backward acc=", acc, tag), [&](auto& e) {
        OpsOf<decltype(e)>::conv2d_backward(e.be, e.in(x, sx), e.in(w, sw), e.in(dy, sy),
                                            acc ? e.inout(dx0, sx) : e.out(sx), e.inout(dw0, sw), e.inout(db0, sb),
                                            g, acc);
      }, 1e-4, 1e-4);
    oracle("conv2d_backward empty dx, db" + tag, [&](auto& e) {
      OpsOf<decltype(e)>::conv2d_backward(e.be, e.in(x, sx), e.in(w, sw), e.in(dy, sy), View<float>{},
                                          e.inout(dw0, sw), View<float>{}, g, false);
    }, 1e-4, 1e-4);
  }
}

TEST_CASE("cuda ops: linear forward and backward") {
  struct Case {
    std::size_t n, in, out;
  };
  for (const Case& k : {Case{1, 1, 1}, Case{3, 17, 9}, Case{64, 32, 128}, Case{5, 128, 64}, Case{1, 7, 33},
                        Case{256, 128, 128}}) {
    const Shape sx{k.n, k.in}, sw{k.out, k.in}, sb{k.out}, sy{k.n, k.out};
    const std::string tag = cat(" ", sx.str(), "->", k.out);
    const Buf x = random(sx.numel(), 50), w = random(sw.numel(), 51, -0.3f, 0.3f), b = random(k.out, 52);
    const Buf dy = random(sy.numel(), 53), dx0 = random(sx.numel(), 54), dw0 = random(sw.numel(), 55);
    const Buf db0 = random(k.out, 56);
    for (bool with_bias : {false, true})
      oracle(cat("linear_forward bias=", with_bias, tag), [&](auto& e) {
        OpsOf<decltype(e)>::linear_forward(e.be, e.in(x, sx), e.in(w, sw), with_bias ? e.in(b, sb) : ConstView<float>{},
                                           e.out(sy));
      }, 1e-4, 1e-5);
    for (bool acc : {false, true})
      oracle(cat("linear_backward acc=", acc, tag), [&](auto& e) {
        OpsOf<decltype(e)>::linear_backward(e.be, e.in(x, sx), e.in(w, sw), e.in(dy, sy),
                                            acc ? e.inout(dx0, sx) : e.out(sx), e.inout(dw0, sw), e.inout(db0, sb), acc);
      }, 1e-4, 1e-4);
    oracle("linear_backward empty dx, db" + tag, [&](auto& e) {
      OpsOf<decltype(e)>::linear_backward(e.be, e.in(x, sx), e.in(w, sw), e.in(dy, sy), View<float>{},
                                          e.inout(dw0, sw), View<float>{}, false);
    }, 1e-4, 1e-4);
  }
}

TEST_CASE("cuda ops: attention forward and backward (P = 49, 64, 256, odd C, batch 1)") {
  for (const Shape& s : {Shape{1, 4, 3, 3}, Shape{2, 8, 7, 7}, Shape{2, 64, 7, 7}, Shape{3, 16, 8, 8},
                         Shape{1, 32, 8, 8}, Shape{2, 5, 4, 4}, Shape{1, 3, 1, 1}, Shape{2, 24, 9, 9},
                         Shape{2, 33, 16, 16}}) {
    const std::size_t N = s.n(), C = s.c(), P = s.h() * s.w();
    const Shape sq{N, 3 * C, s.h(), s.w()}, sp{N, P, P};
    const std::string tag = cat(" ", s.str());
    const Buf qkv = random(sq.numel(), 60, -1.5f, 1.5f), dout = random(s.numel(), 61);
    oracle("attention_forward" + tag, [&](auto& e) {
      OpsOf<decltype(e)>::attention_forward(e.be, e.in(qkv, sq), e.out(sp), e.out(s));
    }, 1e-4, 1e-6);
    Buf probs(sp.numel()), out(s.numel());
    RefOps::attention_forward(ref_be(), ConstView<float>(qkv.data(), sq), View<float>(probs.data(), sp),
                              View<float>(out.data(), s));
    oracle("attention_backward" + tag, [&](auto& e) {
      OpsOf<decltype(e)>::attention_backward(e.be, e.in(qkv, sq), e.in(probs, sp), e.in(dout, s), e.out(sq));
    }, 1e-4, 1e-5);
  }
}

TEST_CASE("cuda ops: steady state allocates no device memory after the first call") {
  Cuda& be = cuda_be();
  using O = ddpm::Ops<Cuda>;
  const Shape s{4, 64, 8, 8}, sc{64}, sg{4, 32}, sq{4, 192, 8, 8}, sp{4, 64, 64}, sw{64, 64, 3, 3};
  ddpm::Tensor<float, Cuda> x(s, random(s.numel(), 70)), gamma(sc, random(64, 71)), beta(sc, random(64, 72));
  ddpm::Tensor<float, Cuda> dy(s, random(s.numel(), 73)), qkv(sq, random(sq.numel(), 74));
  ddpm::Tensor<float, Cuda> w(sw, random(sw.numel(), 75, -0.1f, 0.1f));
  ddpm::Tensor<float, Cuda> y(s), mean(sg), rstd(sg), dx(s), dg(sc), db(sc), probs(sp), out(s), dqkv(sq), dw(sw);
  dg.zero();
  db.zero();
  dw.zero();
  auto step = [&] {
    O::group_norm_forward(be, x.cview(), gamma.cview(), beta.cview(), y.view(), mean.view(), rstd.view(), 32, 1e-5, true);
    O::group_norm_backward(be, x.cview(), gamma.cview(), beta.cview(), mean.cview(), rstd.cview(), dy.cview(),
                           dx.view(), dg.view(), db.view(), 32, true, false);
    O::conv2d_forward(be, y.cview(), w.cview(), gamma.cview(), out.view(), ddpm::ConvGeometry{});
    O::conv2d_backward(be, y.cview(), w.cview(), dy.cview(), dx.view(), dw.view(), db.view(), ddpm::ConvGeometry{}, true);
    O::attention_forward(be, qkv.cview(), probs.view(), out.view());
    O::attention_backward(be, qkv.cview(), probs.cview(), dy.cview(), dqkv.view());
    (void)O::sum_squares(be, dw.cview());
  };
  step();
  const std::size_t before = ddpm::detail::tensor_allocation_count().load();
  step();
  step();
  be.synchronize();
  CHECK(ddpm::detail::tensor_allocation_count().load() == before);
}
