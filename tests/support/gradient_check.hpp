// Test support: finite-difference gradient checks (dlib's test_layer, tiny-dnn's
// numeric_gradient) and whole-tensor comparisons that report the worst element.
//
// Gradient checks run in double on backend::Reference: central differences with step h have an
// error of O(h^2) from truncation plus O(eps |loss| / h) from rounding, about 1e-10 for h = 1e-5,
// far below the tolerance, so a failure means a wrong gradient.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ddpm/core/rng.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm::test {

struct GradCheckOptions {
  double step = 1e-5;            ///< central-difference step
  double rtol = 1e-5;            ///< |analytic - numeric| <= rtol max(|a|, |n|) + atol
  double atol = 1e-7;
  std::size_t max_points = 48;   ///< elements perturbed per tensor (all if fewer); a random subset otherwise
  std::uint64_t seed = 99;
};

/// Indices to perturb: all of [0, n), or max_points of them (first, last, and random ones).
inline std::vector<std::size_t> probe_indices(std::size_t n, const GradCheckOptions& o) {
  std::vector<std::size_t> idx;
  if (n <= o.max_points) {
    for (std::size_t i = 0; i < n; ++i) idx.push_back(i);
    return idx;
  }
  idx.push_back(0);
  idx.push_back(n - 1);
  const Rng rng{o.seed};
  for (std::size_t k = 0; idx.size() < o.max_points; ++k)
    idx.push_back(std::size_t(rng.below(n, rng_stream::user, k)));
  return idx;
}

/// Checks `analytic` (d loss / d values) against central differences of loss() over the host
/// values[0, n), which loss() reads. values are restored afterwards.
template <class Loss>
void check_gradient(std::string_view what, double* values, std::size_t n,
                    const std::vector<double>& analytic, Loss&& loss, const GradCheckOptions& o = {}) {
  REQUIRE(analytic.size() == n);
  double worst = 0;
  std::size_t worst_i = 0, failures = 0;
  double worst_a = 0, worst_n = 0;
  for (std::size_t i : probe_indices(n, o)) {
    const double v = values[i];
    values[i] = v + o.step;
    const double lp = loss();
    values[i] = v - o.step;
    const double lm = loss();
    values[i] = v;
    const double num = (lp - lm) / (2 * o.step);
    const double a = analytic[i];
    const double err = std::abs(a - num);
    const double tol = o.rtol * std::max(std::abs(a), std::abs(num)) + o.atol;
    if (err > tol) ++failures;
    if (err / tol > worst) {
      worst = err / tol;
      worst_i = i;
      worst_a = a;
      worst_n = num;
    }
  }
  INFO(what, ": worst element ", worst_i, " analytic ", worst_a, " numeric ", worst_n,
       " (error / tolerance ", worst, ")");
  CHECK(failures == 0);
}

template <class B, class Loss>
void check_gradient(std::string_view what, Tensor<double, B>& values, const std::vector<double>& analytic,
                    Loss&& loss, const GradCheckOptions& o = {}) {
  check_gradient(what, values.data(), values.size(), analytic, loss, o);
}

/// Checks every parameter gradient of `layer` (as left by the caller's backward(), which must
/// have run once from zeroed gradients) against central differences of loss().
template <class L, class Loss>
void check_parameter_gradients(L& layer, Loss&& loss, const GradCheckOptions& o = {}) {
  std::vector<std::string> names;
  std::vector<std::vector<double>> grads;
  layer.visit_parameters([&](std::string_view name, auto& p) {
    names.emplace_back(name);
    const auto g = p.grad.to_vector();
    grads.emplace_back(g.begin(), g.end());
  });
  std::size_t k = 0;
  layer.visit_parameters([&](std::string_view, auto& p) {
    check_gradient(names[k], p.value.data(), p.value.size(), grads[k], loss, o);
    ++k;
  });
}

/// Elementwise |got - want| <= rtol (|want| + floor max|want|): a relative tolerance whose floor
/// (by default 1% of the tensor's largest magnitude) keeps elements that are small only through
/// cancellation from failing on rounding noise. Reports the worst element.
inline void check_close(std::string_view what, const std::vector<double>& got,
                        const std::vector<double>& want, double rtol, double floor = 1e-2) {
  REQUIRE_MESSAGE(got.size() == want.size(), what, ": sizes ", got.size(), " vs ", want.size());
  double scale = 0;
  for (double w : want) scale = std::max(scale, std::abs(w));
  double worst = 0;
  std::size_t wi = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double r = std::abs(got[i] - want[i]) / (std::abs(want[i]) + floor * scale + 1e-300);
    if (!(r <= worst)) {  // NaN counts as worst
      worst = r;
      wi = i;
    }
  }
  INFO(what, ": worst element ", wi, " got ", (got.empty() ? 0.0 : got[wi]), " want ",
       (want.empty() ? 0.0 : want[wi]), ", relative error ", worst, " (tolerance ", rtol, ")");
  CHECK(worst <= rtol);
}

/// Host copies of every parameter gradient of `layer`, in visit order.
template <class L>
std::vector<std::vector<double>> parameter_grads(L& layer) {
  std::vector<std::vector<double>> out;
  layer.visit_parameters([&](std::string_view, auto& p) {
    const auto g = p.grad.to_vector();
    out.emplace_back(g.begin(), g.end());
  });
  return out;
}

/// Checks the accumulate contract of a backward pass bw(View<double> dx, bool acc): acc = false
/// assigns dx (whatever it held), acc = true adds to it; parameter gradients always add.
template <class L, class B, class Backward>
void check_accumulate(L& layer, Tensor<double, B>& dx, Backward&& bw) {
  layer.visit_parameters([](std::string_view, auto& p) { p.grad.zero(); });
  std::fill(dx.data(), dx.data() + dx.size(), 7.0);
  bw(dx.view(), false);
  const std::vector<double> g(dx.data(), dx.data() + dx.size());
  const auto p1 = parameter_grads(layer);
  std::fill(dx.data(), dx.data() + dx.size(), 3.0);
  bw(dx.view(), true);
  std::vector<double> want(g);
  for (double& v : want) v += 3.0;
  check_close("dx with accumulate", std::vector<double>(dx.data(), dx.data() + dx.size()), want, 1e-12);
  const auto p2 = parameter_grads(layer);
  REQUIRE(p1.size() == p2.size());
  for (std::size_t k = 0; k < p1.size(); ++k) {
    std::vector<double> twice(p1[k]);
    for (double& v : twice) v *= 2.0;
    check_close("parameter gradient accumulates", p2[k], twice, 1e-12);
  }
}

/// sum(a * b) in double.
template <class T>
double dot(ConstView<T> a, ConstView<T> b) {
  REQUIRE(a.size() == b.size());
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += double(a[i]) * double(b[i]);
  return s;
}

}  // namespace ddpm::test
