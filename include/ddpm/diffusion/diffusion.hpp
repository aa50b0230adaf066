// SPDX-License-Identifier: MIT
// ddpm/diffusion/diffusion.hpp — the composed model: a DiffusionProcess (schedule, target, loss,
// backend: compile-time policies) plus the U-Net (runtime sizes), with the training step and
// sampling. Diffusion<S, P, L, B> implements the policy-free interface Model<T, B>, so the trainer,
// checkpoints and tools are compiled once per (T, B), not once per policy combination.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "ddpm/backend/ops.hpp"
#include "ddpm/core/assert.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/diffusion/edit.hpp"
#include "ddpm/diffusion/process.hpp"
#include "ddpm/diffusion/sampler/sample.hpp"
#include "ddpm/diffusion/sampler/spec.hpp"
#include "ddpm/nn/unet/unet.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm {

/// Per-step training settings.
struct TrainStepOptions {
  /// Probability of replacing a label by the null class (classifier-free guidance training).
  double p_uncond = 0.1;
  /// Global index of this batch's first sample within the step (data-parallel shards draw the
  /// random numbers of their own samples, so N ranks draw what one process would).
  std::size_t sample_offset = 0;
};

/// What the trainer, checkpoints and tools need of a diffusion model, without its policy types.
template <std::floating_point T, class B>
class Model {
 public:
  using value_type = T;
  using backend_type = B;
  virtual ~Model() = default;

  [[nodiscard]] virtual nn::UNet<T, B>& net() = 0;
  [[nodiscard]] virtual const nn::UNet<T, B>& net() const = 0;
  [[nodiscard]] virtual const B& backend() const = 0;
  /// Seed of every random draw of training (timesteps, noise, label drop, dropout).
  [[nodiscard]] virtual std::uint64_t seed() const = 0;
  /// Number of diffusion timesteps T.
  [[nodiscard]] virtual std::size_t steps() const = 0;
  /// Everything that identifies the configuration (policies, T, U-Net), as field -> value.
  [[nodiscard]] virtual std::map<std::string, std::string> signature() const = 0;

  /// One training forward and backward pass on a batch: draws t, noise and the label drop for
  /// `step` from Philox, forms x_t, runs the network, the target and loss policies, and
  /// accumulates the parameter gradients. x0 (N, C, H, W) in [-1, 1], in backend memory; labels
  /// (host, N) in [0, num_classes) or empty for an unconditional model. Returns the mean loss.
  /// x0 is not scanned for NaN/Inf (a pass over the batch every step): a non-finite input gives
  /// a non-finite loss and gradients, which the caller must check before an optimiser step
  /// (Trainer does: it skips the step, see train/trainer.hpp).
  virtual double forward_backward(ConstView<T> x0, std::span<const std::int32_t> labels,
                                  std::uint64_t step, const TrainStepOptions& opts) = 0;
  /// Samples with the current network weights.
  [[nodiscard]] virtual SampleResult<T> sample(const SamplerSpec& sampler,
                                               SampleOptions opts) = 0;
  /// img2img (SDEdit) of opts.num_samples images (NCHW, [-1, 1]); see ddpm::img2img.
  [[nodiscard]] virtual SampleResult<T> img2img(const SamplerSpec&, std::span<const T> /*images*/,
                                                double /*strength*/, SampleOptions) {
    throw std::logic_error("Model::img2img: this model type does not implement editing");
  }
  /// Inpainting (mask 1 = known pixel); see ddpm::inpaint.
  [[nodiscard]] virtual SampleResult<T> inpaint(const SamplerSpec&, std::span<const T> /*images*/,
                                                std::span<const T> /*mask*/, InpaintOptions,
                                                SampleOptions) {
    throw std::logic_error("Model::inpaint: this model type does not implement editing");
  }
  /// Slerp between the starting noises of two seeds, opts.num_samples images; see
  /// ddpm::interpolate.
  [[nodiscard]] virtual SampleResult<T> interpolate(const SamplerSpec&, std::uint64_t /*seed_a*/,
                                                    std::uint64_t /*seed_b*/, SampleOptions) {
    throw std::logic_error("Model::interpolate: this model type does not implement editing");
  }
};

