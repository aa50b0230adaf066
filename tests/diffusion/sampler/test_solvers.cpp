// Tests of the stateful solvers (ddpm/diffusion/sampler/sample.hpp, solvers.hpp): convergence at
// the solver's order on Gaussian data (closed-form denoiser and closed-form ODE solution), bit
// identity of Ancestral and DDIM with the loop they replaced, guidance / target / clipping
// combinations, guidance on an interval of t, no allocation per step, spacings and the errors of bad input.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/backend/reference.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/diffusion/sampler/sample.hpp"
#include "ddpm/diffusion/sampler/spec.hpp"
#include "diffusion/sampler/legacy_sample.hpp"

using namespace ddpm;
using Ref = backend::Reference;

namespace {

constexpr std::size_t D = 16;  // one (1, 4, 4) image

/// Gaussian data, independent per pixel: x0_i ~ N(mu_i, s_i^2).
double mu(std::size_t i) { return 0.5 * std::sin(double(i) + 1.0); }
double sd(std::size_t i) { return 0.2 + 0.03 * double(i); }

/// The optimal denoiser of Gaussian data, E[x0 | x_t] = mu + a s^2 / (a^2 s^2 + sig^2) (x_t - a mu),
/// written in the target's form, in the process's value type.
template <class Process>
struct GaussOracle {
  using V = typename Process::value_type;
  const Process* proc;
  double label_gain = 0.0;  ///< output scaled by 1 + gain * label (a conditional model for CFG)
  void operator()(ConstView<V> x, ConstView<std::int32_t> t, ConstView<std::int32_t> y, View<V> out) const {
    const std::size_t n = x.n(), item = x.size() / n;
    for (std::size_t b = 0; b < n; ++b) {
      const double ab = proc->table().alpha_bar_f64[std::size_t(t[b])];
      const double a = std::sqrt(ab), s = std::sqrt(1 - ab);
      const double g = y.empty() ? 1.0 : 1.0 + label_gain * double(y[b]);
      for (std::size_t i = 0; i < item; ++i) {
        const std::size_t d = i % D;
        const double v = sd(d) * sd(d);
        const double x0 = mu(d) + a * v / (a * a * v + s * s) * (double(x[b * item + i]) - a * mu(d));
        const double eps = (double(x[b * item + i]) - a * x0) / s;
        out[b * item + i] = V(g * Process::target_type::target(x0, eps, a, s));
      }
    }
  }
};

/// Where the probability-flow ODE takes x from timestep t_from to t_to, then E[x0 | x_{t_to}]:
/// the limit every deterministic sampler here reaches as its steps shrink (their last step to
/// x_0 returns x0_hat at the last plan point).
double exact_end(double x, double ab_from, double ab_to, std::size_t d) {
  const double v = sd(d) * sd(d);
  const double af = std::sqrt(ab_from), at = std::sqrt(ab_to);
  const double u = (x - af * mu(d)) / std::sqrt(af * af * v + (1 - ab_from));
  const double xt = at * mu(d) + std::sqrt(at * at * v + (1 - ab_to)) * u;
  return mu(d) + at * v / (at * at * v + (1 - ab_to)) * (xt - at * mu(d));
}

template <class Proc, class Smp>
double ode_error(const Proc& proc, const Smp& smp, const std::vector<std::int32_t>& plan) {
  GaussOracle<Proc> oracle{&proc};
  SampleOptions o;
  o.num_samples = 8;
  o.seed = 21;
  o.clip = false;
  const auto r = sample(proc, oracle, Shape{1, 4, 4}, smp, o);
  std::vector<double> x0(o.num_samples * D);
  Rng{o.seed}.fill_normal(x0.data(), x0.size(), rng_stream::make(rng_stream::sample_init, 0), 0);
  const auto& ab = proc.table().alpha_bar_f64;
  double worst = 0;
  for (std::size_t e = 0; e < x0.size(); ++e) {
    const double want = exact_end(x0[e], ab[std::size_t(plan.front())], ab[std::size_t(plan.back())], e % D);
    worst = std::max(worst, std::abs(r.images[e] - want));
  }
  return worst;
}

struct Slope {
  std::vector<double> err;
  double slope;  ///< mean of log2(e_S / e_2S) over the last two doublings
};

template <class S, class P, class Make>
Slope convergence(const S& sched, Make make, sampler::Spacing spacing) {
  DiffusionProcess<S, P, loss::L2, Ref, double> proc(sched);
  Slope out;
  for (std::size_t steps : {10, 20, 40, 80, 160}) {
    const auto plan = sampler::plan_timesteps(proc.table().alpha_bar_f64, steps, spacing);
    out.err.push_back(ode_error(proc, make(steps), plan));
  }
  const std::size_t m = out.err.size();
  out.slope = 0.5 * (std::log2(out.err[m - 3] / out.err[m - 2]) + std::log2(out.err[m - 2] / out.err[m - 1]));
  return out;
}

template <class S, class P>
void check_orders(const S& sched) {
  using sampler::Spacing;
  struct Row {
    const char* name;
    double order;
    Slope s;
  };
  std::vector<Row> rows;
  for (Spacing sp : {Spacing::linspace, Spacing::karras}) {
    rows.push_back({"ddim", 1.0, convergence<S, P>(sched, [&](std::size_t n) { return sampler::Ddim{.steps = n, .spacing = sp}; }, sp)});
    rows.push_back({"euler", 1.0, convergence<S, P>(sched, [&](std::size_t n) { return sampler::Euler{.steps = n, .spacing = sp}; }, sp)});
    rows.push_back({"dpmpp-2m", 2.0, convergence<S, P>(sched, [&](std::size_t n) { return sampler::DpmSolverPP{.steps = n, .spacing = sp}; }, sp)});
    rows.push_back({"heun", 2.0, convergence<S, P>(sched, [&](std::size_t n) { return sampler::Heun{.steps = n, .spacing = sp}; }, sp)});
    rows.push_back({"unipc", 2.0, convergence<S, P>(sched, [&](std::size_t n) { return sampler::UniPC{.steps = n, .spacing = sp}; }, sp)});
    for (std::size_t i = rows.size() - 5; i < rows.size(); ++i) {
      const auto& r = rows[i];
      char line[256];
      std::snprintf(line, sizeof line, "%s %s %-9s %-8s err@10,20,40,80,160 = %.2e %.2e %.2e %.2e %.2e  slope %.2f",
                    sched.describe().c_str(), std::string(P::name).c_str(), r.name, sampler::spacing_name(sp),
                    r.s.err[0], r.s.err[1], r.s.err[2], r.s.err[3], r.s.err[4], r.s.slope);
      MESSAGE(line);
      INFO(line);
      // the error falls at the solver's order (a wrong coefficient stalls it at order <= 1 or 0)
      CHECK(r.s.slope > r.order - 0.3);
      CHECK(r.s.err.back() < r.s.err.front());
    }
  }
}

}  // namespace

