// SPDX-License-Identifier: MIT
// tests/cuda/test_cuda_ops.cpp — Ops<backend::Cuda> element-wise, resampling, bias, dropout,
// embedding, diffusion and optimiser operations against Ops<backend::Reference> (odd sizes, 7x7
// maps, batch 1, accumulate on/off, empty optional arguments), and the device memory primitives.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda/cuda_test_support.hpp"
#include "ddpm/backend/cuda.hpp"
#include "ddpm/backend/reference.hpp"
#include "ddpm/diffusion/loss/huber.hpp"
#include "ddpm/diffusion/loss/l1.hpp"
#include "ddpm/diffusion/loss/l2.hpp"
#include "ddpm/diffusion/target/epsilon.hpp"
#include "ddpm/diffusion/target/v.hpp"
#include "ddpm/diffusion/target/x0.hpp"

using namespace cuda_test;
using ddpm::ConstView;
using ddpm::Shape;
using ddpm::View;
using Cuda = ddpm::backend::Cuda;

namespace {

const std::vector<std::size_t>& sizes() {
  static const std::vector<std::size_t> s = {0, 1, 7, 9, 31, 33, 100, 1000, 70001, 200003};
  return s;
}

}  // namespace

TEST_CASE("cuda memory: round trip, zero, copy, move, empty tensors") {
  const Buf h = random(1001, 1);
  ddpm::Tensor<float, Cuda> a(Shape{7, 11, 13}, h);
  CHECK(a.to_vector() == h);
  ddpm::Tensor<float, Cuda> b(Shape{1001});
  ddpm::Ops<Cuda>::copy(cuda_be(), a.cview().reshape(Shape{1001}), b.view());
  CHECK(b.to_vector() == h);
  b.zero();
  CHECK(b.to_vector() == Buf(1001, 0.0f));
  ddpm::Tensor<float, Cuda> c(std::move(a));
  CHECK(a.data() == nullptr);
  CHECK(c.to_vector() == h);
  ddpm::Tensor<std::int32_t, Cuda> labels(Shape{5}, std::vector<std::int32_t>{3, -1, 7, 0, 2});
  CHECK(labels.to_vector() == std::vector<std::int32_t>{3, -1, 7, 0, 2});
  ddpm::Tensor<float, Cuda> empty;
  CHECK(empty.to_vector().empty());
  empty.zero();
  // resize within capacity keeps the buffer: no allocation
  const std::size_t before = ddpm::detail::tensor_allocation_count().load();
  c.resize(Shape{10, 10});
  CHECK(ddpm::detail::tensor_allocation_count().load() == before);
  const auto st = ddpm::cuda::memory_stats();
  CHECK(st.in_use > 0);
  CHECK(st.peak_in_use >= st.in_use);
  CHECK(st.reserved >= st.in_use);
}

TEST_CASE("cuda ops: fill, copy, axpby, add, scale, sum_squares") {
  for (std::size_t n : sizes()) {
    const Shape s{n};
    const Buf x = random(n, 1), y0 = random(n, 2);
    const std::string tag = cat(" n=", n);
    oracle("fill" + tag, [&](auto& e) { OpsOf<decltype(e)>::fill(e.be, e.out(s), 0.25f); });
    oracle("copy" + tag, [&](auto& e) { OpsOf<decltype(e)>::copy(e.be, e.in(x, s), e.out(s)); });
    for (float b : {0.0f, 1.5f})
      oracle(cat("axpby b=", b, tag), [&](auto& e) {
        // b = 0 must ignore the old y, NaN included
        Buf init = y0;
        if (n) init[n / 2] = std::numeric_limits<float>::quiet_NaN();
        OpsOf<decltype(e)>::axpby(e.be, -0.75f, e.in(x, s), b, e.inout(b == 0.0f ? init : y0, s));
      });
    oracle("add" + tag, [&](auto& e) { OpsOf<decltype(e)>::add(e.be, e.in(x, s), e.in(y0, s), e.out(s)); });
    oracle("add in place" + tag, [&](auto& e) {
      View<float> o = e.inout(y0, s);
      OpsOf<decltype(e)>::add(e.be, ConstView<float>(o), e.in(x, s), o);
    });
    oracle("scale" + tag, [&](auto& e) { OpsOf<decltype(e)>::scale(e.be, e.inout(x, s), 3.0f); });
    oracle("sum_squares" + tag,
           [&](auto& e) { e.value(OpsOf<decltype(e)>::sum_squares(e.be, e.in(x, s))); }, 1e-10, 0.0);
  }
  // Inf propagates through sum_squares
  Buf bad = random(100, 3);
  bad[37] = std::numeric_limits<float>::infinity();
  ddpm::Tensor<float, Cuda> t(Shape{100}, bad);
  CHECK(std::isinf(ddpm::Ops<Cuda>::sum_squares(cuda_be(), t.cview())));
}