/// The schedule-independent body of Diffusion<S, P, L, B, T>: training step and sampling are
/// instantiated per (P, L, B, T) only.
template <class P, class L, class B, class T = float>
class DiffusionBase : public Model<T, B> {
 public:
  using process_type = GaussianProcess<P, L, B, T>;
  using net_type = nn::UNet<T, B>;
  using ops = Ops<B>;

  DiffusionBase(process_type process, const nn::UNetConfig& net, std::uint64_t seed)
      : process_(std::move(process)), net_(net, process_.backend(), seed), seed_(seed) {}

  [[nodiscard]] const process_type& process() const noexcept { return process_; }
  [[nodiscard]] net_type& net() override { return net_; }
  [[nodiscard]] const net_type& net() const override { return net_; }
  [[nodiscard]] const B& backend() const override { return process_.backend(); }
  [[nodiscard]] std::uint64_t seed() const override { return seed_; }
  [[nodiscard]] std::size_t steps() const override { return process_.steps(); }
  [[nodiscard]] const nn::UNetConfig& config() const noexcept { return net_.config(); }

  [[nodiscard]] std::map<std::string, std::string> signature() const override {
    auto sig = process_.signature();
    sig["unet"] = net_.config().describe();
    sig["value_type"] = sizeof(T) == 4 ? "f32" : "f64";
    return sig;
  }

  double forward_backward(ConstView<T> x0, std::span<const std::int32_t> labels, std::uint64_t step,
                          const TrainStepOptions& opts) override {
    const auto& cfg = net_.config();
    const std::size_t N = x0.n(), item = x0.size() / (N ? N : 1);
    DDPM_REQUIRE(x0.shape().rank == 4 && x0.c() == cfg.in_channels &&
                        x0.h() == cfg.image_size && x0.w() == cfg.image_size,
                    "forward_backward: x0", "expected (N, ", cfg.in_channels, ", ",
                    cfg.image_size, ", ", cfg.image_size, "), got ", x0.shape().str());
    detail::require(opts.p_uncond >= 0 && opts.p_uncond <= 1, "TrainStepOptions::p_uncond",
                    "must be in [0, 1], got ", opts.p_uncond);
    const Rng rng{seed_};
    // timesteps
    t_host_.resize(N);
    for (std::size_t n = 0; n < N; ++n)
      t_host_[n] = std::int32_t(rng.below(process_.steps(),
                                          rng_stream::make(rng_stream::train_t, step),
                                          opts.sample_offset + n));
    // labels with classifier-free label drop
    const bool cond = cfg.num_classes > 0;
    if (cond) {
      detail::require(labels.size() == N, "forward_backward: labels", "got ", labels.size(),
                      " labels for ", N, " images of a class-conditional model");
      y_host_.resize(N);
      for (std::size_t n = 0; n < N; ++n) {
        DDPM_REQUIRE(labels[n] >= 0 && std::size_t(labels[n]) < cfg.num_classes,
                        "forward_backward: labels", "label ", labels[n], " outside [0, ",
                        cfg.num_classes, ")");
        const bool drop = opts.p_uncond > 0 &&
                          rng.uniform(rng_stream::make(rng_stream::label_drop, step),
                                      opts.sample_offset + n) < opts.p_uncond;
        y_host_[n] = drop ? std::int32_t(cfg.num_classes) : labels[n];
      }
      y_.resize(Shape{N});
      y_.copy_from(y_host_);
    }
    for (auto* t : {&eps_, &xt_, &out_, &dout_}) t->resize(x0.shape());
    ops::fill_normal(backend(), eps_.view(), rng, rng_stream::make(rng_stream::train_noise, step),
                     opts.sample_offset * item);
    process_.q_sample(x0, eps_.cview(), t_host_, xt_.view());
    t_.resize(Shape{N});
    t_.copy_from(t_host_);
    net_.forward(xt_.cview(), t_.cview(), cond ? y_.cview() : ConstView<std::int32_t>{},
                 out_.view(), nn::Pass{.train = true, .rng = rng, .step = step});
    const double loss =
        process_.loss_and_grad(out_.cview(), x0, eps_.cview(), t_host_, dout_.view());
    net_.backward(dout_.cview());
    return loss;
  }

