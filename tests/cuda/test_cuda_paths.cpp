// SPDX-License-Identifier: MIT
// tests/cuda/test_cuda_paths.cpp — the launch paths that small shapes never take, forced by the
// shapes and settings chosen here, each checked against the reference and the CPU backend:
// grid-stride loops of more than one pass (more than 65536 x 256 elements), more than 65535 rows
// (the grid's y limit), convolution and attention split into several chunks (backend::Cuda::
// chunk_bytes), TF32 GEMMs, and the device a tag keeps.
#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
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
using Runtime = ddpm::detail::cuda::Runtime<>;

namespace {

/// Elements above which launch_for_each's grid (65536 blocks of 256 threads) loops more than once.
constexpr std::size_t one_pass = std::size_t{65536} * 256;

double rms(const Buf& b) {
  double s = 0;
  for (float v : b) s += double(v) * double(v);
  return b.empty() ? 0.0 : std::sqrt(s / double(b.size()));
}

}  // namespace

TEST_CASE("cuda paths: grid-stride loops of more than one pass") {
  const std::size_t n = one_pass + 4097;  // the second pass covers 4097 elements
  const Shape s{n};
  const Buf x = random(n, 1), y0 = random(n, 2), m = random(n, 3, -0.1f, 0.1f), v = random(n, 4, 0.0f, 0.01f);
  oracle("fill, 2 passes", [&](auto& e) { OpsOf<decltype(e)>::fill(e.be, e.out(s), -0.5f); }, 0.0, 0.0);
  oracle("axpby, 2 passes", [&](auto& e) { OpsOf<decltype(e)>::axpby(e.be, 0.25f, e.in(x, s), 1.5f, e.inout(y0, s)); },
         1e-6, 5e-7);
  oracle("silu_backward acc, 2 passes", [&](auto& e) {
    OpsOf<decltype(e)>::silu_backward(e.be, e.in(x, s), e.in(y0, s), e.inout(m, s), true);
  }, 1e-6, 5e-7);
  const ddpm::AdamStep st{.lr = 1e-3, .weight_decay = 0.01, .decoupled = true, .step = 3, .grad_scale = 1.0};
  oracle("adam_step, 2 passes", [&](auto& e) {
    OpsOf<decltype(e)>::adam_step(e.be, e.inout(y0, s), e.in(x, s), e.inout(m, s), e.inout(v, s), st);
  }, 2e-6, 1e-7);
  oracle("sum_squares, 2 passes", [&](auto& e) { e.value(OpsOf<decltype(e)>::sum_squares(e.be, e.in(x, s))); },
         1e-10, 0.0);
  // Dropout runs one thread per 4 elements: more than one pass needs more than 4 x 65536 x 256.
  const std::size_t nd = 4 * one_pass + 13;
  const Shape sd{nd};
  const Buf xd = random(nd, 5);
  const ddpm::Rng rng{99};
  const std::uint64_t stream = ddpm::rng_stream::make(ddpm::rng_stream::dropout, 5);
  oracle("dropout_forward, 2 passes", [&](auto& e) {
    OpsOf<decltype(e)>::dropout_forward(e.be, e.in(xd, sd), e.out(sd), 0.3, rng, stream);
  }, 0.0, 0.0);
}