TEST_CASE("cuda ops: silu forward and backward") {
  for (std::size_t n : sizes()) {
    const Shape s{n};
    const Buf x = random(n, 4, -8.0f, 8.0f), dy = random(n, 5), dx0 = random(n, 6);
    oracle(cat("silu_forward n=", n), [&](auto& e) { OpsOf<decltype(e)>::silu_forward(e.be, e.in(x, s), e.out(s)); },
           1e-6, 1e-7);
    for (bool acc : {false, true})
      oracle(cat("silu_backward acc=", acc, " n=", n), [&](auto& e) {
        OpsOf<decltype(e)>::silu_backward(e.be, e.in(x, s), e.in(dy, s), acc ? e.inout(dx0, s) : e.out(s), acc);
      }, 1e-6, 1e-7);
  }
}

TEST_CASE("cuda ops: upsample, concat/split, channel bias and sums (odd shapes)") {
  for (const Shape& s : {Shape{1, 1, 1, 1}, Shape{2, 3, 7, 7}, Shape{1, 5, 4, 6}, Shape{3, 64, 14, 14},
                         Shape{2, 33, 9, 9}}) {
    const std::string tag = cat(" ", s.str());
    const Shape su{s.n(), s.c(), 2 * s.h(), 2 * s.w()}, sb{s.n(), s.c()};
    const Buf x = random(s.numel(), 10), dy = random(su.numel(), 11), dx0 = random(s.numel(), 12);
    oracle("upsample2x_forward" + tag,
           [&](auto& e) { OpsOf<decltype(e)>::upsample2x_forward(e.be, e.in(x, s), e.out(su)); }, 0.0, 0.0);
    for (bool acc : {false, true})
      oracle(cat("upsample2x_backward acc=", acc, tag), [&](auto& e) {
        OpsOf<decltype(e)>::upsample2x_backward(e.be, e.in(dy, su), acc ? e.inout(dx0, s) : e.out(s), acc);
      }, 1e-6, 1e-6);
    const Shape s2{s.n(), s.c() + 3, s.h(), s.w()}, s3{s.n(), 3, s.h(), s.w()};
    const Buf b = random(s3.numel(), 13), g = random(s2.numel(), 14);
    const Buf da0 = random(s.numel(), 15), db0 = random(s3.numel(), 16);
    oracle("concat_channels" + tag, [&](auto& e) {
      OpsOf<decltype(e)>::concat_channels(e.be, e.in(x, s), e.in(b, s3), e.out(s2));
    }, 0.0, 0.0);
    for (bool acc_a : {false, true})
      for (bool acc_b : {false, true})
        oracle(cat("split_channels acc=", acc_a, acc_b, tag), [&](auto& e) {
          OpsOf<decltype(e)>::split_channels(e.be, e.in(g, s2), s.c(), acc_a ? e.inout(da0, s) : e.out(s), acc_a,
                                             acc_b ? e.inout(db0, s3) : e.out(s3), acc_b);
        }, 1e-6, 1e-6);
    oracle("split_channels empty da" + tag, [&](auto& e) {
      OpsOf<decltype(e)>::split_channels(e.be, e.in(g, s2), s.c(), View<float>{}, false, e.out(s3), false);
    }, 0.0, 0.0);
    oracle("split_channels empty db" + tag, [&](auto& e) {
      OpsOf<decltype(e)>::split_channels(e.be, e.in(g, s2), s.c(), e.inout(da0, s), true, View<float>{}, false);
    }, 1e-6, 1e-6);
    const Buf bias = random(sb.numel(), 17);
    oracle("add_channel_bias" + tag, [&](auto& e) {
      OpsOf<decltype(e)>::add_channel_bias(e.be, e.inout(x, s), e.in(bias, sb));
    }, 1e-6, 1e-7);
    oracle("channel_sum" + tag, [&](auto& e) { OpsOf<decltype(e)>::channel_sum(e.be, e.in(x, s), e.out(sb)); },
           1e-5, 1e-5);
  }
}

