// Tests for ddpm/diffusion/sampler/*.hpp: every sampler driven by the closed-form optimal denoiser
// of a tiny data set must put its samples on the data points (as ref/test_ddpm.py does). The
// convergence orders, the editing functions and the bit-identity with the earlier loop are in
// test_solvers.cpp and test_edit.cpp.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "ddpm/backend/reference.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/diffusion/sampler/sample.hpp"

using namespace ddpm;
using Ref = backend::Reference;

namespace {

constexpr std::size_t K = 4, D = 16;

std::vector<double> data_points() {
  std::vector<double> d(K * D);
  for (std::size_t i = 0; i < D; ++i) {
    d[0 * D + i] = 0.8;
    d[1 * D + i] = -0.8;
    d[2 * D + i] = (i % 2 == 0) ? 0.8 : -0.8;
    d[3 * D + i] = (i % 2 == 0) ? -0.8 : 0.8;
  }
  return d;
}

/// E[x0 | x_t] for the uniform distribution on the data points, output in the target's form.
template <class Process>
struct Oracle {
  const Process* proc;
  std::vector<double> data = data_points();
  void operator()(ConstView<float> x, ConstView<std::int32_t> t, ConstView<std::int32_t>,
                  View<float> out) const {
    const std::size_t n = x.n();
    for (std::size_t b = 0; b < n; ++b) {
      const double ab = proc->table().alpha_bar_f64[std::size_t(t[b])];
      const double a = std::sqrt(ab), s = std::sqrt(1 - ab);
      double logw[K], mx = -1e300;
      for (std::size_t k = 0; k < K; ++k) {
        double d2 = 0;
        for (std::size_t i = 0; i < D; ++i) d2 += std::pow(x[b * D + i] - a * data[k * D + i], 2);
        logw[k] = -d2 / (2 * (1 - ab));
        mx = std::max(mx, logw[k]);
      }
      double z = 0;
      for (double& w : logw) z += (w = std::exp(w - mx));
      for (std::size_t i = 0; i < D; ++i) {
        double x0 = 0;
        for (std::size_t k = 0; k < K; ++k) x0 += logw[k] / z * data[k * D + i];
        const double eps = (x[b * D + i] - a * x0) / s;
        out[b * D + i] = float(Process::target_type::target(x0, eps, a, s));
      }
    }
  }
};

struct Landing {
  double max_dist;
  double min_frac;
};

Landing landing(const std::vector<float>& xs, std::size_t n) {
  const auto data = data_points();
  std::vector<int> count(K, 0);
  double worst = 0;
  for (std::size_t b = 0; b < n; ++b) {
    double best = 1e300;
    std::size_t arg = 0;
    for (std::size_t k = 0; k < K; ++k) {
      double d2 = 0;
      for (std::size_t i = 0; i < D; ++i) d2 += std::pow(xs[b * D + i] - data[k * D + i], 2);
      if (d2 < best) best = d2, arg = k;
    }
    worst = std::max(worst, std::sqrt(best));
    ++count[arg];
  }
  const int mn = *std::min_element(count.begin(), count.end());
  return {worst, double(mn) / double(n)};
}

template <class S, class P, class Smp>
void check_lands(const S& sched, const Smp& smp, std::size_t n = 200) {
  DiffusionProcess<S, P, loss::L2, Ref> proc(sched);
  Oracle<decltype(proc)> oracle{&proc};
  SampleOptions opts;
  opts.num_samples = n;
  opts.seed = 3;
  const auto res = sample(proc, oracle, Shape{1, 4, 4}, smp, opts);
  const Landing l = landing(res.images, n);
  INFO(sched.describe(), " ", P::name, " ", smp.describe(), ": max dist ", l.max_dist,
       ", min mode fraction ", l.min_frac);
  CHECK(l.max_dist < 0.05);
  CHECK(l.min_frac > 0.15);
}

template <class S, class P>
void check_all_samplers(std::size_t T) {
  const S sched{.steps = T};
  for (std::size_t steps : {T, T / 10, std::size_t{10}}) {
    check_lands<S, P>(sched, sampler::Ancestral{.steps = steps});
    check_lands<S, P>(sched, sampler::Ddim{.steps = steps, .eta = 0.0});
  }
  check_lands<S, P>(sched, sampler::Ancestral{.steps = T / 10,
                                              .variance = sampler::Ancestral::Variance::fixed_large});
  check_lands<S, P>(sched, sampler::Ddim{.steps = T / 10, .eta = 1.0});
  // the fast samplers, each on its default spacing and on another one
  for (std::size_t steps : {T / 10, std::size_t{10}}) {
    check_lands<S, P>(sched, sampler::DpmSolverPP{.steps = steps});
    check_lands<S, P>(sched, sampler::DpmSolverPP{.steps = steps, .sde = true});
    check_lands<S, P>(sched, sampler::Euler{.steps = steps});
    check_lands<S, P>(sched, sampler::Heun{.steps = steps});
    check_lands<S, P>(sched, sampler::UniPC{.steps = steps});
  }
  check_lands<S, P>(sched, sampler::DpmSolverPP{.steps = 15, .spacing = sampler::Spacing::karras});
  check_lands<S, P>(sched, sampler::DpmSolverPP{.steps = 15, .spacing = sampler::Spacing::trailing});
  check_lands<S, P>(sched, sampler::UniPC{.steps = 15, .spacing = sampler::Spacing::trailing});
  check_lands<S, P>(sched, sampler::Euler{.steps = 25, .spacing = sampler::Spacing::trailing});
  check_lands<S, P>(sched, sampler::Ddim{.steps = 15, .spacing = sampler::Spacing::trailing});
  check_lands<S, P>(sched, sampler::Ancestral{.steps = 25, .spacing = sampler::Spacing::leading});
}

}  // namespace