TEST_CASE("cuda paths: more than 65535 rows (the grid's y dimension loops)") {
  const std::size_t R = 70001;
  {
    const Shape s{R, 1, 1, 3}, sb{R, 1};
    const Buf x = random(s.numel(), 10), bias = random(R, 11);
    oracle("add_channel_bias, 70001 rows",
           [&](auto& e) { OpsOf<decltype(e)>::add_channel_bias(e.be, e.inout(x, s), e.in(bias, sb)); }, 1e-6, 1e-7);
  }
  {
    const Shape s{1, R, 1, 1}, su{1, R, 2, 2};
    const Buf x = random(s.numel(), 12), dy = random(su.numel(), 13), dx0 = random(s.numel(), 14);
    oracle("upsample2x_forward, 70001 rows",
           [&](auto& e) { OpsOf<decltype(e)>::upsample2x_forward(e.be, e.in(x, s), e.out(su)); }, 0.0, 0.0);
    oracle("upsample2x_backward acc, 70001 rows", [&](auto& e) {
      OpsOf<decltype(e)>::upsample2x_backward(e.be, e.in(dy, su), e.inout(dx0, s), true);
    }, 1e-6, 1e-6);
  }
  {
    const Shape sa{R, 2, 1, 1}, sb{R, 1, 1, 1}, so{R, 3, 1, 1};
    const Buf a = random(sa.numel(), 15), b = random(sb.numel(), 16), g = random(so.numel(), 17);
    oracle("concat_channels, 70001 rows",
           [&](auto& e) { OpsOf<decltype(e)>::concat_channels(e.be, e.in(a, sa), e.in(b, sb), e.out(so)); }, 0.0, 0.0);
    oracle("split_channels, 70001 rows", [&](auto& e) {
      OpsOf<decltype(e)>::split_channels(e.be, e.in(g, so), 2, e.out(sa), false, e.out(sb), false);
    }, 0.0, 0.0);
  }
  {
    const Shape s{R, 1, 1, 2}, sn{R};
    const Buf a = random(s.numel(), 18), b = random(s.numel(), 19), ca = random(R, 20), cb = random(R, 21);
    oracle("lincomb, 70001 rows", [&](auto& e) {
      OpsOf<decltype(e)>::lincomb(e.be, e.out(s), e.in(ca, sn), e.in(a, s), e.in(cb, sn), e.in(b, s),
                                  ConstView<float>{}, ConstView<float>{});
    }, 1e-6, 5e-7);
  }
  {
    const Shape st{5, 3};
    const Buf table = random(st.numel(), 22);
    IBuf labels(R), t(R);
    for (std::size_t i = 0; i < R; ++i) {
      labels[i] = std::int32_t(i % 5);
      t[i] = std::int32_t((i * 7) % 1000);
    }
    oracle("embedding_forward, 70001 rows", [&](auto& e) {
      OpsOf<decltype(e)>::embedding_forward(e.be, e.in(table, st), e.in_i32(labels), e.out(Shape{R, 3}));
    }, 0.0, 0.0);
    oracle("timestep_embedding, 70001 rows", [&](auto& e) {
      OpsOf<decltype(e)>::timestep_embedding(e.be, e.in_i32(t), e.out(Shape{R, 4}));
    }, 2e-7, 1e-7);
  }
  {
    // channel_sum: one warp per row, 8 per block, at most 65536 blocks: 600000 rows take 2 passes.
    const Shape s{2, 300000, 1, 3}, sb{2, 300000};
    const Buf x = random(s.numel(), 23);
    oracle("channel_sum, 600000 rows", [&](auto& e) { OpsOf<decltype(e)>::channel_sum(e.be, e.in(x, s), e.out(sb)); },
           1e-5, 1e-6);
  }
  {
    // Attention softmax: one warp per row of probs, N P = 537600 rows > 8 x 65536 (2 passes); the
    // backward also splits the 2100 samples into 3 chunks under the default 256 MiB budget.
    const Shape s{2100, 2, 16, 16}, sq{2100, 6, 16, 16}, sp{2100, 256, 256};
    const Buf qkv = random(sq.numel(), 24, -1.5f, 1.5f), dout = random(s.numel(), 25);
    oracle("attention_forward, 537600 softmax rows",
           [&](auto& e) { OpsOf<decltype(e)>::attention_forward(e.be, e.in(qkv, sq), e.out(sp), e.out(s)); }, 1e-4,
           1e-6);
    Buf probs(sp.numel()), out(s.numel());
    ddpm::Ops<ddpm::backend::Reference>::attention_forward(ref_be(), ConstView<float>(qkv.data(), sq),
                                                           View<float>(probs.data(), sp), View<float>(out.data(), s));
    oracle("attention_backward, 537600 softmax rows", [&](auto& e) {
      OpsOf<decltype(e)>::attention_backward(e.be, e.in(qkv, sq), e.in(probs, sp), e.in(dout, s), e.out(sq));
    }, 1e-4, 1e-5);
  }
}

