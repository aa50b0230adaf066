// SPDX-License-Identifier: MIT
// ddpm/diffusion/process.hpp — the compile-time part of a diffusion model: schedule, prediction
// target, loss and backend composed into one type, with the forward process q(x_t | x0), the
// training loss, and the conversion of a network output to (x0_hat, eps_hat).
#pragma once

#include <cmath>
#include <concepts>
#include <cstring>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ddpm/backend/ops.hpp"
#include "ddpm/backend/tags.hpp"
#include "ddpm/core/assert.hpp"
#include "ddpm/core/concepts.hpp"
#include "ddpm/core/policy.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/diffusion/schedule/table.hpp"
#include "ddpm/tensor/tensor.hpp"

namespace ddpm {

namespace detail {
/// A policy's self-description for checkpoints: describe() if it has one, else a fallback.
template <class X>
std::string describe_policy(const X& x, std::string_view fallback) {
  if constexpr (requires { x.describe(); })
    return std::string(x.describe());
  else
    return std::string(fallback);
}

/// FNV-1a over the float bits of the beta table: identifies a schedule (custom ones included).
template <class T>
std::string table_fingerprint(const ScheduleTable<T>& tab) {
  std::uint64_t h = 1469598103934665603ull;
  for (double b : tab.beta_f64) {
    const float f = static_cast<float>(b);
    std::uint32_t bits;
    static_assert(sizeof(bits) == sizeof(f));
    std::memcpy(&bits, &f, sizeof(f));
    for (int i = 0; i < 4; ++i) {
      h ^= (bits >> (8 * i)) & 0xffu;
      h *= 1099511628211ull;
    }
  }
  static const char* hex = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, h >>= 4) s[std::size_t(i)] = hex[h & 15];
  return s;
}
}  // namespace detail

/// Options of the diffusion process that are not types.
struct ProcessOptions {
  /// min-SNR-gamma loss weighting (Hang et al. 2023); 0 disables it.
  double min_snr_gamma = 0.0;
};

namespace detail {
template <class P, class L, class B, class T>
consteval bool check_process_policies() {
  static_assert(Target<P>,
                "ddpm: the target policy P is not a ddpm::Target: it must provide static "
                "target(x0, eps, a, s), x0(xt, out, a, s), eps(xt, out, a, s) and a name "
                "(use ddpm::target::Epsilon, X0 or V)");
  static_assert(Loss<L>,
                "ddpm: the loss policy L is not a ddpm::Loss: it must provide value(d), grad(d) "
                "and name() (use ddpm::loss::L1, L2 or Huber)");
  static_assert(backend::Backend<B>,
                "ddpm: B is not a ddpm backend: use ddpm::backend::Reference, Cpu (include "
                "<ddpm/backend/cpu.hpp>) or Cuda (include <ddpm/backend/cuda.hpp>)");
  static_assert(std::is_floating_point_v<T>, "ddpm: the value type T must be float or double");
  return true;
}
}  // namespace detail

/// The schedule-independent part of a diffusion process: the coefficient table (from any
/// schedule), the target P, the loss L and the backend B. Everything heavy (kernels, the sampling
/// loop) is instantiated per (P, L, B, T) only, so adding schedules costs no compile time.
template <class P, class L, class B, class T = float>
class GaussianProcess {
  static_assert(detail::check_process_policies<P, L, B, T>());

 public:
  using target_type = P;
  using loss_type = L;
  using backend_type = B;
  using value_type = T;
  using ops = Ops<B>;

  /// `schedule_desc` names the schedule in signature() (e.g. "cosine(s=0.008,...)").
  GaussianProcess(ScheduleTable<T> table, std::string schedule_desc, L loss = {}, B backend = {},
                  ProcessOptions opts = {})
      : loss_(std::move(loss)), backend_(std::move(backend)), opts_(opts),
        table_(std::move(table)), schedule_desc_(std::move(schedule_desc)) {
    if constexpr (requires { loss_.validate(); }) loss_.validate();
    detail::require(opts_.min_snr_gamma >= 0.0 && std::isfinite(opts_.min_snr_gamma),
                    "ProcessOptions::min_snr_gamma", "must be >= 0 and finite, got ",
                    opts_.min_snr_gamma);
  }

  [[nodiscard]] const L& loss() const noexcept { return loss_; }
  [[nodiscard]] const B& backend() const noexcept { return backend_; }
  [[nodiscard]] const ProcessOptions& options() const noexcept { return opts_; }
  [[nodiscard]] const ScheduleTable<T>& table() const noexcept { return table_; }
  [[nodiscard]] std::size_t steps() const noexcept { return table_.size(); }

  /// Everything that identifies the process, as name -> value (stored in checkpoints; a mismatch
  /// on load names the differing field).
  [[nodiscard]] std::map<std::string, std::string> signature() const {
    return {{"schedule", schedule_desc_},
            {"T", std::to_string(steps())},
            {"schedule_fingerprint", detail::table_fingerprint(table_)},
            {"target", std::string(P::name)},
            {"loss", detail::describe_policy(loss_, loss_.name())},
            {"min_snr_gamma", detail::cat(opts_.min_snr_gamma)}};
  }