  [[nodiscard]] SampleResult<T> sample(const SamplerSpec& smp, SampleOptions opts) override {
    return run(smp, opts, [&](const auto& s, auto& denoiser, Shape img, const SampleOptions& o) {
      return ddpm::sample(process_, denoiser, img, s, o);
    });
  }
  [[nodiscard]] SampleResult<T> img2img(const SamplerSpec& smp, std::span<const T> images,
                                        double strength, SampleOptions opts) override {
    return run(smp, opts, [&](const auto& s, auto& denoiser, Shape img, const SampleOptions& o) {
      return ddpm::img2img(process_, denoiser, img, s, images, strength, o);
    });
  }
  [[nodiscard]] SampleResult<T> inpaint(const SamplerSpec& smp, std::span<const T> images,
                                        std::span<const T> mask, InpaintOptions io,
                                        SampleOptions opts) override {
    return run(smp, opts, [&](const auto& s, auto& denoiser, Shape img, const SampleOptions& o) {
      return ddpm::inpaint(process_, denoiser, img, s, images, mask, io, o);
    });
  }
  [[nodiscard]] SampleResult<T> interpolate(const SamplerSpec& smp, std::uint64_t seed_a,
                                            std::uint64_t seed_b, SampleOptions opts) override {
    return run(smp, opts, [&](const auto& s, auto& denoiser, Shape img, const SampleOptions& o) {
      return ddpm::interpolate(process_, denoiser, img, s, seed_a, seed_b, o);
    });
  }

 private:
  /// Checks the labels against the model, then runs `f(sampler, denoiser, image shape, opts)`
  /// with the sampler chosen at run time.
  template <class F>
  SampleResult<T> run(const SamplerSpec& smp, SampleOptions& opts, F&& f) {
    const auto& cfg = net_.config();
    if (cfg.num_classes > 0) {
      opts.null_label = std::int32_t(cfg.num_classes);
      for (std::int32_t y : opts.labels)
        detail::require(y >= 0 && std::size_t(y) <= cfg.num_classes, "SampleOptions::labels",
                        "label ", y, " outside [0, ", cfg.num_classes, "]");
    } else {
      detail::require(opts.labels.empty(), "SampleOptions::labels",
                      "the model is unconditional (num_classes = 0)");
    }
    auto denoiser = [this](ConstView<T> x, ConstView<std::int32_t> t, ConstView<std::int32_t> y,
                           View<T> out) { net_.forward(x, t, y, out, nn::Pass{}); };
    const Shape img{cfg.in_channels, cfg.image_size, cfg.image_size};
    return std::visit([&](const auto& s) { return f(s, denoiser, img, opts); }, smp);
  }

  process_type process_;
  net_type net_;
  std::uint64_t seed_;
  // step buffers (reused)
  Tensor<T, B> eps_, xt_, out_, dout_;
  Tensor<std::int32_t, B> t_, y_;
  std::vector<std::int32_t> t_host_, y_host_;
};

/// The diffusion model of policies S (schedule), P (target), L (loss) on backend B: a
/// DiffusionProcess plus the U-Net. Checked at one boundary (see DiffusionProcess).
template <class S, class P, class L, class B, class T = float>
class Diffusion final : public DiffusionBase<P, L, B, T> {
  static_assert(Schedule<S>,
                "ddpm: the schedule policy S is not a ddpm::Schedule: it must be copyable and "
                "provide num_steps() and beta(t) or alpha_bar(t) (see ddpm/core/concepts.hpp)");

 public:
  using schedule_type = S;

  /// @throws std::invalid_argument naming the bad parameter (schedule, loss, U-Net config).
  Diffusion(S schedule, const nn::UNetConfig& net, std::uint64_t seed = 0, L loss = {},
            B backend = {}, ProcessOptions opts = {})
      : DiffusionBase<P, L, B, T>(
            GaussianProcess<P, L, B, T>(make_table<T>(schedule),
                                        detail::describe_policy(schedule, "custom"),
                                        std::move(loss), std::move(backend), opts),
            net, seed),
        schedule_(std::move(schedule)) {}

  [[nodiscard]] const S& schedule() const noexcept { return schedule_; }

 private:
  S schedule_;
};

}  // namespace ddpm
