// SPDX-License-Identifier: MIT
// tests/cuda/test_cuda_model.cpp — the CUDA backend end to end against the SIMD CPU backend: one full
// training step of the tiny U-Net (tests/helpers/tiny_unet.hpp) from the same weights, batch and
// seed; DDIM (eta 0) and ancestral sampling from the same seed; checkpoints saved on one backend and
// loaded on the other; no device allocation in a steady-state training step; the Trainer on CUDA
// (against the Trainer on the CPU, and a bit-identical resume).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include "cuda/cuda_test_support.hpp"
#include "ddpm/backend/cpu.hpp"
#include "ddpm/backend/cuda.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/diffusion/diffusion.hpp"
#include "ddpm/optim/adam.hpp"
#include "ddpm/optim/ema.hpp"
#include "ddpm/optim/param_list.hpp"
#include "helpers/tiny_unet.hpp"
#include "support/random.hpp"
#if defined(DDPM_TEST_HAVE_IO)
#include "ddpm/train/checkpoint.hpp"
#include "ddpm/train/trainer.hpp"
#endif

using namespace ddpm;
using cuda_test::Buf;
using Cpu = backend::Cpu;
using Cuda = backend::Cuda;

namespace {

/// The tests' tiny U-Net (1x8x8, base 8, attention at 4x4, 3 classes) with dropout 0.1.
nn::UNetConfig small_config() { return test::tiny_unet(0.1, 3); }

template <class B>
using SmallModel = Diffusion<schedule::Cosine, target::Epsilon, loss::Huber, B>;

/// A model of the small config with every parameter random (the zero-initialised output layers
/// would otherwise stop every gradient but conv_out's), identical on both backends.
template <class B>
std::unique_ptr<SmallModel<B>> make_model(const B& be) {
  auto m = std::make_unique<SmallModel<B>>(schedule::Cosine{.steps = 1000}, small_config(), /*seed=*/11,
                                           loss::Huber{}, be);
  test::randomize_parameters(m->net(), 99);
  return m;
}

Cpu& cpu_be() { return cuda_test::cpu_be(); }

struct Batch {
  Shape shape{8, 1, 8, 8};
  Buf x0;
  std::vector<std::int32_t> labels{0, 1, 2, 0, 1, 2, 1, 0};
  Batch() {
    x0 = cuda_test::random(shape.numel(), 5);
    for (std::size_t i = 0; i < x0.size(); ++i) x0[i] = x0[i] > 0.2f ? 1.0f : -1.0f;  // binary "digits"
  }
};

/// Samples of the same seed on the CPU (rc) and on CUDA (rg) differ only by the network's fp32
/// rounding (see the sampling tests below): at most 5e-3 per pixel, 5e-4 on average.
void check_samples_agree(const SampleResult<float>& rc, const SampleResult<float>& rg,
                         const std::string& what) {
  REQUIRE(rc.images.size() == rg.images.size());
  double worst = 0, mean = 0;
  for (std::size_t i = 0; i < rc.images.size(); ++i) {
    const double d = std::abs(double(rc.images[i]) - double(rg.images[i]));
    worst = std::max(worst, d);
    mean += d / double(rc.images.size());
  }
  INFO(what, ": max |cuda - cpu| = ", worst, ", mean ", mean);
  CHECK(worst <= 5e-3);
  CHECK(mean <= 5e-4);
}

template <class B>
std::vector<Buf> values(SmallModel<B>& m) {
  std::vector<Buf> v;
  m.net().visit_parameters([&](std::string_view, auto& p) { v.push_back(p.value.to_vector()); });
  return v;
}
template <class B>
std::vector<Buf> grads(SmallModel<B>& m) {
  std::vector<Buf> v;
  m.net().visit_parameters([&](std::string_view, auto& p) { v.push_back(p.grad.to_vector()); });
  return v;
}
std::vector<std::string> names(SmallModel<Cpu>& m) {
  std::vector<std::string> v;
  m.net().visit_parameters([&](std::string_view n, auto&) { v.emplace_back(n); });
  return v;
}

double max_abs(const Buf& b) {
  double m = 0;
  for (float x : b) m = std::max(m, double(std::abs(x)));
  return m;
}

}  // namespace