TEST_CASE_TEMPLATE("solvers converge to the exact ODE solution at their order (Gaussian data)", P,
                   target::Epsilon, target::X0, target::V) {
  check_orders<schedule::Linear, P>(schedule::Linear{.steps = 1000});
  check_orders<schedule::Cosine, P>(schedule::Cosine{.steps = 1000});
}

namespace {

/// The 4-point data set of test_samplers.cpp, for the stochastic samplers.
template <class Process>
struct LabelledNoise {
  using V = typename Process::value_type;
  const Process* proc;
  // a smooth conditional model: out = tanh(x) (1 + 0.1 label), enough to make guidance matter
  void operator()(ConstView<V> x, ConstView<std::int32_t> t, ConstView<std::int32_t> y, View<V> out) const {
    (void)t;
    const std::size_t n = x.n(), item = x.size() / n;
    for (std::size_t b = 0; b < n; ++b) {
      const V g = y.empty() ? V(1) : V(1) + V(0.1) * V(y[b] % 7);
      for (std::size_t i = 0; i < item; ++i) out[b * item + i] = g * std::tanh(x[b * item + i]);
    }
  }
};

/// Classifier-free guidance done by hand: out = u + w (c - u), c = cond at the labels y, u = cond
/// at the null label 9 (what the sampling loop computes with SampleOptions::guidance = w).
template <class Model>
void guide_by_hand(const Model& cond, float w, ConstView<float> x, ConstView<std::int32_t> t,
                   ConstView<std::int32_t> y, View<float> out) {
  std::vector<float> u(out.size());
  std::vector<std::int32_t> null(y.size(), 9);
  cond(x, t, y, out);
  cond(x, t, ConstView<std::int32_t>(null.data(), y.shape()), View<float>(u.data(), out.shape()));
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = u[i] + w * (out[i] - u[i]);
}

/// Four samples of classes 1..4, null class 9, guidance w.
SampleOptions four_labelled(std::uint64_t seed, double w) {
  SampleOptions o;
  o.num_samples = 4;
  o.labels = {1, 2, 3, 4};
  o.null_label = 9;
  o.seed = seed;
  o.guidance = w;
  return o;
}

template <class B, class P, class Smp>
void check_same_bits_as_legacy(const Smp& smp, SampleOptions o) {
  DiffusionProcess<schedule::Cosine, P, loss::L2, B> proc(schedule::Cosine{.steps = 100});
  LabelledNoise<decltype(proc)> model{&proc};
  const auto now = sample(proc, model, Shape{2, 3, 3}, smp, o);
  const auto old = test_legacy::legacy_sample(proc, model, Shape{2, 3, 3}, smp, o);
  INFO(smp.describe(), " ", P::name, " guidance ", o.guidance, " clip ", o.clip, " thresh ",
       o.dynamic_threshold, " batch ", o.batch);
  CHECK(now.images == old.images);
  CHECK(now.frames == old.frames);
  CHECK(now.frame_t == old.frame_t);
}

template <class B, class P>
void check_legacy_all() {
  for (int variant = 0; variant < 5; ++variant) {
    SampleOptions o;
    o.num_samples = 5;
    o.seed = 9;
    o.record_every = 3;
    if (variant == 1) {
      o.labels = {0, 1, 2, 3, 4};
      o.guidance = 2.5;
      o.null_label = 5;
    }
    if (variant == 2) o.clip = false;
    if (variant == 3) o.dynamic_threshold = 0.9;
    if (variant == 4) o.batch = 2, o.no_step_noise = true;
    check_same_bits_as_legacy<B, P>(sampler::Ancestral{}, o);
    check_same_bits_as_legacy<B, P>(sampler::Ancestral{.steps = 10}, o);
    check_same_bits_as_legacy<B, P>(
        sampler::Ancestral{.steps = 7, .variance = sampler::Ancestral::Variance::fixed_large}, o);
    check_same_bits_as_legacy<B, P>(sampler::Ddim{.steps = 10}, o);
    check_same_bits_as_legacy<B, P>(sampler::Ddim{.steps = 13, .eta = 1.0}, o);
    check_same_bits_as_legacy<B, P>(sampler::Ddim{.steps = 100, .eta = 0.5}, o);
  }
}

}  // namespace

