// tests/diffusion/sampler/legacy_sample.hpp — the sampling loop as it was before the stateful
// solver interface (commit e200904, ddpm/diffusion/sampler/sample.hpp), kept verbatim but for the
// names, so test_samplers.cpp can show that Ancestral and Ddim still give the same bits when both
// are compiled with the same flags. Do not "fix" it: it is the reference.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "ddpm/backend/ops.hpp"
#include "ddpm/core/assert.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/diffusion/sampler/ancestral.hpp"
#include "ddpm/diffusion/sampler/ddim.hpp"
#include "ddpm/diffusion/sampler/sample.hpp"
#include "ddpm/diffusion/sampler/timesteps.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::test_legacy {

using ddpm::SampleOptions;
using ddpm::SampleResult;
namespace sampler = ddpm::sampler;
namespace detail = ddpm::detail;

namespace legacy_detail {


/// One step of a sampler: model timestep t, the coefficients of
///   x_prev = c_x0 x0_hat + c_x x_t + c_eps eps_hat + sigma z
struct SamplerStep {
  std::int32_t t;
  double c_x0, c_x, c_eps, sigma;
};

/// The step list of a sampler over a table's alpha_bar (double).
inline std::vector<SamplerStep> sampler_steps(const std::vector<double>& abar,
                                              const sampler::Ancestral& s) {
  const std::size_t T = abar.size();
  const std::vector<std::int32_t> tau = sampler::spaced_timesteps(T, s.steps == 0 ? T : s.steps);
  std::vector<SamplerStep> out;
  for (std::size_t i = tau.size(); i-- > 0;) {
    const double a_t = abar[std::size_t(tau[i])];
    const double a_prev = i > 0 ? abar[std::size_t(tau[i - 1])] : 1.0;
    const double beta = 1.0 - a_t / a_prev;  // respaced beta, recomputed from alpha_bar
    const double c1 = beta * std::sqrt(a_prev) / (1.0 - a_t);
    const double c2 = (1.0 - a_prev) * std::sqrt(1.0 - beta) / (1.0 - a_t);
    double var = s.variance == sampler::Ancestral::Variance::fixed_small
                     ? beta * (1.0 - a_prev) / (1.0 - a_t)
                     : beta;
    if (i == 0) var = 0.0;  // no noise on the last step
    out.push_back({tau[i], c1, c2, 0.0, std::sqrt(std::max(0.0, var))});
  }
  return out;
}

inline std::vector<SamplerStep> sampler_steps(const std::vector<double>& abar,
                                              const sampler::Ddim& s) {
  detail::require(s.eta >= 0 && std::isfinite(s.eta), "sampler::Ddim::eta", "must be >= 0, got ",
                  s.eta);
  const std::vector<std::int32_t> tau = sampler::spaced_timesteps(abar.size(), s.steps);
  std::vector<SamplerStep> out;
  for (std::size_t i = tau.size(); i-- > 0;) {
    const double a_t = abar[std::size_t(tau[i])];
    const double a_prev = i > 0 ? abar[std::size_t(tau[i - 1])] : 1.0;
    const double sigma = s.eta * std::sqrt((1.0 - a_prev) / (1.0 - a_t)) *
                         std::sqrt(std::max(0.0, 1.0 - a_t / a_prev));
    const double c_eps = std::sqrt(std::max(0.0, 1.0 - a_prev - sigma * sigma));
    out.push_back({tau[i], std::sqrt(a_prev), 0.0, c_eps, i > 0 ? sigma : 0.0});
  }
  return out;
}

/// Per-sample dynamic thresholding (Saharia et al. 2022): s = max(1, quantile_p |x0|), x0 =
/// clamp(x0, -s, s) / s. On host memory.
template <class T>
void dynamic_threshold(std::vector<T>& x0, std::size_t n, double p, std::vector<T>& scratch) {
  const std::size_t item = x0.size() / n;
  for (std::size_t k = 0; k < n; ++k) {
    scratch.assign(x0.begin() + std::ptrdiff_t(k * item), x0.begin() + std::ptrdiff_t((k + 1) * item));
    for (auto& v : scratch) v = std::abs(v);
    const std::size_t q = std::min(item - 1, std::size_t(p * double(item - 1) + 0.5));
    std::nth_element(scratch.begin(), scratch.begin() + std::ptrdiff_t(q), scratch.end());
    const T s = std::max(T(1), scratch[q]);
    for (std::size_t i = 0; i < item; ++i) {
      T& v = x0[k * item + i];
      v = std::clamp(v, -s, s) / s;
    }
  }
}

}  // namespace legacy_detail