TEST_CASE("cuda model: one training step equals the CPU backend's (same weights, batch and seed)") {
  const Batch batch;
  auto pmc = make_model(cpu_be());
  auto& mc = *pmc;
  auto pmg = make_model(cuda_test::cuda_be());
  auto& mg = *pmg;
  REQUIRE(values(mc) == values(mg));  // initialisation is drawn on the host: bitwise equal

  Tensor<float, Cpu> xc(batch.shape, batch.x0);
  Tensor<float, Cuda> xg(batch.shape, batch.x0);
  const auto pc = optim::collect_parameters<float, Cpu>(mc.net());
  const auto pg = optim::collect_parameters<float, Cuda>(mg.net());
  optim::zero_grads(pc, cpu_be());
  optim::zero_grads(pg, cuda_test::cuda_be());
  const std::uint64_t step = 17;  // t, noise, label drop and dropout masks are Philox draws of this step
  const double lc = mc.forward_backward(xc.cview(), batch.labels, step, {});
  const double lg = mg.forward_backward(xg.cview(), batch.labels, step, {});
  INFO("loss cpu ", lc, " cuda ", lg);
  CHECK(std::abs(lg - lc) <= 1e-4 * std::abs(lc));

  // Gradients. Both backends compute in fp32 with different summation orders (cuBLAS GEMMs and
  // block reductions vs the CPU's blocked GEMM/Winograd and chunked sums), ~1e-6 relative per
  // operation; through ~40 layers forward and backward this grows to ~1e-4 of a tensor's largest
  // gradient. The bound is 2e-3 of the largest |gradient| of each tensor (plus 1e-7 absolute), which
  // a wrong index, mask or missing term exceeds by orders of magnitude.
  const auto gc = grads(mc), gg = grads(mg);
  const auto nm = names(mc);
  REQUIRE(gc.size() == gg.size());
  for (std::size_t i = 0; i < gc.size(); ++i) {
    const double scale = max_abs(gc[i]);
    double worst = 0;
    for (std::size_t j = 0; j < gc[i].size(); ++j) worst = std::max(worst, double(std::abs(gg[i][j] - gc[i][j])));
    INFO("gradient of ", nm[i], ": max |cuda - cpu| = ", worst, ", max |cpu| = ", scale);
    CHECK(worst <= 2e-3 * scale + 1e-7);
  }

  // The rest of the step: global norm, clipping folded into Adam, EMA.
  const double nc = optim::grad_norm(pc, cpu_be()), ng = optim::grad_norm(pg, cuda_test::cuda_be());
  CHECK(std::abs(ng - nc) <= 1e-4 * nc);
  const double lr = 1e-3;
  optim::AdamOptimizer<float, Cpu> ac(mc.net(), optim::Adam{.lr = lr}, cpu_be());
  optim::AdamOptimizer<float, Cuda> ag(mg.net(), optim::Adam{.lr = lr}, cuda_test::cuda_be());
  optim::Ema<float, Cpu> ec(mc.net(), {.decay = 0.999}, cpu_be());
  optim::Ema<float, Cuda> eg(mg.net(), {.decay = 0.999}, cuda_test::cuda_be());
  ac.step(lr, optim::clip_factor(nc, 1.0));
  ag.step(lr, optim::clip_factor(ng, 1.0));
  ec.update();
  eg.update();
  // Adam's first step moves each weight by lr * g / (|g| + eps'), i.e. +-lr wherever |g| >> 1e-8:
  // identical on both backends unless a gradient is so close to 0 that its two fp32 values differ
  // in sign. So: every weight within 2 lr, and all but a handful (< 0.1 %) within 1e-6.
  const auto vc = values(mc), vg = values(mg);
  std::size_t total = 0, off = 0;
  double worst = 0;
  for (std::size_t i = 0; i < vc.size(); ++i)
    for (std::size_t j = 0; j < vc[i].size(); ++j) {
      const double d = std::abs(double(vg[i][j]) - double(vc[i][j]));
      worst = std::max(worst, d);
      off += d > 1e-6 + 1e-6 * std::abs(vc[i][j]);
      ++total;
    }
  INFO(off, " of ", total, " weights differ by more than 1e-6 after the Adam step; worst ", worst);
  CHECK(worst <= 2.0 * lr + 1e-6);
  CHECK(double(off) <= 1e-3 * double(total));
}