TEST_CASE_TEMPLATE("samplers with the optimal denoiser land on the data, linear schedule", P,
                   target::Epsilon, target::X0, target::V) {
  check_all_samplers<schedule::Linear, P>(1000);
}

TEST_CASE_TEMPLATE("samplers with the optimal denoiser land on the data, cosine schedule", P,
                   target::Epsilon, target::X0, target::V) {
  check_all_samplers<schedule::Cosine, P>(1000);
}

TEST_CASE("spaced timesteps match numpy round(linspace(0, T-1, S))") {
  CHECK(sampler::spaced_timesteps(1000, 10) ==
        std::vector<std::int32_t>{0, 111, 222, 333, 444, 555, 666, 777, 888, 999});
  CHECK(sampler::spaced_timesteps(10, 10) == std::vector<std::int32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  CHECK(sampler::spaced_timesteps(1000, 1) == std::vector<std::int32_t>{0});
  CHECK(sampler::spaced_timesteps(5, 4) == std::vector<std::int32_t>{0, 1, 3, 4});  // 1.33, 2.67
  CHECK_THROWS_WITH_AS(sampler::spaced_timesteps(100, 101), doctest::Contains("sampler steps"),
                       std::invalid_argument);
  CHECK_THROWS_AS(sampler::spaced_timesteps(100, 0), std::invalid_argument);
}

TEST_CASE("respaced ancestral: the previous step is the previous respaced step") {
  const auto tab = make_table<double>(schedule::Linear{.steps = 1000});
  const auto steps = detail::sampler_steps(tab.alpha_bar_f64, sampler::Ancestral{.steps = 10});
  REQUIRE(steps.size() == 10);
  // Step from t = 999 goes to t = 888: beta' = 1 - abar(999) / abar(888), not beta(999).
  const double a_t = tab.alpha_bar_f64[999], a_prev = tab.alpha_bar_f64[888];
  const double beta = 1 - a_t / a_prev;
  CHECK(steps[0].t == 999);
  CHECK(steps[0].c_x0 == doctest::Approx(beta * std::sqrt(a_prev) / (1 - a_t)));
  CHECK(steps[0].sigma == doctest::Approx(std::sqrt(beta * (1 - a_prev) / (1 - a_t))));
  CHECK(steps.back().sigma == 0.0);
  // With S = T the steps are the plain DDPM ones (posterior coefficients of the table).
  const auto full = detail::sampler_steps(tab.alpha_bar_f64, sampler::Ancestral{});
  REQUIRE(full.size() == 1000);
  for (std::size_t k = 0; k < 1000; k += 97) {
    const std::size_t t = std::size_t(full[k].t);
    CHECK(full[k].c_x0 == doctest::Approx(tab.posterior_mean_coef1[t]).epsilon(1e-9));
    CHECK(full[k].c_x == doctest::Approx(tab.posterior_mean_coef2[t]).epsilon(1e-9));
  }
}

TEST_CASE("sampling is deterministic per seed and independent of the batch size") {
  DiffusionProcess<schedule::Cosine, target::Epsilon, loss::L2, Ref> proc(schedule::Cosine{.steps = 100});
  Oracle<decltype(proc)> oracle{&proc};
  SampleOptions o;
  o.num_samples = 7;
  o.seed = 11;
  o.record_every = 25;
  const auto a = sample(proc, oracle, Shape{1, 4, 4}, sampler::Ancestral{}, o);
  o.batch = 3;
  const auto b = sample(proc, oracle, Shape{1, 4, 4}, sampler::Ancestral{}, o);
  CHECK(a.images == b.images);
  REQUIRE(a.frames.size() == 4);
  CHECK(a.frame_t == std::vector<std::int32_t>{75, 50, 25, 0});
  CHECK(a.frames == b.frames);
  CHECK(a.frames.back() == a.images);
  o.seed = 12;
  const auto c = sample(proc, oracle, Shape{1, 4, 4}, sampler::Ancestral{}, o);
  CHECK(a.images != c.images);
}

TEST_CASE("ablations: fixed x_T = 0 with no step noise is deterministic across seeds") {
  DiffusionProcess<schedule::Linear, target::Epsilon, loss::L2, Ref> proc(schedule::Linear{.steps = 100});
  Oracle<decltype(proc)> oracle{&proc};
  SampleOptions o;
  o.num_samples = 3;
  o.zero_init = true;
  o.no_step_noise = true;
  o.seed = 1;
  const auto a = sample(proc, oracle, Shape{1, 4, 4}, sampler::Ancestral{}, o);
  o.seed = 2;
  const auto b = sample(proc, oracle, Shape{1, 4, 4}, sampler::Ancestral{}, o);
  CHECK(a.images == b.images);
  // x_T = 0 is equidistant from the symmetric data points: the mean of the data (0) stays put.
  for (float v : a.images) CHECK(std::abs(v) < 1e-3);
}

TEST_CASE("dynamic thresholding keeps samples in [-1, 1] without clipping") {
  DiffusionProcess<schedule::Linear, target::X0, loss::L2, Ref> proc(schedule::Linear{.steps = 50});
  auto wild = [](ConstView<float> x, ConstView<std::int32_t>, ConstView<std::int32_t>, View<float> out) {
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = 3.0f * x[i];
  };
  SampleOptions o;
  o.num_samples = 4;
  o.dynamic_threshold = 0.9;
  const auto r = sample(proc, wild, Shape{1, 4, 4}, sampler::Ddim{.steps = 10}, o);
  for (float v : r.images) CHECK(std::abs(v) <= 1.0f + 1e-5f);
}

TEST_CASE("sample options are validated with the parameter named") {
  DiffusionProcess<schedule::Linear, target::Epsilon, loss::L2, Ref> proc(schedule::Linear{.steps = 50});
  auto zero = [](ConstView<float>, ConstView<std::int32_t>, ConstView<std::int32_t>, View<float> out) {
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = 0;
  };
  SampleOptions o;
  o.num_samples = 2;
  o.labels = {1, 2, 3};
  CHECK_THROWS_WITH_AS(sample(proc, zero, Shape{1, 2, 2}, sampler::Ddim{.steps = 5}, o),
                       doctest::Contains("SampleOptions::labels"), std::invalid_argument);
  o.labels = {};
  o.guidance = 3.0;
  CHECK_THROWS_WITH_AS(sample(proc, zero, Shape{1, 2, 2}, sampler::Ddim{.steps = 5}, o),
                       doctest::Contains("SampleOptions::guidance"), std::invalid_argument);
  o.guidance = 1.0;
  CHECK_THROWS_WITH_AS(sample(proc, zero, Shape{1, 2, 2}, sampler::Ddim{.steps = 51}, o),
                       doctest::Contains("sampler steps"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(sample(proc, zero, Shape{1, 2, 2}, sampler::Ddim{.steps = 5, .eta = -1}, o),
                       doctest::Contains("sampler::Ddim::eta"), std::invalid_argument);
}

TEST_CASE("every sampler keeps the marginals q(x_t) of the data on the way") {
  // With the optimal denoiser and small enough steps, x at respaced step tau is distributed as
  // q(x_tau): per dimension E[x^2] = abar 0.64 + (1 - abar). (With very coarse steps the Gaussian
  // reverse step q(x_s | x_t, E[x0 | x_t]) drops the variance of x0 given x_t, so the check uses
  // S = 100.) A sampler that used the single-step beta(tau) instead of the respaced beta' would
  // keep far too much noise and miss this by a wide margin.
  DiffusionProcess<schedule::Linear, target::Epsilon, loss::L2, Ref> proc(schedule::Linear{.steps = 1000});
  Oracle<decltype(proc)> oracle{&proc};
  SampleOptions o;
  o.num_samples = 1500;
  o.seed = 5;
  o.record_every = 1;
  o.batch = 500;
  auto check = [&](const auto& smp) {
    const auto r = sample(proc, oracle, Shape{1, 4, 4}, smp, o);
    // frame k holds x after step k, i.e. at the next (smaller) respaced timestep.
    const auto tau = sampler::spaced_timesteps(1000, 100);
    for (std::size_t k = 0; k + 1 < r.frames.size(); ++k) {
      const std::size_t t_next = std::size_t(tau[tau.size() - 2 - k]);
      const double ab = proc.table().alpha_bar_f64[t_next];
      double m2 = 0;
      for (float v : r.frames[k]) m2 += double(v) * v;
      m2 /= double(r.frames[k].size());
      INFO(smp.describe(), " after step ", k, " (t = ", t_next, ")");
      CHECK(m2 == doctest::Approx(ab * 0.64 + (1 - ab)).epsilon(0.05));
    }
  };
  check(sampler::Ancestral{.steps = 100});
  check(sampler::Ddim{.steps = 100, .eta = 1.0});
  check(sampler::Ddim{.steps = 100, .eta = 0.0});
  check(sampler::DpmSolverPP{.steps = 100, .sde = true});
  check(sampler::DpmSolverPP{.steps = 100});
  check(sampler::UniPC{.steps = 100});
  check(sampler::Euler{.steps = 100, .spacing = sampler::Spacing::linspace});
  check(sampler::Heun{.steps = 100, .spacing = sampler::Spacing::linspace});
}