TEST_CASE("cuda paths: convolution and attention split into several chunks (chunk_bytes)") {
  struct Case {
    std::size_t n, ci, h, w, co, k, stride, pad;
  };
  for (const Case& k : {Case{5, 3, 9, 9, 4, 3, 1, 1}, Case{5, 4, 8, 8, 6, 3, 2, 1}, Case{3, 17, 7, 7, 9, 3, 1, 1}}) {
    const ddpm::ConvGeometry g{k.k, k.stride, k.pad};
    const Shape sx{k.n, k.ci, k.h, k.w}, sw{k.co, k.ci, k.k, k.k}, sb{k.co};
    const std::size_t ho = g.out_size(k.h), wo = g.out_size(k.w);
    const Shape sy{k.n, k.co, ho, wo};
    // The launcher's scratch per sample: (K + Co) P floats.
    const std::size_t per_sample = (k.ci * k.k * k.k + k.co) * ho * wo * sizeof(float);
    const Buf x = random(sx.numel(), 40), w = random(sw.numel(), 41, -0.3f, 0.3f), b = random(k.co, 42);
    const Buf dy = random(sy.numel(), 43), dx0 = random(sx.numel(), 44), dw0 = random(sw.numel(), 45);
    const Buf db0 = random(k.co, 46);
    // 2 samples per chunk (the last chunk shorter when N is odd), then 1 (a budget below one
    // sample still makes progress).
    for (std::size_t budget : {2 * per_sample + 3, std::size_t{1}}) {
      Cuda chunked = cuda_be();
      chunked.chunk_bytes = budget;
      const std::string tag = cat(" x", sx.str(), " w", sw.str(), " s", k.stride, " chunk_bytes ", budget);
      oracle_on(chunked, "conv2d_forward" + tag, [&](auto& e) {
        OpsOf<decltype(e)>::conv2d_forward(e.be, e.in(x, sx), e.in(w, sw), e.in(b, sb), e.out(sy), g);
      }, 1e-4, 1e-4);
      for (bool acc : {false, true})
        oracle_on(chunked, cat("conv2d_backward acc=", acc, tag), [&](auto& e) {
          OpsOf<decltype(e)>::conv2d_backward(e.be, e.in(x, sx), e.in(w, sw), e.in(dy, sy),
                                              acc ? e.inout(dx0, sx) : e.out(sx), e.inout(dw0, sw), e.inout(db0, sb),
                                              g, acc);
        }, 1e-4, 1e-4);
    }
  }
  for (const Shape& s : {Shape{5, 8, 7, 7}, Shape{3, 16, 8, 8}}) {
    const std::size_t N = s.n(), C = s.c(), P = s.h() * s.w();
    const Shape sq{N, 3 * C, s.h(), s.w()}, sp{N, P, P};
    const Buf qkv = random(sq.numel(), 60, -1.5f, 1.5f), dout = random(s.numel(), 61);
    Buf probs(sp.numel()), out(s.numel());
    ddpm::Ops<ddpm::backend::Reference>::attention_forward(ref_be(), ConstView<float>(qkv.data(), sq),
                                                           View<float>(probs.data(), sp), View<float>(out.data(), s));
    for (std::size_t budget : {2 * P * P * sizeof(float), std::size_t{1}}) {
      Cuda chunked = cuda_be();
      chunked.chunk_bytes = budget;
      oracle_on(chunked, cat("attention_backward ", s.str(), " chunk_bytes ", budget), [&](auto& e) {
        OpsOf<decltype(e)>::attention_backward(e.be, e.in(qkv, sq), e.in(probs, sp), e.in(dout, s), e.out(sq));
      }, 1e-4, 1e-5);
    }
  }
}

