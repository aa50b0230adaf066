// SPDX-License-Identifier: MIT
// ddpm/layers/init.hpp — parameter initialisation from the counter-based Philox generator.
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <vector>

#include "ddpm/core/rng.hpp"
#include "ddpm/layers/parameter.hpp"

namespace ddpm::nn {

/// Hands out initial values to parameters in the order the layers are constructed, which is the
/// order of visit_parameters (PyTorch's named_parameters order): parameter number k (0-based)
/// draws its element i from Philox stream rng_stream::make(rng_stream::init, k), index i. Every
/// call consumes one parameter number, the constant ones included, so adding a zero-init layer
/// does not shift the streams of the others.
///
/// Values are drawn on the host and copied in, so this works for device memory too.
class ParamInit {
 public:
  ParamInit() = default;
  explicit ParamInit(Rng rng) : rng_(rng) {}

  /// U(-bound, bound): PyTorch's default for Conv2d and Linear weights and biases is
  /// bound = 1 / sqrt(fan_in) (kaiming_uniform with a = sqrt(5), and the bias rule).
  template <std::floating_point T, class B>
  void uniform(Parameter<T, B>& p, double bound) {
    const std::uint64_t stream = next_stream();
    std::vector<T> v(p.size());
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = T((2.0 * rng_.uniform(stream, i) - 1.0) * bound);
    p.value.copy_from(v);
  }
  /// N(0, std^2) (PyTorch's default for Embedding is std = 1).
  template <std::floating_point T, class B>
  void normal(Parameter<T, B>& p, double std = 1.0) {
    const std::uint64_t stream = next_stream();
    std::vector<T> v(p.size());
    rng_.fill_normal(v.data(), v.size(), stream);
    for (auto& x : v) x = T(double(x) * std);
    p.value.copy_from(v);
  }
  /// All elements = c (GroupNorm gamma 1 and beta 0; the zero-initialised layers).
  template <std::floating_point T, class B>
  void constant(Parameter<T, B>& p, double c) {
    (void)next_stream();
    std::vector<T> v(p.size(), T(c));
    p.value.copy_from(v);
  }
  /// Number of parameters initialised so far.
  [[nodiscard]] std::uint64_t count() const noexcept { return next_; }

 private:
  std::uint64_t next_stream() noexcept { return rng_stream::make(rng_stream::init, next_++); }

  Rng rng_{};
  std::uint64_t next_ = 0;
};

/// PyTorch's default bound for a weight with `fan_in` inputs per output: 1 / sqrt(fan_in).
inline double default_init_bound(std::size_t fan_in) {
  return fan_in ? 1.0 / std::sqrt(double(fan_in)) : 0.0;
}

}  // namespace ddpm::nn
