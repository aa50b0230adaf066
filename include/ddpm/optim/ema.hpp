// SPDX-License-Identifier: MIT
// ddpm/optim/ema.hpp — exponential moving average of the weights, with warm-up.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ddpm/backend/ops.hpp"
#include "ddpm/core/assert.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::optim {

/// EMA settings. With warm-up the decay after n updates is min(decay, (1 + n) / (10 + n)), as the
/// reference (ref/ddpm.py EMA), so that short runs are not dominated by the initial weights.
struct EmaConfig {
  double decay = 0.999;
  bool warmup = true;
  void validate() const {
    detail::require(decay >= 0 && decay < 1, "optim::EmaConfig::decay", "must be in [0, 1), got ",
                    decay);
  }
};

/// A shadow copy of every parameter value of a model.
template <std::floating_point T, class B>
class Ema {
 public:
  template <class Model>
  Ema(Model& model, EmaConfig cfg, const B& backend = {}) : cfg_(cfg), backend_(backend) {
    cfg_.validate();
    model.visit_parameters([&](std::string_view name, auto& p) {
      Slot s;
      s.name = std::string(name);
      s.value.resize(p.value.shape());
      Ops<B>::copy(backend_, p.value.cview(), s.value.view());
      slots_.push_back(std::move(s));
    });
  }

  [[nodiscard]] const EmaConfig& config() const noexcept { return cfg_; }
  [[nodiscard]] std::uint64_t updates() const noexcept { return n_; }
  void set_updates(std::uint64_t n) noexcept { n_ = n; }
  /// The decay the next update will use.
  [[nodiscard]] double next_decay() const noexcept {
    if (!cfg_.warmup) return cfg_.decay;
    const double w = double(1 + n_ + 1) / double(10 + n_ + 1);
    return w < cfg_.decay ? w : cfg_.decay;
  }

  /// ema = d ema + (1 - d) p for every parameter.
  template <class Model>
  void update(Model& model) {
    const T d = T(next_decay());
    ++n_;
    std::size_t i = 0;
    model.visit_parameters([&](std::string_view, auto& p) {
      Ops<B>::ema_update(backend_, slots_[i].value.view(), p.value.cview(), d);
      ++i;
    });
  }
  /// Writes the averaged weights into `model` (e.g. a second model used for sampling).
  template <class Model>
  void copy_to(Model& model) const {
    std::size_t i = 0;
    model.visit_parameters([&](std::string_view, auto& p) {
      Ops<B>::copy(backend_, slots_[i].value.cview(), p.value.view());
      ++i;
    });
  }
  /// Exchanges the model's weights with the averaged ones (call twice to restore).
  template <class Model>
  void swap_with(Model& model) {
    std::size_t i = 0;
    model.visit_parameters([&](std::string_view, auto& p) {
      std::swap(slots_[i].value, p.value);
      ++i;
    });
  }
  /// v(name, tensor) for every averaged tensor: "<param>".
  template <class V>
  void visit_state(V&& v) {
    for (auto& s : slots_) v(s.name, s.value);
  }

 private:
  struct Slot {
    std::string name;
    Tensor<T, B> value;
  };
  EmaConfig cfg_;
  B backend_;
  std::vector<Slot> slots_;
  std::uint64_t n_ = 0;
};

}  // namespace ddpm::optim