TEST_CASE_TEMPLATE("ancestral and DDIM give the same bits as the loop they replaced", P,
                   target::Epsilon, target::X0, target::V) {
  check_legacy_all<Ref, P>();
  check_legacy_all<backend::Cpu, P>();
}

TEST_CASE("a step with both c_x and c_eps applies both (the old loop dropped c_x)") {
  DiffusionProcess<schedule::Linear, target::Epsilon, loss::L2, Ref> proc(schedule::Linear{.steps = 10});
  LabelledNoise<decltype(proc)> model{&proc};
  SampleOptions o;
  o.num_samples = 2;
  detail::SampleContext<decltype(proc), decltype(model)> ctx(proc, model, o);
  ctx.begin(0, 2, Shape{1, 2, 2});
  Tensor<float, Ref> x(Shape{2, 1, 2, 2}), x0(Shape{2, 1, 2, 2}), eps(Shape{2, 1, 2, 2}),
      z(Shape{2, 1, 2, 2}), out(Shape{2, 1, 2, 2});
  std::vector<float> vx(8), v0(8), ve(8), vz(8);
  for (int i = 0; i < 8; ++i) vx[i] = float(i), v0[i] = float(10 + i), ve[i] = float(-i), vz[i] = 1;
  x.copy_from(vx), x0.copy_from(v0), eps.copy_from(ve), z.copy_from(vz);
  const detail::SamplerStep st{3, 0.5, 0.25, 0.125, 2.0};
  detail::apply_step(ctx, st, true, x.cview(), x0.cview(), eps.cview(), z.cview(), out.view());
  const auto r = out.to_vector();
  for (int i = 0; i < 8; ++i) CHECK(r[i] == doctest::Approx(0.5 * v0[i] + 0.25 * vx[i] + 0.125 * ve[i] + 2.0));
}