TEST_CASE("cuda ops: dropout masks are the reference's (Philox regenerated in backward)") {
  for (std::size_t n : sizes())
    for (double p : {0.0, 0.1, 0.5, 0.9}) {
      const Shape s{n};
      const Buf x = random(n, 20), dx0 = random(n, 21);
      const ddpm::Rng rng{1234};
      const std::uint64_t stream = ddpm::rng_stream::make(ddpm::rng_stream::dropout, 77 * 1024 + 3);
      const std::string tag = cat(" p=", p, " n=", n);
      // The mask is exact (same integer and double arithmetic); the values are x * float(1/(1-p)).
      oracle("dropout_forward" + tag, [&](auto& e) {
        OpsOf<decltype(e)>::dropout_forward(e.be, e.in(x, s), e.out(s), p, rng, stream);
      }, 0.0, 0.0);
      // Accumulating, dx + x * s may be contracted into one FMA on the GPU: the product is not
      // rounded, so the result differs by up to half an ulp of |x s| <= 10 (p = 0.9), i.e. 6e-7
      // absolute, whatever the size of the result (it can be ~0 when dx ~ -x s).
      for (bool acc : {false, true})
        oracle(cat("dropout_backward acc=", acc, tag), [&](auto& e) {
          OpsOf<decltype(e)>::dropout_backward(e.be, e.in(x, s), acc ? e.inout(dx0, s) : e.out(s), p, rng, stream,
                                               acc);
        }, acc ? 1e-6 : 0.0, acc ? 1e-6 : 0.0);
    }
}

TEST_CASE("cuda ops: embeddings and timestep features") {
  const Shape st{11, 6};
  const Buf table = random(st.numel(), 30);
  const IBuf labels = {3, 0, 10, 3, 3, 7, 10};  // repeats: backward adds in sample order
  const Shape so{labels.size(), 6};
  const Buf dout = random(so.numel(), 31), dt0 = random(st.numel(), 32);
  oracle("embedding_forward", [&](auto& e) {
    OpsOf<decltype(e)>::embedding_forward(e.be, e.in(table, st), e.in_i32(labels), e.out(so));
  }, 0.0, 0.0);
  oracle("embedding_backward", [&](auto& e) {
    OpsOf<decltype(e)>::embedding_backward(e.be, e.in_i32(labels), e.in(dout, so), e.inout(dt0, st));
  }, 0.0, 0.0);  // same order of additions: bitwise
  const IBuf t = {0, 1, 17, 500, 999, 4};
  for (std::size_t D : {2, 7, 32, 33, 64, 128}) {
    const Shape sd{t.size(), D};
    // sin/cos in double on both sides, rounded to float: equal except in rare double-rounding
    // cases (1 ulp), which the tolerance allows.
    oracle(cat("timestep_embedding D=", D), [&](auto& e) {
      OpsOf<decltype(e)>::timestep_embedding(e.be, e.in_i32(t), e.out(sd));
    }, 2e-7, 1e-7);
  }
}

// lincomb (ca a + cb b + cz z) and guidance (u + w (c - u)) are sums of products that nvcc contracts
// into FMAs: up to half an ulp of each product (|products| <= 1 and <= 7) apart from the host's
// separately rounded products, in absolute terms: atol 5e-7 (1e-6 for guidance with w = 3.5).
TEST_CASE("cuda ops: lincomb, guidance, clamp") {
  for (const Shape& s : {Shape{1, 1, 1, 1}, Shape{3, 1, 7, 7}, Shape{5, 3, 8, 8}, Shape{2, 1, 28, 28}}) {
    const std::size_t N = s.n();
    const Shape sn{N};
    const Buf a = random(s.numel(), 40), b = random(s.numel(), 41), z = random(s.numel(), 42);
    const Buf ca = random(N, 43), cb = random(N, 44), cz = random(N, 45);
    const std::string tag = cat(" ", s.str());
    oracle("lincomb" + tag, [&](auto& e) {
      OpsOf<decltype(e)>::lincomb(e.be, e.out(s), e.in(ca, sn), e.in(a, s), e.in(cb, sn), e.in(b, s),
                                  ConstView<float>{}, ConstView<float>{});
    }, 1e-6, 5e-7);
    oracle("lincomb with z" + tag, [&](auto& e) {
      OpsOf<decltype(e)>::lincomb(e.be, e.out(s), e.in(ca, sn), e.in(a, s), e.in(cb, sn), e.in(b, s), e.in(cz, sn),
                                  e.in(z, s));
    }, 1e-6, 5e-7);
    oracle("guidance" + tag, [&](auto& e) {
      OpsOf<decltype(e)>::guidance(e.be, e.in(a, s), e.in(b, s), 3.5f, e.out(s));
    }, 1e-6, 1e-6);
    Buf c = random(s.numel(), 46, -3.0f, 3.0f);
    c[0] = std::numeric_limits<float>::quiet_NaN();  // stays NaN
    oracle("clamp" + tag, [&](auto& e) { OpsOf<decltype(e)>::clamp(e.be, e.inout(c, s), -1.0f, 1.0f); }, 0.0, 0.0);
  }
}