  /// Per-sample coefficients a = sqrt(abar_t), s = sqrt(1 - abar_t) for host timesteps t, written
  /// into backend tensors of shape (N).
  void coefficients(std::span<const std::int32_t> t, Tensor<T, B>& a, Tensor<T, B>& s) const {
    gather(table_.sqrt_alpha_bar, t, a, "t");
    gather(table_.sqrt_one_minus_alpha_bar, t, s, "t");
  }
  /// Per-sample loss weights (min-SNR-gamma) for host timesteps t; all ones when disabled.
  void loss_weights(std::span<const std::int32_t> t, Tensor<T, B>& w) const {
    std::vector<T> host(t.size(), T(1));
    if (opts_.min_snr_gamma > 0)
      for (std::size_t i = 0; i < t.size(); ++i)
        host[i] = T(detail::min_snr_weight<P>(double(table_.snr[std::size_t(t[i])]), opts_.min_snr_gamma));
    w.resize(Shape{t.size()});
    w.copy_from(host);
  }

  /// x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, per sample (Ho et al. 2020, eq. 4).
  void q_sample(ConstView<T> x0, ConstView<T> eps, std::span<const std::int32_t> t,
                View<T> xt) const {
    check_batch(x0, eps, xt, t.size(), "q_sample");
    coefficients(t, a_, s_);
    ops::lincomb(backend_, xt, a_.cview(), x0, s_.cview(), eps, ConstView<T>{}, ConstView<T>{});
  }

  /// Mean loss of the network output `out` against the target of (x0, eps) at timesteps t, and
  /// its gradient d loss / d out in `dout`. Returns the loss.
  double loss_and_grad(ConstView<T> out, ConstView<T> x0, ConstView<T> eps,
                       std::span<const std::int32_t> t, View<T> dout) const {
    check_batch(out, x0, eps, t.size(), "loss_and_grad");
    coefficients(t, a_, s_);
    ConstView<T> w{};
    if (opts_.min_snr_gamma > 0) {
      loss_weights(t, w_);
      w = w_.cview();
    }
    return ops::template diffusion_loss<P>(backend_, loss_, out, x0, eps, a_.cview(), s_.cview(),
                                           w, dout);
  }

  /// (x0_hat, eps_hat) implied by the network output at timesteps t, with x0 clipping as asked.
  void predict(ConstView<T> xt, ConstView<T> out, std::span<const std::int32_t> t, bool clip,
               View<T> x0, View<T> eps) const {
    coefficients(t, a_, s_);
    ops::template predict<P>(backend_, xt, out, a_.cview(), s_.cview(), clip, x0, eps);
  }

 private:
  void gather(const std::vector<T>& table, std::span<const std::int32_t> t, Tensor<T, B>& out,
              std::string_view what) const {
    host_.resize(t.size());
    for (std::size_t i = 0; i < t.size(); ++i) {
      DDPM_REQUIRE(t[i] >= 0 && std::size_t(t[i]) < table.size(), what, "timestep ", t[i],
                      " outside [0, ", table.size(), ")");
      host_[i] = table[std::size_t(t[i])];
    }
    out.resize(Shape{t.size()});
    out.copy_from(host_);
  }
  static void check_batch(ConstView<T> a, ConstView<T> b, ConstView<T> c, std::size_t n,
                          std::string_view what) {
    DDPM_REQUIRE(a.shape() == b.shape() && a.shape() == c.shape(), what,
                    "tensor shapes differ: ", a.shape().str(), ", ", b.shape().str(), ", ",
                    c.shape().str());
    DDPM_REQUIRE(a.shape().rank >= 1 && a.shape()[0] == n, what, "batch of ",
                    a.shape().rank ? a.shape()[0] : 0, " images but ", n, " timesteps");
  }

  L loss_;
  B backend_;
  ProcessOptions opts_;
  ScheduleTable<T> table_;
  std::string schedule_desc_;
  // Per-call coefficient buffers (reused: no allocation in steady state).
  mutable Tensor<T, B> a_, s_, w_;
  mutable std::vector<T> host_;
};

/// The policies of a diffusion model checked at one boundary:
///   S: ddpm::Schedule (schedule::Linear, schedule::Cosine, schedule::Sigmoid, or yours)
///   P: ddpm::Target   (target::Epsilon, target::X0, target::V)
///   L: ddpm::Loss     (loss::L1, loss::L2, loss::Huber)
///   B: ddpm::backend::Backend with an Ops<B> specialisation (backend::Reference, Cpu, Cuda)
/// The schedule is used once, on the host, to build the coefficient table.
template <class S, class P, class L, class B, class T = float>
class DiffusionProcess : public GaussianProcess<P, L, B, T> {
  static_assert(Schedule<S>,
                "ddpm: the schedule policy S is not a ddpm::Schedule: it must be copyable and "
                "provide num_steps() and beta(t) or alpha_bar(t) (see ddpm/core/concepts.hpp)");

 public:
  using schedule_type = S;
  using base_type = GaussianProcess<P, L, B, T>;

  explicit DiffusionProcess(S schedule, L loss = {}, B backend = {}, ProcessOptions opts = {})
      : base_type(make_table<T>(schedule), detail::describe_policy(schedule, "custom"),
                  std::move(loss), std::move(backend), opts),
        schedule_(std::move(schedule)) {}

  [[nodiscard]] const S& schedule() const noexcept { return schedule_; }

 private:
  S schedule_;
};

}  // namespace ddpm
