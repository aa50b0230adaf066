// SPDX-License-Identifier: MIT
// tests/helpers/checkpoint_state.hpp — the model, Adam and EMA state that the checkpoint-kill
// test's writer (tests/helpers/checkpoint_writer.cpp) saves, shared with the test that checks
// what it finds on disk. Every value is a function of the step number, so the test can rebuild
// the exact state of any step that was saved and compare every byte.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "ddpm/backend/reference.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/diffusion/diffusion.hpp"
#include "ddpm/optim/adam.hpp"
#include "ddpm/optim/ema.hpp"
#include "ddpm/train/checkpoint.hpp"
#include "helpers/tiny_unet.hpp"

namespace ddpm::test {

using KillModel = Diffusion<schedule::Linear, target::Epsilon, loss::L2, backend::Reference>;

/// A small U-Net: about 0.77 MB per checkpoint (weights, EMA, two Adam moments), so a save takes long enough to be hit by a kill.
inline nn::UNetConfig kill_unet_config() {
  return tiny_unet(0.0, 0);
}

/// Model, Adam and EMA of the writer and of the checker (the same configuration).
struct KillState {
  KillModel model{schedule::Linear{.steps = 50}, kill_unet_config(), 11};
  optim::AdamOptimizer<float, backend::Reference> adam{model.net(), optim::Adam{}, model.backend()};
  optim::Ema<float, backend::Reference> ema{model.net(), optim::EmaConfig{}, model.backend()};

  /// Every tensor as a list of vectors (weights, EMA, Adam moments), in a fixed order.
  [[nodiscard]] std::vector<std::vector<float>> tensors() {
    std::vector<std::vector<float>> out;
    model.net().visit_parameters([&](std::string_view, auto& p) { out.push_back(p.value.to_vector()); });
    ema.visit_state([&](const std::string&, auto& t) { out.push_back(t.to_vector()); });
    adam.visit_state([&](const std::string&, auto& t) { out.push_back(t.to_vector()); });
    return out;
  }
};

/// A value in [-1, 1) (non-negative for Adam's second moment) that depends on the step, the
/// tensor and the element: two steps never give the same state.
inline float state_value(std::uint64_t step, std::uint64_t tensor, std::uint64_t i, bool positive) {
  std::uint64_t h = step * 0x9E3779B97F4A7C15ull ^ (tensor + 1) * 0xC2B2AE3D27D4EB4Full ^
                    (i + 1) * 0x165667B19E3779F9ull;
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 32;
  const float u = float(h >> 40) / float(1u << 24);  // [0, 1)
  return positive ? u : 2.0f * u - 1.0f;
}

/// Puts `s` into the state of step `step` (weights, EMA, Adam moments and counters).
inline void set_state(KillState& s, std::uint64_t step) {
  std::uint64_t k = 0;
  auto fill = [&](auto& t, bool positive) {
    std::vector<float> v(t.size());
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = state_value(step, k, i, positive);
    t.copy_from(v);
    ++k;
  };
  s.model.net().visit_parameters([&](std::string_view, auto& p) { fill(p.value, false); });
  s.ema.visit_state([&](const std::string&, auto& t) { fill(t, false); });
  s.adam.visit_state([&](const std::string& name, auto& t) { fill(t, name.rfind("adam_v.", 0) == 0); });
  s.adam.set_steps(step);
  s.ema.set_updates(step);
}

/// The counters saved with step `step`.
inline TrainCounters counters_for(std::uint64_t step) {
  return TrainCounters{.step = step, .adam_steps = step, .ema_updates = step, .nonfinite_steps = 0,
                       .samples_seen = step * 4};
}

/// True if both lists hold the same bytes.
inline bool same_bytes(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].size() != b[i].size() ||
        (!a[i].empty() && std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(float)) != 0))
      return false;
  return true;
}

}  // namespace ddpm::test