namespace {

/// Shapes of one item (C H W) above 4 x 256 = 1024 elements take more than one block per sample
/// (3x32x32: 3 blocks, 3x37x41: 5, 3x64x64: 12), as every config but mnist does; 70001 samples
/// take more than one pass of the grid's y dimension (65535).
template <class P, class L>
void check_loss(const L& loss, const std::string& name) {
  for (const Shape& s : {Shape{1, 1, 1, 1}, Shape{3, 1, 7, 7}, Shape{4, 3, 16, 16}, Shape{64, 1, 28, 28},
                         Shape{2, 3, 32, 32}, Shape{3, 3, 37, 41}, Shape{2, 3, 64, 64}, Shape{70001, 1, 1, 3}}) {
    const std::size_t N = s.n();
    const Shape sn{N};
    const Buf out = random(s.numel(), 50, -2.0f, 2.0f), x0 = random(s.numel(), 51), eps = random(s.numel(), 52);
    const Buf a = random(N, 53, 0.1f, 1.0f), sg = random(N, 54, 0.1f, 1.0f), w = random(N, 55, 0.0f, 2.0f);
    for (bool weighted : {false, true})
      oracle(cat("diffusion_loss ", name, " weighted=", weighted, " ", s.str()), [&](auto& e) {
        using O = OpsOf<decltype(e)>;
        const double v = O::template diffusion_loss<P>(e.be, loss, e.in(out, s), e.in(x0, s), e.in(eps, s),
                                                       e.in(a, sn), e.in(sg, sn),
                                                       weighted ? e.in(w, sn) : ConstView<float>{}, e.out(s));
        e.value(v);
      }, 1e-5, 1e-7);
  }
}

/// x0 = (xt - s out) / a and the like: the numerator may be one FMA on the GPU, up to half an ulp of
/// |s out| <= 2 (1.2e-7) apart, then divided by a >= 0.1: atol 5e-6 covers it with margin.
template <class P>
void check_predict(const std::string& name) {
  for (const Shape& s : {Shape{1, 1, 1, 1}, Shape{3, 1, 7, 7}, Shape{4, 3, 16, 16}, Shape{70001, 1, 1, 2}}) {
    const std::size_t N = s.n();
    const Shape sn{N};
    const Buf xt = random(s.numel(), 60, -2.0f, 2.0f), out = random(s.numel(), 61, -2.0f, 2.0f);
    const Buf a = random(N, 62, 0.1f, 1.0f), sg = random(N, 63, 0.1f, 1.0f);
    for (bool clip : {false, true}) {
      oracle(cat("predict ", name, " clip=", clip, " ", s.str()), [&](auto& e) {
        OpsOf<decltype(e)>::template predict<P>(e.be, e.in(xt, s), e.in(out, s), e.in(a, sn), e.in(sg, sn), clip,
                                                e.out(s), e.out(s));
      }, 1e-5, 5e-6);
      oracle(cat("predict ", name, " clip=", clip, " no eps ", s.str()), [&](auto& e) {
        OpsOf<decltype(e)>::template predict<P>(e.be, e.in(xt, s), e.in(out, s), e.in(a, sn), e.in(sg, sn), clip,
                                                e.out(s), View<float>{});
      }, 1e-5, 5e-6);
    }
  }
}

}  // namespace

