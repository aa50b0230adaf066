// SPDX-License-Identifier: MIT
// ddpm/optim/adam.hpp — Adam / AdamW with PyTorch semantics, and gradient-norm utilities.
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ddpm/backend/ops.hpp"
#include "ddpm/backend/params.hpp"
#include "ddpm/core/assert.hpp"
#include "ddpm/optim/param_list.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::optim {

/// Adam hyper-parameters. weight_decay is L2 added to the gradient (torch.optim.Adam) unless
/// `decoupled` (torch.optim.AdamW).
struct Adam {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled = false;

  void validate() const {
    detail::require(lr > 0 && std::isfinite(lr), "optim::Adam::lr", "must be > 0, got ", lr);
    detail::require(beta1 >= 0 && beta1 < 1, "optim::Adam::beta1", "must be in [0, 1), got ", beta1);
    detail::require(beta2 >= 0 && beta2 < 1, "optim::Adam::beta2", "must be in [0, 1), got ", beta2);
    detail::require(eps > 0 && std::isfinite(eps), "optim::Adam::eps", "must be > 0, got ", eps);
    detail::require(weight_decay >= 0 && std::isfinite(weight_decay), "optim::Adam::weight_decay",
                    "must be >= 0, got ", weight_decay);
  }
};

/// Adam state (first and second moments) for every parameter of a model, collected once at
/// construction (dlib's solver contract: always used with the same model instance, which must not
/// move afterwards).
template <std::floating_point T, class B>
class AdamOptimizer {
 public:
  template <class Model>
  AdamOptimizer(Model& model, Adam cfg, const B& backend = {})
      : cfg_(cfg), backend_(backend), params_(collect_parameters<T, B>(model)) {
    cfg_.validate();
    for (const auto& p : params_) {
      Slot s;
      s.m.resize(p.value->shape());
      s.v.resize(p.value->shape());
      Ops<B>::fill(backend_, s.m.view(), T(0));
      Ops<B>::fill(backend_, s.v.view(), T(0));
      slots_.push_back(std::move(s));
    }
  }

  [[nodiscard]] const Adam& config() const noexcept { return cfg_; }
  [[nodiscard]] const std::vector<ParamRef<T, B>>& parameters() const noexcept { return params_; }
  /// Number of steps taken (bias correction uses steps() + 1 for the next step).
  [[nodiscard]] std::uint64_t steps() const noexcept { return step_; }
  void set_steps(std::uint64_t s) noexcept { step_ = s; }

  /// One update of every parameter with learning rate `lr`, the gradients first multiplied by
  /// `grad_scale` (clipping, micro-batch averaging).
  void step(double lr, double grad_scale = 1.0) {
    ++step_;
    const AdamStep s{.lr = lr, .beta1 = cfg_.beta1, .beta2 = cfg_.beta2, .eps = cfg_.eps,
                     .weight_decay = cfg_.weight_decay, .decoupled = cfg_.decoupled,
                     .step = step_, .grad_scale = grad_scale};
    for (std::size_t i = 0; i < params_.size(); ++i)
      Ops<B>::adam_step(backend_, params_[i].value->view(), params_[i].grad->cview(),
                        slots_[i].m.view(), slots_[i].v.view(), s);
  }

  /// v(name, tensor) for every state tensor: "adam_m.<param>", "adam_v.<param>".
  template <class V>
  void visit_state(V&& v) {
    for (std::size_t i = 0; i < params_.size(); ++i) {
      v("adam_m." + params_[i].name, slots_[i].m);
      v("adam_v." + params_[i].name, slots_[i].v);
    }
  }

 private:
  struct Slot {
    Tensor<T, B> m, v;
  };
  Adam cfg_;
  B backend_;
  std::vector<ParamRef<T, B>> params_;
  std::vector<Slot> slots_;
  std::uint64_t step_ = 0;
};

/// torch.nn.utils.clip_grad_norm_: the factor min(1, max_norm / (norm + 1e-6)) to apply to the
/// gradients (returned rather than applied, so that it folds into the Adam step).
inline double clip_factor(double norm, double max_norm) {
  if (max_norm <= 0 || !std::isfinite(norm)) return 1.0;
  const double c = max_norm / (norm + 1e-6);
  return c < 1.0 ? c : 1.0;
}

/// Linear learning-rate warm-up as the reference: lr * min(1, (step + 1) / warmup), step 0-based.
inline double warmup_lr(double lr, std::uint64_t step, std::uint64_t warmup) {
  if (warmup == 0) return lr;
  const double f = double(step + 1) / double(warmup);
  return f < 1.0 ? lr * f : lr;
}

}  // namespace ddpm::optim
