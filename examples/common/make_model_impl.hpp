// examples/common/make_model_impl.hpp — the definition of examples::make_model_for<B, P>: the
// run-time schedule and loss become the policies of ddpm::Diffusion<S, P, L, B>. Included only by
// examples/common/model_<target>.cpp, which instantiate it (one target per translation unit).
#pragma once

#include <memory>
#include <stdexcept>

#include "model_options.hpp"

namespace examples {

namespace detail {
template <class B, class S, class P>
std::unique_ptr<ddpm::Model<float, B>> with_loss(const ModelOptions& o, S s, const B& be) {
  const ddpm::ProcessOptions po{.min_snr_gamma = o.min_snr_gamma};
  if (o.loss == "l1")
    return std::make_unique<ddpm::Diffusion<S, P, ddpm::loss::L1, B>>(s, o.unet, o.seed, ddpm::loss::L1{}, be, po);
  if (o.loss == "huber")
    return std::make_unique<ddpm::Diffusion<S, P, ddpm::loss::Huber, B>>(
        s, o.unet, o.seed, ddpm::loss::Huber{.delta = float(o.huber_delta)}, be, po);
  if (o.loss == "l2")
    return std::make_unique<ddpm::Diffusion<S, P, ddpm::loss::L2, B>>(s, o.unet, o.seed, ddpm::loss::L2{}, be, po);
  throw std::invalid_argument("--loss: unknown loss '" + o.loss + "' (l1, l2, huber)");
}
}  // namespace detail

template <class B, class P>
std::unique_ptr<ddpm::Model<float, B>> make_model_for(const ModelOptions& o, const B& be) {
  if (o.schedule == "linear") return detail::with_loss<B, ddpm::schedule::Linear, P>(o, ddpm::schedule::Linear{.steps = o.timesteps}, be);
  if (o.schedule == "cosine") return detail::with_loss<B, ddpm::schedule::Cosine, P>(o, ddpm::schedule::Cosine{.steps = o.timesteps}, be);
  if (o.schedule == "sigmoid") return detail::with_loss<B, ddpm::schedule::Sigmoid, P>(o, ddpm::schedule::Sigmoid{.steps = o.timesteps}, be);
  throw std::invalid_argument("--schedule: unknown schedule '" + o.schedule + "' (linear, cosine, sigmoid)");
}

}  // namespace examples

/// Instantiates make_model_for<B, P> for backend B (examples/common/model_<target>.cpp for the CPU
/// backend, model_<target>_cuda.cpp for the CUDA one: one backend per translation unit keeps each
/// under a minute of compile time).
#define DDPM_EXAMPLE_MODELS(B, P)                                                         \
  template std::unique_ptr<ddpm::Model<float, B>> examples::make_model_for<B, P>(const ModelOptions&, \
                                                                                const B&);