TEST_CASE("cuda ops: diffusion_loss for every built-in target and loss") {
  using namespace ddpm;
  check_loss<target::Epsilon>(loss::L2{}, "eps/l2");
  check_loss<target::Epsilon>(loss::L1{}, "eps/l1");
  check_loss<target::Epsilon>(loss::Huber{.delta = 0.5f}, "eps/huber");
  check_loss<target::X0>(loss::L2{}, "x0/l2");
  check_loss<target::X0>(loss::L1{}, "x0/l1");
  check_loss<target::X0>(loss::Huber{}, "x0/huber");
  check_loss<target::V>(loss::L2{}, "v/l2");
  check_loss<target::V>(loss::L1{}, "v/l1");
  check_loss<target::V>(loss::Huber{.delta = 2.0f}, "v/huber");
}

TEST_CASE("cuda ops: predict for every built-in target") {
  check_predict<ddpm::target::Epsilon>("eps");
  check_predict<ddpm::target::X0>("x0");
  check_predict<ddpm::target::V>("v");
}

TEST_CASE("cuda ops: adam (Adam, AdamW, L2) and EMA") {
  for (std::size_t n : {std::size_t{1}, std::size_t{1000}, std::size_t{70001}}) {
    const Shape s{n};
    const Buf p = random(n, 70), g = random(n, 71), m = random(n, 72, -0.1f, 0.1f), v = random(n, 73, 0.0f, 0.01f);
    for (int mode = 0; mode < 3; ++mode)
      for (std::uint64_t step : {1u, 2u, 100u}) {
        const ddpm::AdamStep st{.lr = 1e-3, .weight_decay = mode == 0 ? 0.0 : 0.01, .decoupled = mode == 1,
                                .step = step, .grad_scale = 0.5};
        oracle(cat("adam_step mode=", mode, " step=", step, " n=", n), [&](auto& e) {
          OpsOf<decltype(e)>::adam_step(e.be, e.inout(p, s), e.in(g, s), e.inout(m, s), e.inout(v, s), st);
        }, 2e-6, 1e-7);
      }
    oracle(cat("ema_update n=", n), [&](auto& e) {
      OpsOf<decltype(e)>::ema_update(e.be, e.inout(p, s), e.in(g, s), 0.999f);
    }, 1e-6, 1e-7);
  }
}

TEST_CASE("cuda ops: fill_normal is Philox's stream: bitwise the host values (rare 1-ulp exceptions)") {
  // Box-Muller is evaluated in double on both sides; CUDA's log/sin/cos and glibc's may differ in
  // the last bit of a double, which changes the float only when the double lies within an ulp of a
  // rounding boundary (probability ~1e-9 per value). So: every value within 1 float ulp, and at most
  // a handful not bitwise equal.
  const ddpm::Rng rng{987654321};
  for (std::uint64_t index0 : {0u, 1u, 2u, 3u, 1000003u})
    for (std::size_t n : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{5}, std::size_t{1} << 20}) {
      const std::uint64_t stream = ddpm::rng_stream::make(ddpm::rng_stream::train_noise, 42);
      Buf host(n);
      rng.fill_normal(host.data(), n, stream, index0);
      ddpm::Tensor<float, Cuda> d(Shape{n});
      ddpm::Ops<Cuda>::fill_normal(cuda_be(), d.view(), rng, stream, index0);
      const Buf got = d.to_vector();
      std::size_t differ = 0, beyond_ulp = 0;
      for (std::size_t i = 0; i < n; ++i) {
        if (std::memcmp(&got[i], &host[i], sizeof(float)) == 0) continue;
        ++differ;
        if (std::nextafter(host[i], got[i]) != got[i]) ++beyond_ulp;
      }
      INFO("index0 ", index0, " n ", n, ": ", differ, " values not bitwise equal");
      CHECK(beyond_ulp == 0);
      CHECK(differ <= 4);
    }
}

TEST_CASE("cuda ops: the element type must be float (compile-time)") {
  // Ops<Cuda>::fill<double>(...) does not compile: "ddpm: Ops<backend::Cuda> supports float tensors
  // only". Checked here only as a reminder that double goes to Reference/Cpu.
  CHECK(std::is_same_v<Cuda::memory_space, ddpm::backend::device_memory>);
  CHECK(Cuda::name == "cuda");
}