TEST_CASE("guidance, targets and clipping combine the same way in every solver") {
  // Guidance w on a conditional model equals plain sampling of the guided output, bit for bit;
  // clipping keeps x0_hat (hence every final sample) in [-1, 1] for a model that overshoots.
  const std::vector<SamplerSpec> all = {
      sampler::Ancestral{.steps = 10}, sampler::Ddim{.steps = 10, .eta = 0.3},
      sampler::DpmSolverPP{.steps = 10}, sampler::DpmSolverPP{.steps = 10, .sde = true},
      sampler::Euler{.steps = 10},       sampler::Heun{.steps = 6},
      sampler::UniPC{.steps = 10}};
  auto run = [&]<class P>(P) {
    DiffusionProcess<schedule::Cosine, P, loss::L2, Ref> proc(schedule::Cosine{.steps = 100});
    LabelledNoise<decltype(proc)> cond{&proc};
    const float w = 3.0f;
    auto guided = [&](ConstView<float> x, ConstView<std::int32_t> t, ConstView<std::int32_t> y, View<float> out) {
      guide_by_hand(cond, w, x, t, y, out);
    };
    for (const auto& spec : all)
      std::visit([&](const auto& smp) {
        for (bool clip : {true, false}) {
          SampleOptions o = four_labelled(4, w);
          o.clip = clip;
          const auto a = sample(proc, cond, Shape{1, 3, 3}, smp, o);
          o.guidance = 1.0;
          const auto b = sample(proc, guided, Shape{1, 3, 3}, smp, o);
          INFO(smp.describe(), " ", P::name, " clip ", clip);
          CHECK(a.images == b.images);
          const float mx = std::abs(*std::max_element(a.images.begin(), a.images.end(),
                                                      [](float p, float q) { return std::abs(p) < std::abs(q); }));
          if (clip) CHECK(mx <= 1.0f + 1e-6f);
        }
      }, spec);
  };
  run(target::Epsilon{});
  run(target::X0{});
  run(target::V{});
}

TEST_CASE("guidance on an interval of t: guided steps inside, one conditional call outside") {
  // The same as plain sampling of a model that guides itself only where lo <= t / T <= hi, bit
  // for bit, in every solver; the steps outside call the network once with the n real labels.
  DiffusionProcess<schedule::Cosine, target::V, loss::L2, Ref> proc(schedule::Cosine{.steps = 100});
  LabelledNoise<decltype(proc)> cond{&proc};
  const float w = 2.5f;
  const double lo = 0.2, hi = 0.7;
  std::size_t calls = 0, unguided_calls = 0;
  auto counted = [&](ConstView<float> x, ConstView<std::int32_t> t, ConstView<std::int32_t> y, View<float> out) {
    ++calls;
    const double tf = double(t[0]) / 100.0;
    if (tf < lo || tf > hi) {
      ++unguided_calls;
      CHECK(x.n() == 4);  // no null-label half
      for (std::size_t i = 0; i < y.size(); ++i) CHECK(y[i] == std::int32_t(i + 1));
    } else {
      CHECK(x.n() == 8);
    }
    cond(x, t, y, out);
  };
  auto self_guided = [&](ConstView<float> x, ConstView<std::int32_t> t, ConstView<std::int32_t> y, View<float> out) {
    const double tf = double(t[0]) / 100.0;
    if (tf < lo || tf > hi) cond(x, t, y, out);
    else guide_by_hand(cond, w, x, t, y, out);
  };
  for (const SamplerSpec& spec : std::vector<SamplerSpec>{sampler::Ancestral{.steps = 10}, sampler::Ddim{.steps = 10},
                                                           sampler::DpmSolverPP{.steps = 10}, sampler::Heun{.steps = 6},
                                                           sampler::UniPC{.steps = 10}})
    std::visit([&](const auto& smp) {
      SampleOptions o = four_labelled(5, w);
      o.guidance_interval = {lo, hi};
      calls = unguided_calls = 0;
      const auto a = sample(proc, counted, Shape{1, 3, 3}, smp, o);
      INFO(smp.describe());
      CHECK(unguided_calls > 0);
      CHECK(unguided_calls < calls);
      o.guidance = 1.0;
      const auto b = sample(proc, self_guided, Shape{1, 3, 3}, smp, o);
      CHECK(a.images == b.images);
      // the full interval is plain guidance, an empty one plain conditional sampling
      o.guidance = w;
      o.guidance_interval = {0.0, 1.0};
      const auto full = sample(proc, cond, Shape{1, 3, 3}, smp, o);
      o.guidance_interval = {2.0 / 3.0, 2.0 / 3.0};  // no timestep of the plan lies there
      const auto none = sample(proc, cond, Shape{1, 3, 3}, smp, o);
      o.guidance = 1.0;
      const auto plain = sample(proc, cond, Shape{1, 3, 3}, smp, o);
      CHECK(none.images == plain.images);
      CHECK(full.images != plain.images);
      CHECK(a.images != full.images);
    }, spec);
  SampleOptions bad = four_labelled(0, 2.0);
  bad.guidance_interval = {0.8, 0.2};
  CHECK_THROWS_WITH_AS(sample(proc, cond, Shape{1, 3, 3}, sampler::Ddim{.steps = 5}, bad),
                       doctest::Contains("SampleOptions::guidance_interval"), std::invalid_argument);
  bad.guidance_interval = {0.0, 1.5};
  CHECK_THROWS_WITH_AS(sample(proc, cond, Shape{1, 3, 3}, sampler::Ddim{.steps = 5}, bad),
                       doctest::Contains("0 <= lo <= hi <= 1"), std::invalid_argument);
}