/// Runs a sampler (sampler::Ancestral or sampler::Ddim) with a denoiser over `process`
/// (a DiffusionProcess). image_shape is (C, H, W). Noise is a pure function of (seed, step,
/// sample index), so the result does not depend on opts.batch or on the backend's thread count.
template <class Process, class Denoiser, class Sampler>
SampleResult<typename Process::value_type> legacy_sample(const Process& process, Denoiser&& model,
                                                  Shape image_shape, const Sampler& smp,
                                                  const SampleOptions& opts) {
  using T = typename Process::value_type;
  using B = typename Process::backend_type;
  using O = Ops<B>;
  opts.validate(process.steps());
  detail::require(image_shape.rank == 3, "sample: image_shape", "must be (C, H, W), got ",
                  image_shape.str());
  const B& be = process.backend();
  const std::vector<legacy_detail::SamplerStep> steps = legacy_detail::sampler_steps(process.table().alpha_bar_f64, smp);
  const std::size_t total = opts.num_samples;
  const std::size_t bs = opts.batch == 0 ? total : std::min(opts.batch, total);
  const std::size_t item = image_shape.numel();
  const bool cfg = opts.guidance != 1.0;
  const Rng rng{opts.seed};

  SampleResult<T> res;
  res.shape = Shape{total, image_shape[0], image_shape[1], image_shape[2]};
  res.images.resize(total * item);
  for (std::size_t k = 0; k < steps.size(); ++k)
    if (opts.record_every && ((k + 1) % opts.record_every == 0 || k + 1 == steps.size())) {
      res.frame_t.push_back(steps[k].t);
      res.frames.emplace_back(total * item);
    }

  Tensor<T, B> x, x0, eps, z, out, xx, out2, tmp, ca, cb, cz, a, s;
  Tensor<std::int32_t, B> t_dev, y_dev;
  std::vector<std::int32_t> t_host, y_host;
  std::vector<T> host, scratch;
  std::size_t done = 0;
  for (std::size_t first = 0; first < total; first += bs) {
    const std::size_t n = std::min(bs, total - first);
    const Shape sh{n, image_shape[0], image_shape[1], image_shape[2]};
    const Shape sh2{2 * n, image_shape[0], image_shape[1], image_shape[2]};
    for (auto* tt : {&x, &x0, &eps, &z, &out, &tmp}) tt->resize(sh);
    if (opts.zero_init)
      O::fill(be, x.view(), T(0));
    else
      O::fill_normal(be, x.view(), rng, rng_stream::make(rng_stream::sample_init, 0), first * item);
    const bool cond = !opts.labels.empty();
    if (cond) {
      y_host.assign(opts.labels.begin() + std::ptrdiff_t(first),
                    opts.labels.begin() + std::ptrdiff_t(first + n));
      if (cfg) y_host.insert(y_host.end(), n, opts.null_label);
      y_dev.resize(Shape{y_host.size()});
      y_dev.copy_from(y_host);
    }
    if (cfg) {
      xx.resize(sh2);
      out2.resize(sh2);
    }
    auto set_coef = [&](Tensor<T, B>& c, double v) {
      host.assign(n, T(v));
      c.resize(Shape{n});
      c.copy_from(host);
    };
    std::size_t rec = 0;
    for (std::size_t k = 0; k < steps.size(); ++k) {
      const auto& st = steps[k];
      t_host.assign(cfg ? 2 * n : n, st.t);
      t_dev.resize(Shape{t_host.size()});
      t_dev.copy_from(t_host);
      if (cfg) {
        O::copy(be, x.cview(), xx.view().slice(0, n));
        O::copy(be, x.cview(), xx.view().slice(n, n));
        model(xx.cview(), t_dev.cview(), y_dev.cview(), out2.view());
        O::guidance(be, ConstView<T>(out2.view().slice(0, n)), ConstView<T>(out2.view().slice(n, n)),
                    T(opts.guidance), out.view());
      } else {
        model(x.cview(), t_dev.cview(), cond ? y_dev.cview() : ConstView<std::int32_t>{}, out.view());
      }
      const std::vector<std::int32_t> tn(n, st.t);
      const bool thresh = opts.dynamic_threshold > 0.0;
      process.predict(x.cview(), out.cview(), tn, opts.clip && !thresh, x0.view(), eps.view());
      if (thresh) {
        host = x0.to_vector();
        legacy_detail::dynamic_threshold(host, n, opts.dynamic_threshold, scratch);
        x0.copy_from(host);
      }
      if (thresh && st.c_eps != 0.0) {
        // eps consistent with the thresholded x0: eps = (x_t - a x0) / s (predict() already
        // did this for plain clipping)
        const double at = process.table().alpha_bar_f64[std::size_t(st.t)];
        set_coef(a, 1.0 / std::sqrt(1.0 - at));
        set_coef(s, -std::sqrt(at) / std::sqrt(1.0 - at));
        O::lincomb(be, eps.view(), a.cview(), x.cview(), s.cview(), x0.cview(), ConstView<T>{},
                   ConstView<T>{});
      }
      const bool noise = st.sigma > 0.0 && !opts.no_step_noise;
      if (noise)
        O::fill_normal(be, z.view(), rng, rng_stream::make(rng_stream::sample_step, k), first * item);
      // x_prev = c_x0 x0 + (c_x x | c_eps eps) + sigma z
      set_coef(ca, st.c_x0);
      set_coef(cb, st.c_eps != 0.0 ? st.c_eps : st.c_x);
      set_coef(cz, noise ? st.sigma : 0.0);
      O::lincomb(be, tmp.view(), ca.cview(), x0.cview(), cb.cview(),
                 st.c_eps != 0.0 ? eps.cview() : x.cview(), cz.cview(),
                 noise ? z.cview() : ConstView<T>{});
      std::swap(x, tmp);
      if (opts.record_every && ((k + 1) % opts.record_every == 0 || k + 1 == steps.size())) {
        const auto v = x.to_vector();
        std::copy(v.begin(), v.end(), res.frames[rec].begin() + std::ptrdiff_t(first * item));
        ++rec;
      }
      ++done;
      if (opts.progress) opts.progress(done, steps.size() * ((total + bs - 1) / bs));
    }
    const auto v = x.to_vector();
    std::copy(v.begin(), v.end(), res.images.begin() + std::ptrdiff_t(first * item));
  }
  return res;
}

}  // namespace ddpm::test_legacy