TEST_CASE("cuda model: a steady-state training step allocates no device memory") {
  const Batch batch;
  auto pmg = make_model(cuda_test::cuda_be());
  auto& mg = *pmg;
  Tensor<float, Cuda> xg(batch.shape, batch.x0);
  const auto pg = optim::collect_parameters<float, Cuda>(mg.net());
  optim::AdamOptimizer<float, Cuda> ag(mg.net(), optim::Adam{.lr = 1e-4}, cuda_test::cuda_be());
  auto step = [&](std::uint64_t s) {
    optim::zero_grads(pg, cuda_test::cuda_be());
    const double l = mg.forward_backward(xg.cview(), batch.labels, s, {});
    ag.step(1e-4, optim::clip_factor(optim::grad_norm(pg, cuda_test::cuda_be()), 1.0));
    return l;
  };
  (void)step(0);
  const std::size_t before = detail::tensor_allocation_count().load();
  const double l1 = step(1), l2 = step(2);
  CHECK(std::isfinite(l1));
  CHECK(std::isfinite(l2));
  CHECK(detail::tensor_allocation_count().load() == before);
  // and the same step twice gives bitwise the same loss (deterministic kernels)
  auto m2 = make_model(cuda_test::cuda_be());
  auto m3 = make_model(cuda_test::cuda_be());
  const double a = m2->forward_backward(xg.cview(), batch.labels, 5, {});
  const double b = m3->forward_backward(xg.cview(), batch.labels, 5, {});
  CHECK(std::memcmp(&a, &b, sizeof a) == 0);
}

TEST_CASE("cuda model: DDIM (eta 0) and ancestral sampling from the same seed agree with the CPU") {
  auto pmc = make_model(cpu_be());
  auto& mc = *pmc;
  auto pmg = make_model(cuda_test::cuda_be());
  auto& mg = *pmg;
  // Both backends see the same x_T and (ancestral) the same Philox step noise; they differ only by
  // the fp32 rounding of the network (~1e-5 of its output). The first step divides by
  // sqrt(abar_T) ~ 0.006 to form x0 (x160), then scales by sqrt(abar_prev) ~ 0.2, and guidance
  // w = 2 triples differences: ~1e-3 at worst for unclipped pixels, far less on average. A wrong
  // kernel moves samples by O(1). Bounds: max 5e-3, mean 5e-4 (samples in [-1, 1]).
  struct Case {
    SamplerSpec sampler;
    double guidance;
  };
  for (const Case& k : {Case{sampler::Ddim{.steps = 10, .eta = 0.0}, 1.0},
                        Case{sampler::Ddim{.steps = 10, .eta = 0.0}, 2.0},
                        Case{sampler::Ancestral{.steps = 10}, 1.0}}) {
    SampleOptions o;
    o.num_samples = 6;
    o.labels = {0, 1, 2, 2, 1, 0};
    o.guidance = k.guidance;
    o.seed = 7;
    check_samples_agree(mc.sample(k.sampler, o), mg.sample(k.sampler, o),
                        "sampler " + std::to_string(k.sampler.index()) + " guidance " +
                            std::to_string(k.guidance));
  }
}

TEST_CASE("cuda model: the multistep and Karras samplers and the edits agree with the CPU") {
  auto pmc = make_model(cpu_be());
  auto& mc = *pmc;
  auto pmg = make_model(cuda_test::cuda_be());
  auto& mg = *pmg;
  // As for DDIM above: the same x_T and Philox noise on both backends, differences only from the
  // network's fp32 rounding (the second-order solvers combine two predictions with coefficients of
  // order 1, so the same bounds are expected to hold; reasoned, not yet measured on a device).
  SampleOptions o;
  o.num_samples = 6;
  o.labels = {0, 1, 2, 2, 1, 0};
  o.guidance = 2.0;
  o.seed = 7;
  for (const char* name : {"dpmpp-2m", "dpmpp-2m-sde", "euler", "heun", "unipc"}) {
    const SamplerSpec smp = sampler::make_sampler(name, 8);
    check_samples_agree(mc.sample(smp, o), mg.sample(smp, o), name);
  }
  // Edits: img2img at strength 0.5 and inpainting (the known pixels come back exactly).
  const auto& cfg = mc.net().config();
  const std::size_t item = cfg.in_channels * cfg.image_size * cfg.image_size;
  std::vector<float> images(o.num_samples * item), mask(item);
  for (std::size_t i = 0; i < images.size(); ++i) images[i] = (i % 7) < 3 ? 0.8f : -0.8f;
  for (std::size_t i = 0; i < item; ++i) mask[i] = i < item / 2 ? 1.0f : 0.0f;
  const SamplerSpec ddim = sampler::Ddim{.steps = 8};
  check_samples_agree(mc.img2img(ddim, images, 0.5, o), mg.img2img(ddim, images, 0.5, o), "img2img");
  const auto ic = mc.inpaint(ddim, images, mask, {}, o);
  const auto ig = mg.inpaint(ddim, images, mask, {}, o);
  check_samples_agree(ic, ig, "inpaint");
  std::size_t kept = 0;
  for (std::size_t n = 0; n < o.num_samples; ++n)
    for (std::size_t i = 0; i < item / 2; ++i) kept += ig.images[n * item + i] == images[n * item + i];
  CHECK(kept == o.num_samples * (item / 2));
}