TEST_CASE("dynamic thresholding keeps every solver's samples in [-1, 1]") {
  DiffusionProcess<schedule::Linear, target::X0, loss::L2, Ref> proc(schedule::Linear{.steps = 50});
  auto wild = [](ConstView<float> x, ConstView<std::int32_t>, ConstView<std::int32_t>, View<float> out) {
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = 3.0f * x[i];
  };
  SampleOptions o;
  o.num_samples = 4;
  o.dynamic_threshold = 0.9;
  for (const SamplerSpec& spec : std::vector<SamplerSpec>{sampler::DpmSolverPP{.steps = 10}, sampler::Euler{.steps = 10},
                                                           sampler::Heun{.steps = 5}, sampler::UniPC{.steps = 10}})
    std::visit([&](const auto& smp) {
      const auto r = sample(proc, wild, Shape{1, 4, 4}, smp, o);
      INFO(smp.describe());
      for (float v : r.images) CHECK(std::abs(v) <= 1.0f + 1e-5f);
    }, spec);
}

TEST_CASE("sampling allocates nothing per step: the count does not grow with the steps") {
  DiffusionProcess<schedule::Cosine, target::Epsilon, loss::L2, backend::Cpu> proc(schedule::Cosine{.steps = 200});
  LabelledNoise<decltype(proc)> model{&proc};
  SampleOptions o;
  o.num_samples = 6;
  o.batch = 3;
  o.labels = {0, 1, 2, 3, 4, 5};
  o.null_label = 6;
  o.guidance = 2.0;
  o.guidance_interval = {0.3, 0.8};  // guided and unguided steps
  o.dynamic_threshold = 0.95;
  auto allocs = [&](const auto& smp) {
    const std::size_t before = detail::tensor_allocation_count().load();
    (void)sample(proc, model, Shape{1, 8, 8}, smp, o);
    return detail::tensor_allocation_count().load() - before;
  };
  (void)allocs(sampler::Ancestral{.steps = 2});  // the process's own coefficient buffers, once
  auto same = [&](auto a, auto b) {
    INFO(a.describe(), " vs ", b.describe());
    const std::size_t na = allocs(a), nb = allocs(b);
    CHECK(na == nb);
    CHECK(na > 0);  // the loop's tensors are counted (the counter works)
  };
  same(sampler::Ancestral{.steps = 5}, sampler::Ancestral{.steps = 50});
  same(sampler::Ddim{.steps = 5}, sampler::Ddim{.steps = 50});
  same(sampler::DpmSolverPP{.steps = 5, .sde = true}, sampler::DpmSolverPP{.steps = 50, .sde = true});
  same(sampler::Euler{.steps = 5}, sampler::Euler{.steps = 50});
  same(sampler::Heun{.steps = 5}, sampler::Heun{.steps = 50});
  same(sampler::UniPC{.steps = 5}, sampler::UniPC{.steps = 50});
}