TEST_CASE("cuda paths: TF32 GEMMs are close to fp32, and fp32 comes back bitwise after them") {
  // TF32 keeps 10 mantissa bits of each GEMM input (relative 2^-11): a dot product of K random-sign
  // terms is off by ~1e-3 of its typical size. Bound: 1e-2 of the output's RMS.
  Cuda tf32 = cuda_be();
  tf32.tf32 = true;
  Cuda fp32 = cuda_be();
  REQUIRE_FALSE(fp32.tf32);
  using O = ddpm::Ops<Cuda>;
  using R = ddpm::Ops<ddpm::backend::Reference>;
  {
    const Shape sx{256, 512}, sw{512, 512}, sb{512}, sy{256, 512};
    const Buf x = random(sx.numel(), 70), w = random(sw.numel(), 71, -0.1f, 0.1f), b = random(512, 72);
    Buf want(sy.numel());
    R::linear_forward(ref_be(), ConstView<float>(x.data(), sx), ConstView<float>(w.data(), sw),
                      ConstView<float>(b.data(), sb), View<float>(want.data(), sy));
    ddpm::Tensor<float, Cuda> dx(sx, x), dw(sw, w), db(sb, b), dy(sy);
    O::linear_forward(fp32, dx.cview(), dw.cview(), db.cview(), dy.view());
    const Buf first = dy.to_vector();
    O::linear_forward(tf32, dx.cview(), dw.cview(), db.cview(), dy.view());
    const Buf with_tf32 = dy.to_vector();
    O::linear_forward(fp32, dx.cview(), dw.cview(), db.cview(), dy.view());
    const Buf again = dy.to_vector();
    check_close(with_tf32, want, 0.0, 1e-2 * rms(want), "linear_forward tf32 vs reference");
    check_close(first, want, 1e-4, 1e-5, "linear_forward fp32 vs reference");
    INFO("fp32 after a TF32 call differs from fp32 before it: the math mode was not restored");
    CHECK(bitwise_differences(first, again) == 0);
    if (bitwise_differences(first, with_tf32) == 0)
      MESSAGE("note: TF32 gave bitwise the fp32 result for a 256x512x512 GEMM (cuBLAS chose no tensor-core kernel)");
  }
  {
    const ddpm::ConvGeometry g{3, 1, 1};
    const Shape sx{4, 64, 16, 16}, sw{64, 64, 3, 3}, sb{64};
    const Buf x = random(sx.numel(), 73), w = random(sw.numel(), 74, -0.05f, 0.05f), b = random(64, 75);
    const Buf dy = random(sx.numel(), 76);
    Buf want(sx.numel()), dx_want(sx.numel()), dw_want(sw.numel(), 0.0f), db_want(64, 0.0f);
    R::conv2d_forward(ref_be(), ConstView<float>(x.data(), sx), ConstView<float>(w.data(), sw),
                      ConstView<float>(b.data(), sb), View<float>(want.data(), sx), g);
    R::conv2d_backward(ref_be(), ConstView<float>(x.data(), sx), ConstView<float>(w.data(), sw),
                       ConstView<float>(dy.data(), sx), View<float>(dx_want.data(), sx), View<float>(dw_want.data(), sw),
                       View<float>(db_want.data(), sb), g, false);
    ddpm::Tensor<float, Cuda> tx(sx, x), tw(sw, w), tb(sb, b), ty(sx), tdy(sx, dy), tdx(sx), tdw(sw), tdb(sb);
    tdw.zero();
    tdb.zero();
    O::conv2d_forward(tf32, tx.cview(), tw.cview(), tb.cview(), ty.view(), g);
    O::conv2d_backward(tf32, tx.cview(), tw.cview(), tdy.cview(), tdx.view(), tdw.view(), tdb.view(), g, false);
    check_close(ty.to_vector(), want, 0.0, 1e-2 * rms(want), "conv2d_forward tf32 vs reference");
    check_close(tdx.to_vector(), dx_want, 0.0, 1e-2 * rms(dx_want), "conv2d_backward dx tf32 vs reference");
    check_close(tdw.to_vector(), dw_want, 0.0, 1e-2 * rms(dw_want), "conv2d_backward dw tf32 vs reference");
    check_close(tdb.to_vector(), db_want, 1e-5, 1e-4, "conv2d_backward db tf32 (no GEMM) vs reference");
  }
  {
    const Shape s{2, 32, 8, 8}, sq{2, 96, 8, 8}, sp{2, 64, 64};
    const Buf qkv = random(sq.numel(), 77, -1.5f, 1.5f);
    Buf probs(sp.numel()), out(s.numel());
    R::attention_forward(ref_be(), ConstView<float>(qkv.data(), sq), View<float>(probs.data(), sp),
                         View<float>(out.data(), s));
    ddpm::Tensor<float, Cuda> tq(sq, qkv), tp(sp), to(s);
    O::attention_forward(tf32, tq.cview(), tp.view(), to.view());
    check_close(to.to_vector(), out, 0.0, 1e-2 * rms(out), "attention_forward tf32 vs reference");
    check_close(tp.to_vector(), probs, 0.0, 1e-2 * rms(probs) + 1e-3, "attention probs tf32 vs reference");
  }
}

TEST_CASE("cuda paths: a tag keeps its device; memory operations use the pointer's device") {
  const int n = Cuda::device_count();
  const int current = Runtime::current_device();
  {
    const Cuda be;  // the current device, which it leaves current
    CHECK(be.device() == current);
    CHECK(Runtime::current_device() == current);
    const Cuda copy = be;
    CHECK(copy.device() == be.device());
    CHECK(copy.context == be.context);  // one context per device
  }
  {
    const Cuda be(current);  // explicit: made current (it already is)
    CHECK(be.device() == current);
    CHECK(Runtime::current_device() == current);
  }
  if (n < 2) {
    MESSAGE("one CUDA device: the cross-device checks need two and are skipped");
    return;
  }
  // Two devices: a tensor made on device 1, then device 0 made current; every memory operation
  // and every op of a device-1 tag must still act on device 1, and leave device 0 current.
  Runtime::set_current_device(0);
  Cuda be1(1);
  REQUIRE(Runtime::current_device() == 1);
  REQUIRE(be1.device() == 1);
  const Buf h = random(1000, 90), h2 = random(1000, 91);
  ddpm::Tensor<float, Cuda> a(Shape{1000}), b(Shape{1000});
  Runtime::set_current_device(0);
  a.copy_from(h);                      // upload onto device 1 from device 0's thread state
  CHECK(a.to_vector() == h);           // download
  b.copy_from(h2);
  ddpm::Ops<Cuda>::axpby(be1, 2.0f, a.cview(), 1.0f, b.view());  // runs on device 1
  const Buf got = b.to_vector();
  for (std::size_t i = 0; i < h.size(); ++i) CHECK(got[i] == 2.0f * h[i] + h2[i]);
  b.zero();
  CHECK(b.to_vector() == Buf(1000, 0.0f));
  CHECK(Runtime::current_device() == 0);
  const Cuda be0;  // a default tag on device 0 now: not moved back to 1, nor 1 to 0
  CHECK(be0.device() == 0);
  CHECK(be1.device() == 1);
  a.release();  // freed on device 1 while device 0 is current
  b.release();
  be1.synchronize();
  CHECK(Runtime::current_device() == 0);
}