#if defined(DDPM_TEST_HAVE_IO)
TEST_CASE("cuda model: a checkpoint saved on one backend loads bitwise on the other") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("ddpm_test_cuda_ckpt_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const Batch batch;

  // CUDA -> CPU, with Adam moments and EMA after one step
  auto pmg = make_model(cuda_test::cuda_be());
  auto& mg = *pmg;
  optim::AdamOptimizer<float, Cuda> ag(mg.net(), optim::Adam{.lr = 1e-3}, cuda_test::cuda_be());
  optim::Ema<float, Cuda> eg(mg.net(), {.decay = 0.9}, cuda_test::cuda_be());
  Tensor<float, Cuda> xg(batch.shape, batch.x0);
  (void)mg.forward_backward(xg.cview(), batch.labels, 3, {});
  ag.step(1e-3);
  eg.update();
  save_checkpoint<float, Cuda>(dir / "from_cuda.safetensors", mg, &ag, &eg, TrainCounters{.step = 1}, {}, false);

  SmallModel<Cpu> mc(schedule::Cosine{.steps = 1000}, small_config(), 11, loss::Huber{}, cpu_be());
  optim::AdamOptimizer<float, Cpu> ac(mc.net(), optim::Adam{.lr = 1e-3}, cpu_be());
  optim::Ema<float, Cpu> ec(mc.net(), {.decay = 0.9}, cpu_be());
  const auto info = load_checkpoint<float, Cpu>(dir / "from_cuda.safetensors", mc, &ac, &ec);
  CHECK(info.counters.step == 1);
  CHECK(values(mc) == values(mg));
  std::vector<Buf> sc, sg;
  ac.visit_state([&](const std::string&, auto& t) { sc.push_back(t.to_vector()); });
  ag.visit_state([&](const std::string&, auto& t) { sg.push_back(t.to_vector()); });
  ec.visit_state([&](const std::string&, auto& t) { sc.push_back(t.to_vector()); });
  eg.visit_state([&](const std::string&, auto& t) { sg.push_back(t.to_vector()); });
  CHECK(sc == sg);
  CHECK(ac.steps() == ag.steps());
  CHECK(ec.updates() == eg.updates());

  // CPU -> CUDA
  test::randomize_parameters(mc.net(), 1234);
  save_checkpoint<float, Cpu>(dir / "from_cpu.safetensors", mc, nullptr, nullptr, TrainCounters{.step = 9}, {}, false);
  SmallModel<Cuda> mg2(schedule::Cosine{.steps = 1000}, small_config(), 11, loss::Huber{}, cuda_test::cuda_be());
  (void)load_checkpoint<float, Cuda>(dir / "from_cpu.safetensors", mg2);
  CHECK(values(mg2) == values(mc));
  fs::remove_all(dir);
}

namespace {

TrainConfig trainer_config(std::uint64_t steps, const std::filesystem::path& out = {}) {
  TrainConfig c;
  c.batch_size = 8;
  c.adam.lr = 1e-3;
  c.lr_warmup = 3;
  c.max_steps = steps;
  c.out_dir = out;
  c.progress = false;
  c.handle_sigint = false;
  c.ema = {.decay = 0.99};
  return c;
}

io::ImageDataset trainer_data() {
  return test::tiny_lines(24, [](std::size_t i, std::size_t p) { return std::uint8_t((i * 31 + p * 7) % 64); });
}

}  // namespace