TEST_CASE("timestep spacings by name") {
  const auto ab = make_table<double>(schedule::Linear{.steps = 1000}).alpha_bar_f64;
  using sampler::Spacing;
  CHECK(sampler::plan_timesteps(ab, 10, Spacing::linspace) ==
        std::vector<std::int32_t>{999, 888, 777, 666, 555, 444, 333, 222, 111, 0});
  CHECK(sampler::plan_timesteps(ab, 10, Spacing::trailing) ==
        std::vector<std::int32_t>{999, 899, 799, 699, 599, 499, 399, 299, 199, 99});
  CHECK(sampler::plan_timesteps(ab, 10, Spacing::leading) ==
        std::vector<std::int32_t>{900, 800, 700, 600, 500, 400, 300, 200, 100, 0});
  CHECK(sampler::plan_timesteps(ab, 3, Spacing::trailing) == std::vector<std::int32_t>{999, 666, 332});
  const auto k = sampler::plan_timesteps(ab, 20, Spacing::karras);
  CHECK(k.front() == 999);
  CHECK(k.back() == 0);
  CHECK(std::adjacent_find(k.begin(), k.end(), [](auto a, auto b) { return a <= b; }) == k.end());
  // Karras sigmas are dense at low noise: the gaps in sigma grow toward t = T - 1
  auto sig = [&](std::int32_t t) { return std::sqrt((1 - ab[std::size_t(t)]) / ab[std::size_t(t)]); };
  CHECK(sig(k[0]) - sig(k[1]) > sig(k[k.size() - 2]) - sig(k.back()));
  CHECK(sampler::parse_spacing("karras") == Spacing::karras);
  CHECK_THROWS_WITH_AS((void)sampler::parse_spacing("uniform"), doctest::Contains("unknown spacing 'uniform'"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)sampler::plan_timesteps(ab, 1001, Spacing::trailing), doctest::Contains("sampler steps"),
                       std::invalid_argument);
}

TEST_CASE("samplers by name, and their errors") {
  CHECK(std::holds_alternative<sampler::DpmSolverPP>(sampler::make_sampler("dpmpp-2m", 15)));
  CHECK(std::get<sampler::DpmSolverPP>(sampler::make_sampler("dpmpp-2m-sde", 15)).sde);
  CHECK(std::get<sampler::Euler>(sampler::make_sampler("euler", 12, "trailing")).spacing == sampler::Spacing::trailing);
  CHECK(std::get<sampler::Ddim>(sampler::make_sampler("ddim", 12, "", 0.5)).eta == 0.5);
  CHECK(std::holds_alternative<sampler::Heun>(sampler::make_sampler("heun", 8)));
  CHECK(std::holds_alternative<sampler::UniPC>(sampler::make_sampler("unipc", 8)));
  CHECK_THROWS_WITH_AS((void)sampler::make_sampler("plms", 10), doctest::Contains("unknown sampler 'plms'"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)sampler::make_sampler("euler", 10, "", 0.5), doctest::Contains("only ddim takes eta"),
                       std::invalid_argument);
  DiffusionProcess<schedule::Linear, target::Epsilon, loss::L2, Ref> proc(schedule::Linear{.steps = 50});
  LabelledNoise<decltype(proc)> model{&proc};
  SampleOptions o;
  o.num_samples = 1;
  CHECK_THROWS_WITH_AS(sample(proc, model, Shape{1, 2, 2}, sampler::UniPC{.steps = 51}, o),
                       doctest::Contains("sampler steps"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(sample(proc, model, Shape{1, 2, 2}, sampler::Heun{.steps = 0}, o),
                       doctest::Contains("sampler steps"), std::invalid_argument);
}

TEST_CASE("network evaluations per image: one per step, Heun two but the last, merged karras steps") {
  DiffusionProcess<schedule::Cosine, target::Epsilon, loss::L2, Ref> proc(schedule::Cosine{.steps = 1000});
  std::size_t calls = 0;
  auto model = [&](ConstView<float>, ConstView<std::int32_t>, ConstView<std::int32_t>, View<float> out) {
    ++calls;
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = 0;
  };
  SampleOptions o;
  o.num_samples = 4;
  o.batch = 2;
  auto evals = [&](const auto& smp) {
    calls = 0;
    const auto r = sample(proc, model, Shape{1, 2, 2}, smp, o);
    CHECK(calls == 2 * r.evaluations);  // two batches
    return r.evaluations;
  };
  CHECK(evals(sampler::DpmSolverPP{.steps = 7}) == 7);
  CHECK(evals(sampler::UniPC{.steps = 7}) == 7);
  CHECK(evals(sampler::Heun{.steps = 5, .spacing = sampler::Spacing::linspace}) == 9);
  // karras on the cosine schedule: 10 sigmas land on 7 distinct timesteps (docs/sampling.md)
  CHECK(evals(sampler::Euler{.steps = 10}) == 7);
  CHECK(evals(sampler::Ancestral{.steps = 12}) == 12);
}
