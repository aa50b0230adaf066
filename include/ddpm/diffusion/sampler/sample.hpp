// SPDX-License-Identifier: MIT
// ddpm/diffusion/sampler/sample.hpp — the sampling loop shared by every sampler and backend.
//
// A sampler is a policy value (sampler::Ancestral, Ddim, DpmSolverPP, Euler, Heun, UniPC). The
// loop turns it into a stateful solver (detail::Solver<Policy>): the solver plans its timesteps
// once, then is asked to step from plan point k to k + 1 with the loop's tensors (detail::Work)
// and a context that evaluates the network (guidance, target, clipping) and draws noise. A
// multistep solver keeps its history of earlier x0 predictions in the Work tensors the loop owns
// and reuses, so after the first batch nothing is allocated per step.
// The network is any callable (a "denoiser"):
//   model(ConstView<T> x_t, ConstView<int32> t, ConstView<int32> labels, View<T> out)
// with x_t (N, C, H, W), t and labels (N) in backend memory (labels empty when unconditional),
// writing the network output (what the target policy predicts) into out.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "ddpm/backend/ops.hpp"
#include "ddpm/core/assert.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/diffusion/sampler/ancestral.hpp"
#include "ddpm/diffusion/sampler/ddim.hpp"
#include "ddpm/diffusion/sampler/solvers.hpp"
#include "ddpm/diffusion/sampler/timesteps.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm {

/// What to sample and how.
struct SampleOptions {
  std::size_t num_samples = 16;
  /// One class per sample (size num_samples), or empty for unconditional sampling.
  std::vector<std::int32_t> labels{};
  /// Classifier-free guidance weight w: out = out_null + w (out_cond - out_null); 1 = plain
  /// conditional (one network call per step), needs labels and a null class otherwise.
  double guidance = 1.0;
  /// Guidance on an interval of t (Kynkaenniemi et al. 2024): w applies only at the steps whose
  /// timestep t satisfies lo <= t / T <= hi; the other steps evaluate the conditional network
  /// alone (one call, w = 1). {0, 1} (default): every step. Guidance at the noisiest steps
  /// settles the global layout and costs the most variety; at the last steps it does little.
  std::array<double, 2> guidance_interval{0.0, 1.0};
  /// The class index of the null ("no class") label, used with guidance != 1.
  std::int32_t null_label = -1;
  std::uint64_t seed = 0;
  bool clip = true;                ///< clip the predicted x0 to [-1, 1]
  double dynamic_threshold = 0.0;  ///< Imagen's dynamic thresholding percentile (e.g. 0.995); 0 = off
  bool zero_init = false;          ///< ablation: start from x_T = 0 instead of Gaussian noise
  bool no_step_noise = false;      ///< ablation: add no noise between steps
  std::size_t record_every = 0;    ///< keep x_t every k steps (and the last); 0 = final only
  std::size_t batch = 0;           ///< samples per network call (0 = all at once)
  /// Called after every step with (steps done, steps in total) over all batches.
  std::function<void(std::size_t, std::size_t)> progress{};

  void validate(std::size_t steps_T) const {
    detail::require(num_samples >= 1, "SampleOptions::num_samples", "must be >= 1");
    detail::require(labels.empty() || labels.size() == num_samples, "SampleOptions::labels",
                    "has ", labels.size(), " entries for ", num_samples, " samples");
    detail::require(std::isfinite(guidance), "SampleOptions::guidance", "must be finite");
    detail::require(guidance == 1.0 || (!labels.empty() && null_label >= 0),
                    "SampleOptions::guidance", "w = ", guidance,
                    " needs labels and a class-conditional model");
    detail::require(guidance_interval[0] >= 0.0 && guidance_interval[0] <= guidance_interval[1] &&
                        guidance_interval[1] <= 1.0,
                    "SampleOptions::guidance_interval", "must be {lo, hi} with 0 <= lo <= hi <= 1, got {",
                    guidance_interval[0], ", ", guidance_interval[1], "}");
    detail::require(dynamic_threshold == 0.0 || (dynamic_threshold > 0.5 && dynamic_threshold < 1.0),
                    "SampleOptions::dynamic_threshold", "must be 0 (off) or in (0.5, 1), got ",
                    dynamic_threshold);
    (void)steps_T;
  }
};