TEST_CASE("cuda model: the Trainer on CUDA follows the Trainer on the CPU (same data, seed and steps)") {
  const auto data = trainer_data();
  const std::uint64_t steps = 6;
  auto pmc = make_model(cpu_be());
  auto pmg = make_model(cuda_test::cuda_be());
  REQUIRE(values(*pmc) == values(*pmg));
  Trainer<float, Cpu> tc(*pmc, trainer_config(steps));
  Trainer<float, Cuda> tg(*pmg, trainer_config(steps));
  const TrainSummary sc = tc.fit(data);
  const TrainSummary sg = tg.fit(data);
  CHECK(sg.first_step == 0);
  CHECK(sg.last_step == steps);
  CHECK(sg.nonfinite_steps == 0);
  // Same batches, timesteps, noise and dropout masks (Philox draws of the step); the weights differ
  // only by the fp32 rounding of each step (see the single-step test), so the last loss agrees to
  // ~1e-4 relative; 1e-3 leaves room for 6 steps of drift. A wrong kernel or a batch drawn
  // differently changes it by O(1).
  INFO("final loss cpu ", sc.final_loss, " cuda ", sg.final_loss, "; mean cpu ", sc.loss_avg100, " cuda ",
       sg.loss_avg100);
  CHECK(std::abs(sg.final_loss - sc.final_loss) <= 1e-3 * std::abs(sc.final_loss));
  CHECK(std::abs(sg.loss_avg100 - sc.loss_avg100) <= 1e-3 * std::abs(sc.loss_avg100));
  // Adam moves a weight by at most ~lr per step, whichever backend: 2 lr per step bounds any
  // difference. Adam's m / sqrt(v) is scale-free, so a gradient element so small (relative to its
  // tensor) that the two backends' fp32 roundings differ in its leading digits moves its weight
  // differently by up to ~lr per step; such elements are rare. Bound: at most 2 % of the weights
  // more than 0.1 lr apart (a wrong kernel or batch moves most of them by ~lr).
  const auto vc = values(*pmc), vg = values(*pmg);
  std::size_t total = 0, off = 0;
  double worst = 0;
  for (std::size_t i = 0; i < vc.size(); ++i)
    for (std::size_t j = 0; j < vc[i].size(); ++j) {
      const double d = std::abs(double(vg[i][j]) - double(vc[i][j]));
      worst = std::max(worst, d);
      off += d > 1e-4;
      ++total;
    }
  INFO(off, " of ", total, " weights differ by more than 1e-4 (0.1 lr) after ", steps, " steps; worst ", worst);
  CHECK(worst <= 2.0 * 1e-3 * double(steps) + 1e-6);
  CHECK(double(off) <= 2e-2 * double(total));
}

TEST_CASE("cuda model: the Trainer on CUDA resumes bit-identically (7 steps = 4, checkpoint, resume, 3)") {
  namespace fs = std::filesystem;
  const auto data = trainer_data();
  const fs::path dir = fs::temp_directory_path() / ("ddpm_test_cuda_resume_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto pa = make_model(cuda_test::cuda_be());
  Trainer<float, Cuda> ta(*pa, trainer_config(7));
  (void)ta.fit(data);
  {
    auto pb = make_model(cuda_test::cuda_be());
    Trainer<float, Cuda> tb(*pb, trainer_config(4, dir));
    (void)tb.fit(data);
    REQUIRE(fs::exists(dir / "checkpoint.safetensors"));
  }
  auto pc = make_model(cuda_test::cuda_be());
  Trainer<float, Cuda> tc(*pc, trainer_config(7, dir));
  const auto ck = tc.resume(dir / "checkpoint.safetensors");
  CHECK(ck.counters.step == 4);
  const TrainSummary s = tc.fit(data);
  CHECK(s.first_step == 4);
  CHECK(s.last_step == 7);
  CHECK(values(*pa) == values(*pc));  // deterministic kernels: bitwise
  std::vector<Buf> ea, ec;
  ta.ema()->visit_state([&](const std::string&, auto& t) { ea.push_back(t.to_vector()); });
  tc.ema()->visit_state([&](const std::string&, auto& t) { ec.push_back(t.to_vector()); });
  ta.adam().visit_state([&](const std::string&, auto& t) { ea.push_back(t.to_vector()); });
  tc.adam().visit_state([&](const std::string&, auto& t) { ec.push_back(t.to_vector()); });
  CHECK(ea == ec);
  fs::remove_all(dir);
}
#endif
