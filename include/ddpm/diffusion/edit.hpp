// SPDX-License-Identifier: MIT
// ddpm/diffusion/edit.hpp — image editing with any trained model and any sampler:
//   img2img     (SDEdit, Meng et al. 2022): noise the given images to a strength, then denoise;
//   inpaint     (RePaint, Lugmayr et al. 2022): sample with the known pixels held to the given
//               image at every step (exactly at the end), optionally resampling each step;
//   interpolate: spherical interpolation between two starting noises, sampled as a strip.
// Each is the sampling loop of sampler/sample.hpp with its start or its steps changed, so every
// sampler, target, guidance weight and clipping option works with it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "ddpm/core/assert.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/diffusion/sampler/sample.hpp"

namespace ddpm {

namespace detail {
template <class T>
void check_edit_images(std::span<const T> images, std::size_t n, Shape image_shape,
                       const char* what) {
  detail::require(images.size() == n * image_shape.numel(), what, "has ", images.size(),
                  " values for ", n, " images of ", image_shape.str(), " (", n * image_shape.numel(),
                  " expected)");
  for (T v : images)
    detail::require(std::isfinite(double(v)), what, "contains a non-finite value");
}
}  // namespace detail

/// img2img (SDEdit): for each of opts.num_samples images (NCHW, [-1, 1]), noise it to the plan
/// point of the sampler that leaves floor(S strength) of its S steps, x = sqrt(abar) image +
/// sqrt(1 - abar) z, and run those steps. strength 0 returns the images unchanged; strength 1
/// starts from pure noise and equals sample() with the same options and seed.
/// @throws std::invalid_argument naming the images (wrong size, non-finite) or strength (outside
/// [0, 1]).
template <class Process, class Denoiser, class Sampler>
SampleResult<typename Process::value_type> img2img(
    const Process& process, Denoiser&& model, Shape image_shape, const Sampler& smp,
    std::span<const typename Process::value_type> images, double strength,
    const SampleOptions& opts) {
  detail::require(strength >= 0.0 && strength <= 1.0, "img2img: strength",
                  "must be in [0, 1], got ", strength);
  detail::require(image_shape.rank == 3, "img2img: image_shape", "must be (C, H, W)");
  detail::check_edit_images(images, opts.num_samples, image_shape, "img2img: images");
  detail::EditInputs<typename Process::value_type> e;
  e.images = images;
  e.strength = strength;
  return detail::run_sampler(process, model, image_shape, smp, opts, e);
}

/// Inpainting options.
struct InpaintOptions {
  /// RePaint resampling: after each step, go back one step by the forward process and redo it,
  /// `jumps` times (0 = plain replacement of the known pixels). Needs a sampler without history
  /// (ancestral, ddim, euler, heun). Each jump costs one more network evaluation per step.
  std::size_t jumps = 0;
};

/// Inpainting: samples opts.num_samples images whose pixels with mask 1 are the given images'
/// (exactly, in the result) and whose pixels with mask 0 are generated to fit them. At every
/// step the known pixels are replaced by the image noised to the step's timestep. The mask has
/// H W values (one per pixel, all channels), C H W, or N C H W; values in [0, 1] (fractions
/// blend).
/// @throws std::invalid_argument naming images or mask (wrong size, values outside [0, 1]) or
/// jumps (with a multistep sampler).
template <class Process, class Denoiser, class Sampler>
SampleResult<typename Process::value_type> inpaint(
    const Process& process, Denoiser&& model, Shape image_shape, const Sampler& smp,
    std::span<const typename Process::value_type> images,
    std::span<const typename Process::value_type> mask, const InpaintOptions& io,
    const SampleOptions& opts) {
  detail::require(image_shape.rank == 3, "inpaint: image_shape", "must be (C, H, W)");
  detail::check_edit_images(images, opts.num_samples, image_shape, "inpaint: images");
  const std::size_t hw = image_shape[1] * image_shape[2], item = image_shape.numel();
  detail::require(mask.size() == hw || mask.size() == item || mask.size() == opts.num_samples * item,
                  "inpaint: mask", "has ", mask.size(), " values; expected H W = ", hw,
                  ", C H W = ", item, " or N C H W = ", opts.num_samples * item);
  for (auto m : mask)
    detail::require(m >= 0 && m <= 1, "inpaint: mask", "values must be in [0, 1], got ", m);
  detail::EditInputs<typename Process::value_type> e;
  e.images = images;
  e.mask = mask;
  e.jumps = io.jumps;
  return detail::run_sampler(process, model, image_shape, smp, opts, e);
}

/// Spherical interpolation (slerp) between two vectors: angle from their normalised dot product,
/// linear interpolation when they are (nearly) parallel.
template <class T>
void slerp(std::span<const T> a, std::span<const T> b, double u, std::span<T> out) {
  double ab = 0, aa = 0, bb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    ab += double(a[i]) * b[i];
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
  }
  const double c = std::clamp(ab / std::sqrt(aa * bb), -1.0, 1.0), th = std::acos(c);
  const double wa = th < 1e-6 ? 1 - u : std::sin((1 - u) * th) / std::sin(th);
  const double wb = th < 1e-6 ? u : std::sin(u * th) / std::sin(th);
  for (std::size_t i = 0; i < a.size(); ++i) out[i] = T(wa * a[i] + wb * b[i]);
}

/// Interpolation: opts.num_samples images (>= 2) from starting noises slerped between the noise
/// of seed_a and that of seed_b (each the x_T that sample() draws for its first image with that
/// seed), sampled with opts (step noise from opts.seed for stochastic samplers). The first and
/// last images are the samples of seed_a and seed_b. Labels: one per image, or empty.
template <class Process, class Denoiser, class Sampler>
SampleResult<typename Process::value_type> interpolate(const Process& process, Denoiser&& model,
                                                       Shape image_shape, const Sampler& smp,
                                                       std::uint64_t seed_a, std::uint64_t seed_b,
                                                       const SampleOptions& opts) {
  using T = typename Process::value_type;
  detail::require(opts.num_samples >= 2, "interpolate: num_samples", "must be >= 2, got ",
                  opts.num_samples);
  detail::require(!opts.zero_init, "interpolate: zero_init", "has no starting noise to interpolate");
  const std::size_t item = image_shape.numel(), n = opts.num_samples;
  std::vector<T> za(item), zb(item), init(n * item);
  Rng{seed_a}.fill_normal(za.data(), item, rng_stream::make(rng_stream::sample_init, 0), 0);
  Rng{seed_b}.fill_normal(zb.data(), item, rng_stream::make(rng_stream::sample_init, 0), 0);
  for (std::size_t i = 0; i < n; ++i)
    slerp<T>(za, zb, double(i) / double(n - 1), std::span<T>(init).subspan(i * item, item));
  detail::EditInputs<T> e;
  e.init_noise = init;
  return detail::run_sampler(process, model, image_shape, smp, opts, e);
}

}  // namespace ddpm