/// Samples in host memory, NCHW, in [-1, 1] when clipped.
template <class T>
struct SampleResult {
  Shape shape;                          ///< (N, C, H, W)
  std::vector<T> images;                ///< final x_0
  std::vector<std::int32_t> frame_t;    ///< timestep of each recorded frame (x after that step)
  std::vector<std::vector<T>> frames;   ///< recorded x_t, each (N, C, H, W)
  /// Network evaluations per image (a guided evaluation of the conditional and unconditional
  /// batch counts once; Heun takes two per step; karras plans may merge steps).
  std::size_t evaluations = 0;
};

namespace detail {

/// One step of a coefficient sampler (Ancestral, Ddim): model timestep t, the coefficients of
///   x_prev = c_x0 x0_hat + c_x x_t + c_eps eps_hat + sigma z
/// All four terms are applied (an earlier loop applied c_eps or c_x, never both).
struct SamplerStep {
  std::int32_t t;
  double c_x0, c_x, c_eps, sigma;
};

/// Ascending timesteps of a coefficient sampler: the respacing of spaced_timesteps for linspace
/// (bit for bit the historical plan), plan_timesteps reversed otherwise.
inline std::vector<std::int32_t> ascending_plan(const std::vector<double>& abar, std::size_t steps,
                                                sampler::Spacing spacing) {
  if (spacing == sampler::Spacing::linspace) return sampler::spaced_timesteps(abar.size(), steps);
  auto down = sampler::plan_timesteps(abar, steps, spacing);
  return {down.rbegin(), down.rend()};
}

/// The step list of a sampler over a table's alpha_bar (double).
inline std::vector<SamplerStep> sampler_steps(const std::vector<double>& abar,
                                              const sampler::Ancestral& s) {
  const std::size_t T = abar.size();
  const std::vector<std::int32_t> tau = ascending_plan(abar, s.steps == 0 ? T : s.steps, s.spacing);
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
  const std::vector<std::int32_t> tau = ascending_plan(abar, s.steps, s.spacing);
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

/// The tensors of the sampling loop, owned by it and reused across steps and batches. Solvers keep
/// their history here (hist: earlier x0 predictions, last: the previous x for UniPC's corrector).
template <class T, class B>
struct Work {
  using value_type = T;
  Tensor<T, B> x, x0, eps, z, tmp, aux, x0b, eps2, last, known, image;
  Tensor<T, B> hist[3];
  void resize(Shape sh) {
    for (auto* t : {&x, &x0, &eps, &z, &tmp, &aux, &x0b, &eps2, &last, &known, &image}) t->resize(sh);
    for (auto& h : hist) h.resize(sh);
  }
};

/// x_{k+1} from x_k with the coefficients of a SamplerStep; the result goes into `out`.
template <class Ctx, class T>
void apply_step(Ctx& c, const SamplerStep& st, bool noise, ConstView<T> x, ConstView<T> x0,
                ConstView<T> eps, ConstView<T> z, View<T> out) {
  // x_prev = c_x0 x0 + (c_eps eps | c_x x) + sigma z  (one lincomb: the historical arithmetic) ...
  c.lin(out, st.c_x0, x0, st.c_eps != 0.0 ? st.c_eps : st.c_x, st.c_eps != 0.0 ? eps : x,
        noise ? st.sigma : 0.0, noise ? z : ConstView<T>{});
  // ... plus c_x x when a step has both c_eps and c_x (dropped silently before).
  if (st.c_eps != 0.0 && st.c_x != 0.0) c.lin(out, 1.0, ConstView<T>(out), st.c_x, x);
}

/// The plan of a solver: model timestep of each step (descending) and alpha, sigma, lambda at
/// every plan point, the end point (x_0: alpha 1, sigma 0, lambda +inf) included.
struct Plan {
  std::vector<std::int32_t> ts;
  std::vector<double> al, sg, lam;
  Plan() = default;
  Plan(const std::vector<double>& abar, std::vector<std::int32_t> t) : ts(std::move(t)) {
    for (std::int32_t v : ts) {
      const double a = abar[std::size_t(v)];
      al.push_back(std::sqrt(a));
      sg.push_back(std::sqrt(1.0 - a));
      lam.push_back(std::log(al.back() / sg.back()));
    }
    al.push_back(1.0);
    sg.push_back(0.0);
    lam.push_back(std::numeric_limits<double>::infinity());
  }
  [[nodiscard]] std::size_t size() const { return ts.size(); }
  [[nodiscard]] bool last(std::size_t k) const { return k + 1 == ts.size(); }
};

template <class Policy>
struct Solver;

/// Ancestral and DDIM: one step = one precomputed SamplerStep.
struct CoefSolver {
  static constexpr bool one_step = true;  ///< stateless between steps: RePaint jumps allowed
  std::vector<SamplerStep> st;
  std::vector<std::int32_t> ts;
  explicit CoefSolver(std::vector<SamplerStep> s) : st(std::move(s)) {
    for (const auto& x : st) ts.push_back(x.t);
  }
  [[nodiscard]] std::size_t size() const { return st.size(); }
  [[nodiscard]] std::int32_t t(std::size_t k) const { return st[k].t; }
  void reset() {}
  template <class Ctx, class W>
  void step(Ctx& c, std::size_t k, W& w) {
    const SamplerStep& s = st[k];
    c.denoise(w.x.cview(), s.t, w.x0.view(), w.eps.view());
    const bool noise = s.sigma > 0.0 && c.step_noise(k, w.z.view());
    apply_step(c, s, noise, w.x.cview(), w.x0.cview(), w.eps.cview(), w.z.cview(), w.tmp.view());
    std::swap(w.x, w.tmp);
  }
};

template <>
struct Solver<sampler::Ancestral> : CoefSolver {
  Solver(const sampler::Ancestral& p, const std::vector<double>& abar)
      : CoefSolver(sampler_steps(abar, p)) {}
};
template <>
struct Solver<sampler::Ddim> : CoefSolver {
  Solver(const sampler::Ddim& p, const std::vector<double>& abar) : CoefSolver(sampler_steps(abar, p)) {}
};

/// What the plan-based solvers share: the plan of a policy with steps, spacing and rho.
struct PlanSolver {
  Plan p;
  template <class Policy>
  PlanSolver(const Policy& s, const std::vector<double>& abar)
      : p(abar, sampler::plan_timesteps(abar, s.steps, s.spacing, s.rho)) {}
  [[nodiscard]] std::size_t size() const { return p.size(); }
  [[nodiscard]] std::int32_t t(std::size_t k) const { return p.ts[k]; }
};

template <>
struct Solver<sampler::DpmSolverPP> : PlanSolver {
  static constexpr bool one_step = false;
  bool sde;
  std::size_t cur = 0;
  bool have_prev = false;
  double h_prev = 0;
  Solver(const sampler::DpmSolverPP& s, const std::vector<double>& abar)
      : PlanSolver(s, abar), sde(s.sde) {}
  void reset() { cur = 0, have_prev = false, h_prev = 0; }
  template <class Ctx, class W>
  void step(Ctx& c, std::size_t k, W& w) {
    auto& x0k = w.hist[cur];
    c.denoise(w.x.cview(), p.ts[k], x0k.view(), w.eps.view());
    if (p.last(k)) {  // to x_0: first order, x = x0_hat
      c.copy(x0k.cview(), w.x.view());
      return;
    }
    const double an = p.al[k + 1], sn = p.sg[k + 1], sc = p.sg[k];
    const double h = p.lam[k + 1] - p.lam[k];
    const double em = sde ? -std::expm1(-2.0 * h) : -std::expm1(-h);  // 1 - e^-h (e^-2h)
    const double cx = sde ? sn / sc * std::exp(-h) : sn / sc;
    double c0 = an * em, c1 = 0.0;
    if (have_prev) {
      const double r = h_prev / h;
      c1 = -c0 / (2.0 * r);
      c0 = c0 * (1.0 + 1.0 / (2.0 * r));
    }
    c.lin(w.tmp.view(), cx, w.x.cview(), c0, x0k.cview(), c1,
          have_prev ? w.hist[cur ^ 1].cview() : ConstView<typename W::value_type>{});
    if (sde && c.step_noise(k, w.z.view()))
      c.lin(w.tmp.view(), 1.0, w.tmp.cview(), sn * std::sqrt(em), w.z.cview());
    std::swap(w.x, w.tmp);
    h_prev = h;
    have_prev = true;
    cur ^= 1;
  }
};

template <>
struct Solver<sampler::Euler> : PlanSolver {
  static constexpr bool one_step = true;
  Solver(const sampler::Euler& s, const std::vector<double>& abar)
      : PlanSolver(s, abar) {}
  void reset() {}
  template <class Ctx, class W>
  void step(Ctx& c, std::size_t k, W& w) {
    c.denoise(w.x.cview(), p.ts[k], w.x0.view(), w.eps.view());
    if (p.last(k)) {  // Euler to sigma = 0 lands on x0_hat
      c.copy(w.x0.cview(), w.x.view());
      return;
    }
    // x/a moves along d(x/a)/d(s/a) = eps_hat
    const double ac = p.al[k], an = p.al[k + 1];
    const double ds = an * (p.sg[k + 1] / an - p.sg[k] / ac);
    c.lin(w.tmp.view(), an / ac, w.x.cview(), ds, w.eps.cview());
    std::swap(w.x, w.tmp);
  }
};

template <>
struct Solver<sampler::Heun> : PlanSolver {
  static constexpr bool one_step = true;
  Solver(const sampler::Heun& s, const std::vector<double>& abar)
      : PlanSolver(s, abar) {}
  void reset() {}
  template <class Ctx, class W>
  void step(Ctx& c, std::size_t k, W& w) {
    c.denoise(w.x.cview(), p.ts[k], w.x0.view(), w.eps.view());
    if (p.last(k)) {
      c.copy(w.x0.cview(), w.x.view());
      return;
    }
    const double ac = p.al[k], an = p.al[k + 1];
    const double ds = an * (p.sg[k + 1] / an - p.sg[k] / ac);
    c.lin(w.aux.view(), an / ac, w.x.cview(), ds, w.eps.cview());           // Euler point
    c.denoise(w.aux.cview(), p.ts[k + 1], w.x0b.view(), w.eps2.view());     // slope there
    c.lin(w.tmp.view(), an / ac, w.x.cview(), 0.5 * ds, w.eps.cview(), 0.5 * ds, w.eps2.cview());
    std::swap(w.x, w.tmp);
  }
};

template <>
struct Solver<sampler::UniPC> : PlanSolver {
  static constexpr bool one_step = false;
  bool corrector;
  std::size_t head = 0;        ///< hist[head]: x0_hat at the previous plan point
  std::size_t done = 0;        ///< steps taken since reset
  std::size_t this_order = 1;  ///< order of the last predictor step
  Solver(const sampler::UniPC& s, const std::vector<double>& abar)
      : PlanSolver(s, abar), corrector(s.corrector) {}
  void reset() { head = 0, done = 0, this_order = 1; }
  template <class Ctx, class W>
  void step(Ctx& c, std::size_t k, W& w) {
    const std::size_t slot = (head + 1) % 3, older = (head + 2) % 3;
    auto& mt = w.hist[slot];  // x0_hat at t_k (at the predicted, uncorrected x)
    c.denoise(w.x.cview(), p.ts[k], mt.view(), w.eps.view());
    if (corrector && done > 0) {
      // UniC: x_k = (s_k/s_{k-1}) x_{k-1} - a_k phi1 m0 - a_k B(h) (sum rho_i D_i + rho_t (mt - m0))
      const auto& m0 = w.hist[head];
      const double h = p.lam[k] - p.lam[k - 1], hh = -h, h1 = std::expm1(hh), Bh = h1;
      const double a = p.al[k], r = p.sg[k] / p.sg[k - 1];
      if (this_order == 1) {
        c.lin(w.x.view(), r, w.last.cview(), -a * h1 + 0.5 * a * Bh, m0.cview());
        c.lin(w.x.view(), 1.0, w.x.cview(), -0.5 * a * Bh, mt.cview());
      } else {
        const double rk = (p.lam[k - 2] - p.lam[k - 1]) / h;
        const double phi = h1 / hh - 1.0, b1 = phi / Bh, b2 = (phi / hh - 0.5) * 2.0 / Bh;
        const double rho0 = (b1 - b2) / (1.0 - rk), rho1 = b1 - rho0;  // [1 1; rk 1] rho = b
        c.lin(w.x.view(), r, w.last.cview(), -a * h1 + a * Bh * rho0 / rk + a * Bh * rho1, m0.cview(),
              -a * Bh * rho0 / rk, w.hist[older].cview());
        c.lin(w.x.view(), 1.0, w.x.cview(), -a * Bh * rho1, mt.cview());
      }
    }
    const std::size_t prev = head;
    head = slot;
    const std::size_t order = std::min<std::size_t>({2, p.size() - k, done + 1});
    ++done;
    if (p.last(k)) {  // to x_0: first order, x = x0_hat
      c.copy(mt.cview(), w.x.view());
      return;
    }
    if (corrector) c.copy(w.x.cview(), w.last.view());
    this_order = order;
    // UniP: x' = (s'/s) x - a' phi1 m0 (- a' B(h) 0.5 D1 for order 2), D1 = (m_{k-1} - m0) / rk
    const double h = p.lam[k + 1] - p.lam[k], hh = -h, h1 = std::expm1(hh), Bh = h1;
    const double an = p.al[k + 1], r = p.sg[k + 1] / p.sg[k];
    if (order == 1) {
      c.lin(w.tmp.view(), r, w.x.cview(), -an * h1, mt.cview());
    } else {
      const double rk = (p.lam[k - 1] - p.lam[k]) / h;
      c.lin(w.tmp.view(), r, w.x.cview(), -an * h1 + an * Bh * 0.5 / rk, mt.cview(),
            -an * Bh * 0.5 / rk, w.hist[prev].cview());
    }
    std::swap(w.x, w.tmp);
  }
};

/// What an edit adds to plain sampling (edit.hpp fills it in; all host memory, checked there).
template <class T>
struct EditInputs {
  std::span<const T> images{};      ///< (N, C, H, W) inputs in [-1, 1] (img2img, inpaint)
  double strength = 1.0;            ///< img2img: fraction of the plan run, from q(x_t | image)
  std::span<const T> mask{};        ///< inpaint: 1 = known pixel; size H W, C H W or N C H W
  std::size_t jumps = 0;            ///< inpaint: RePaint resamplings per step
  std::span<const T> init_noise{};  ///< interpolation: x_T of every sample, (N, C, H, W)
};

/// Random-stream purposes of the edits (beside rng_stream's, which stop at 9; `user` is 200).
inline constexpr std::uint64_t edit_known_stream = 16;     ///< noise of the known pixels
inline constexpr std::uint64_t edit_resample_stream = 17;  ///< RePaint's forward jumps

/// The network evaluation, noise and arithmetic the solvers use, on the loop's buffers.
template <class Process, class Denoiser>
class SampleContext {
 public:
  using T = typename Process::value_type;
  using B = typename Process::backend_type;
  using O = Ops<B>;

  SampleContext(const Process& proc, Denoiser& model, const SampleOptions& opts)
      : proc_(proc), model_(model), opts_(opts), be_(proc.backend()) {}

  /// Starts a batch of n samples, the first one being sample number `first`.
  void begin(std::size_t first, std::size_t n, Shape image_shape) {
    first_ = first;
    n_ = n;
    item_ = image_shape.numel();
    cfg_ = opts_.guidance != 1.0;
    cond_ = !opts_.labels.empty();
    if (cond_) {
      y_host_.assign(opts_.labels.begin() + std::ptrdiff_t(first),
                     opts_.labels.begin() + std::ptrdiff_t(first + n));
      if (cfg_) y_host_.insert(y_host_.end(), n, opts_.null_label);
      y_dev_.resize(Shape{y_host_.size()});
      y_dev_.copy_from(y_host_);
    }
    const Shape sh{n, image_shape[0], image_shape[1], image_shape[2]};
    out_.resize(sh);
    if (cfg_) {
      xx_.resize(Shape{2 * n, image_shape[0], image_shape[1], image_shape[2]});
      out2_.resize(xx_.shape());
      t_dev_.resize(Shape{2 * n});  // capacity for guided steps (unguided ones use n)
    }
    if (opts_.dynamic_threshold > 0.0) host_x0_.resize(n * item_);
  }

  [[nodiscard]] const B& backend() const { return be_; }
  [[nodiscard]] std::size_t evaluations() const { return nfe_; }

  /// x0_hat and eps_hat of the network at (x, t): guidance, target conversion, clipping or
  /// dynamic thresholding (eps kept consistent with the thresholded x0).
  void denoise(ConstView<T> x, std::int32_t t, View<T> x0, View<T> eps) {
    const std::size_t n = n_;
    const double tf = double(t) / double(proc_.steps());
    const bool guided = cfg_ && tf >= opts_.guidance_interval[0] && tf <= opts_.guidance_interval[1];
    t_host_.assign(guided ? 2 * n : n, t);
    t_dev_.resize(Shape{t_host_.size()});
    t_dev_.copy_from(t_host_);
    if (guided) {
      O::copy(be_, x, xx_.view().slice(0, n));
      O::copy(be_, x, xx_.view().slice(n, n));
      model_(xx_.cview(), t_dev_.cview(), y_dev_.cview(), out2_.view());
      O::guidance(be_, ConstView<T>(out2_.view().slice(0, n)), ConstView<T>(out2_.view().slice(n, n)),
                  T(opts_.guidance), out_.view());
    } else {
      // y_dev_ holds the n labels, then (with guidance) the n null labels
      model_(x, t_dev_.cview(), cond_ ? ConstView<std::int32_t>(y_dev_.view().slice(0, n)) : ConstView<std::int32_t>{},
             out_.view());
    }
    ++nfe_;
    tn_.assign(n, t);
    const bool thresh = opts_.dynamic_threshold > 0.0;
    proc_.predict(x, out_.cview(), tn_, opts_.clip && !thresh, x0, eps);
    if (thresh) {
      Tensor<T, B>::memory::copy_to_host(host_x0_.data(), x0.data(), x0.size() * sizeof(T));
      detail::dynamic_threshold(host_x0_, n, opts_.dynamic_threshold, scratch_);
      Tensor<T, B>::memory::copy_from_host(x0.data(), host_x0_.data(), x0.size() * sizeof(T));
      // eps consistent with the thresholded x0: eps = (x_t - a x0) / s (predict() already did
      // this for plain clipping)
      const double at = proc_.table().alpha_bar_f64[std::size_t(t)];
      lin(eps, 1.0 / std::sqrt(1.0 - at), x, -std::sqrt(at) / std::sqrt(1.0 - at), ConstView<T>(x0));
    }
  }

  /// Step noise of plan step k into z (the historical stream); false under opts.no_step_noise.
  bool step_noise(std::size_t k, View<T> z) {
    if (opts_.no_step_noise) return false;
    noise(rng_stream::make(rng_stream::sample_step, k), z);
    return true;
  }
  /// Standard normal noise of a stream into z, indexed by global sample (batch-independent).
  void noise(std::uint64_t stream, View<T> z) {
    O::fill_normal(be_, z, Rng{opts_.seed}, stream, first_ * item_);
  }

  /// out = c1 a + c2 b (+ c3 c), per-sample coefficients broadcast from doubles.
  void lin(View<T> out, double c1, ConstView<T> a, double c2, ConstView<T> b, double c3 = 0.0,
           ConstView<T> c = {}) {
    set_coef(ca_, c1);
    set_coef(cb_, c2);
    set_coef(cc_, c3);
    O::lincomb(be_, out, ca_.cview(), a, cb_.cview(), b, cc_.cview(), c);
  }
  void copy(ConstView<T> src, View<T> dst) { O::copy(be_, src, dst); }

 private:
  void set_coef(Tensor<T, B>& c, double v) {
    host_.assign(n_, T(v));
    c.resize(Shape{n_});
    c.copy_from(host_);
  }

  const Process& proc_;
  Denoiser& model_;
  const SampleOptions& opts_;
  const B& be_;
  std::size_t first_ = 0, n_ = 0, item_ = 0, nfe_ = 0;
  bool cfg_ = false, cond_ = false;
  Tensor<T, B> out_, xx_, out2_, ca_, cb_, cc_;
  Tensor<std::int32_t, B> t_dev_, y_dev_;
  std::vector<std::int32_t> t_host_, y_host_, tn_;
  std::vector<T> host_, host_x0_, scratch_;
};

/// The sampling loop: plain sampling, or an edit (img2img, inpainting, interpolation).
template <class Process, class Denoiser, class Sampler>
SampleResult<typename Process::value_type> run_sampler(
    const Process& process, Denoiser& model, Shape image_shape, const Sampler& smp,
    const SampleOptions& opts, const EditInputs<typename Process::value_type>& edit) {
  using T = typename Process::value_type;
  using B = typename Process::backend_type;
  using O = Ops<B>;
  opts.validate(process.steps());
  detail::require(image_shape.rank == 3, "sample: image_shape", "must be (C, H, W), got ",
                  image_shape.str());
  const std::vector<double>& abar = process.table().alpha_bar_f64;
  Solver<Sampler> solver(smp, abar);
  const std::size_t S = solver.size();
  const std::size_t total = opts.num_samples;
  const std::size_t bs = opts.batch == 0 ? total : std::min(opts.batch, total);
  const std::size_t item = image_shape.numel();
  const bool masked = !edit.mask.empty();
  if (edit.jumps > 0)
    detail::require(Solver<Sampler>::one_step, "inpaint: jumps", smp.describe(),
                    " keeps a history of earlier steps, which RePaint's jumps back would "
                    "invalidate; use ancestral, ddim, euler or heun, or jumps = 0");
  // img2img: run the last floor(S strength) steps (diffusers' rule), from q(x_t | image)
  std::size_t k0 = 0;
  if (!edit.images.empty() && edit.strength < 1.0)
    k0 = S - std::min(S, std::size_t(std::floor(double(S) * edit.strength + 1e-9)));

  SampleResult<T> res;
  res.shape = Shape{total, image_shape[0], image_shape[1], image_shape[2]};
  if (k0 == S) {  // nothing to denoise: the input comes back as it is
    res.images.assign(edit.images.begin(), edit.images.end());
    return res;
  }
  res.images.resize(total * item);
  auto recorded = [&](std::size_t k) {
    return opts.record_every && ((k - k0 + 1) % opts.record_every == 0 || k + 1 == S);
  };
  for (std::size_t k = k0; k < S; ++k)
    if (recorded(k)) {
      res.frame_t.push_back(solver.t(k));
      res.frames.emplace_back(total * item);
    }

  SampleContext<Process, Denoiser> ctx(process, model, opts);
  Work<T, B> w;
  std::vector<T> host_x, host_k;
  const Rng rng{opts.seed};
  const B& be = process.backend();
  auto sq = [&](std::int32_t t) { return std::sqrt(abar[std::size_t(t)]); };
  auto sq1m = [&](std::int32_t t) { return std::sqrt(1.0 - abar[std::size_t(t)]); };
  std::size_t done = 0;
  const std::size_t batches = (total + bs - 1) / bs;
  for (std::size_t first = 0; first < total; first += bs) {
    const std::size_t n = std::min(bs, total - first);
    const Shape sh{n, image_shape[0], image_shape[1], image_shape[2]};
    w.resize(sh);
    ctx.begin(first, n, image_shape);
    solver.reset();
    const std::size_t off = first * item, len = n * item;
    // replaces the known pixels of x by the image noised to plan point j (x_0 when j == S)
    auto keep_known = [&](std::size_t j, std::uint64_t counter) {
      host_x.resize(len);
      host_k.resize(len);
      if (j < S) {
        ctx.noise(rng_stream::make(edit_known_stream, counter), w.z.view());
        ctx.lin(w.known.view(), sq(solver.t(j)), w.image.cview(), sq1m(solver.t(j)), w.z.cview());
        Tensor<T, B>::memory::copy_to_host(host_k.data(), w.known.data(), len * sizeof(T));
      } else {
        std::copy(edit.images.begin() + std::ptrdiff_t(off),
                  edit.images.begin() + std::ptrdiff_t(off + len), host_k.begin());
      }
      Tensor<T, B>::memory::copy_to_host(host_x.data(), w.x.data(), len * sizeof(T));
      const std::size_t msz = edit.mask.size();
      for (std::size_t e = 0; e < len; ++e) {
        const T m = msz == total * item ? edit.mask[off + e] : edit.mask[(e % item) % msz];
        host_x[e] = m == T(1) ? host_k[e] : m == T(0) ? host_x[e] : m * host_k[e] + (T(1) - m) * host_x[e];
      }
      w.x.copy_from(host_x);
    };
    // x at the first plan point
    if (!edit.init_noise.empty())
      w.x.copy_from(edit.init_noise.subspan(off, len));
    else if (opts.zero_init)
      O::fill(be, w.x.view(), T(0));
    else
      O::fill_normal(be, w.x.view(), rng, rng_stream::make(rng_stream::sample_init, 0), off);
    if (!edit.images.empty()) {
      w.image.copy_from(edit.images.subspan(off, len));
      if (k0 > 0)  // q(x_t | image) with the same draw plain sampling starts from
        ctx.lin(w.x.view(), sq(solver.t(k0)), w.image.cview(), sq1m(solver.t(k0)), w.x.cview());
    }
    if (masked) keep_known(k0, 0);
    std::size_t rec = 0;
    for (std::size_t k = k0; k < S; ++k) {
      const std::size_t reps = masked && k + 1 < S ? edit.jumps + 1 : 1;
      for (std::size_t r = 0; r < reps; ++r) {
        solver.step(ctx, k, w);
        const std::uint64_t counter = 1 + k * reps + r;
        if (masked) keep_known(k + 1, counter);
        if (r + 1 < reps) {  // RePaint: back from t_{k+1} to t_k by the forward process
          const double ratio = abar[std::size_t(solver.t(k))] / abar[std::size_t(solver.t(k + 1))];
          ctx.noise(rng_stream::make(edit_resample_stream, counter), w.z.view());
          ctx.lin(w.x.view(), std::sqrt(ratio), w.x.cview(), std::sqrt(std::max(0.0, 1.0 - ratio)),
                  w.z.cview());
        }
      }
      if (recorded(k)) {
        Tensor<T, B>::memory::copy_to_host(res.frames[rec].data() + off, w.x.data(), len * sizeof(T));
        ++rec;
      }
      ++done;
      if (opts.progress) opts.progress(done, (S - k0) * batches);
    }
    Tensor<T, B>::memory::copy_to_host(res.images.data() + off, w.x.data(), len * sizeof(T));
  }
  res.evaluations = ctx.evaluations() / batches;
  return res;
}

}  // namespace detail

/// Runs a sampler (sampler::Ancestral, Ddim, DpmSolverPP, Euler, Heun or UniPC) with a denoiser
/// over `process` (a DiffusionProcess). image_shape is (C, H, W). Noise is a pure function of
/// (seed, step, sample index), so the result does not depend on opts.batch or on the backend's
/// thread count.
template <class Process, class Denoiser, class Sampler>
SampleResult<typename Process::value_type> sample(const Process& process, Denoiser&& model,
                                                  Shape image_shape, const Sampler& smp,
                                                  const SampleOptions& opts) {
  return detail::run_sampler(process, model, image_shape, smp, opts,
                             detail::EditInputs<typename Process::value_type>{});
}

}  // namespace ddpm
