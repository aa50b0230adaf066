// Test support: deterministic random tensors and parameter randomisation (host memory).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "ddpm/core/rng.hpp"
#include "ddpm/core/shape.hpp"
#include "ddpm/layers/parameter.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::test {

/// `n` normal values with standard deviation `scale`, a pure function of `seed`.
inline std::vector<double> normal_values(std::size_t n, std::uint64_t seed, double scale = 1.0) {
  std::vector<double> v(n);
  Rng{seed}.fill_normal(v.data(), n, rng_stream::user);
  for (double& x : v) x *= scale;
  return v;
}

/// A tensor of normal values (standard deviation `scale`).
template <class T, class B>
Tensor<T, B> random_tensor(const Shape& shape, std::uint64_t seed, double scale = 1.0) {
  const std::vector<double> v = normal_values(shape.numel(), seed, scale);
  Tensor<T, B> t(shape);
  t.copy_from(std::vector<T>(v.begin(), v.end()));
  return t;
}

/// A tensor with every element = v.
template <class T, class B>
Tensor<T, B> filled_tensor(const Shape& shape, T v) {
  Tensor<T, B> t(shape);
  t.copy_from(std::vector<T>(shape.numel(), v));
  return t;
}

/// Host copy of a tensor as doubles.
template <class T, class B>
std::vector<double> to_double(const Tensor<T, B>& t) {
  const std::vector<T> v = t.to_vector();
  return std::vector<double>(v.begin(), v.end());
}
template <class T>
std::vector<double> to_double(ConstView<T> v) {
  return std::vector<double>(v.data(), v.data() + v.size());
}

/// Gives every parameter of `layer` a nonzero random value (the zero-initialised output layers
/// included, so that no gradient vanishes trivially): GroupNorm gamma 1 + 0.25 N(0,1), beta
/// 0.25 N(0,1), class embedding N(0,1), weights U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in the
/// size of one output's slice, biases 0.3 N(0,1) / sqrt(width), with width the length of the
/// preceding weight's slice.
template <class L>
void randomize_parameters(L& layer, std::uint64_t seed) {
  using T = typename L::value_type;
  std::uint64_t k = 0;
  std::size_t fan_in = 1;
  layer.visit_parameters([&](std::string_view name, auto& p) {
    const std::size_t n = p.size();
    std::vector<double> v(n);
    const Rng rng{seed};
    const std::uint64_t stream = rng_stream::make(rng_stream::user, k++);
    const bool is_norm = name.find("norm") != std::string_view::npos;
    const bool is_weight = name.ends_with("weight");
    if (is_norm) {
      for (std::size_t i = 0; i < n; ++i) v[i] = (is_weight ? 1.0 : 0.0) + 0.25 * rng.normal(stream, i);
    } else if (name.starts_with("class_emb")) {
      for (std::size_t i = 0; i < n; ++i) v[i] = rng.normal(stream, i);
    } else if (is_weight) {
      fan_in = p.shape().rank >= 2 ? n / p.shape()[0] : 1;
      const double bound = 1.0 / std::sqrt(double(fan_in));
      for (std::size_t i = 0; i < n; ++i) v[i] = (2.0 * rng.uniform(stream, i) - 1.0) * bound;
    } else {
      for (std::size_t i = 0; i < n; ++i) v[i] = 0.3 * rng.normal(stream, i) / std::sqrt(double(fan_in));
    }
    p.value.copy_from(std::vector<T>(v.begin(), v.end()));
  });
}

/// Sets every parameter gradient of `layer` to zero.
template <class L>
void zero_grads(L& layer) {
  layer.visit_parameters([](std::string_view, auto& p) { p.grad.zero(); });
}

}  // namespace ddpm::test
