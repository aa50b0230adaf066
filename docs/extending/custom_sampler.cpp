// docs/extending/custom_sampler.cpp — a sampler of one's own (see docs/extending.md, "Sampler"):
// a policy value (`MyDdim`) and its solver, a specialisation of ddpm::detail::Solver that the
// library's sampling loop runs. The loop owns the tensors (x, x0, eps, tmp, a history ring) and
// hands the solver a context that evaluates the network (guidance, target conversion, clipping)
// and combines tensors on the model's backend. This solver is deterministic DDIM written by hand;
// the program checks it gives bitwise the library's sampler::Ddim. NOTE: detail::Solver and the
// context are the library's internal interface (ddpm/diffusion/sampler/sample.hpp) and may change.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <algorithm>
#include <vector>

#include <ddpm/backend/cpu.hpp>
#include <ddpm/ddpm.hpp>
#include <ddpm/diffusion/diffusion.hpp>

struct MyDdim {
  std::size_t steps = 10;
  [[nodiscard]] std::string describe() const { return "my-ddim(steps=" + std::to_string(steps) + ")"; }
};

template <>
struct ddpm::detail::Solver<MyDdim> {
  static constexpr bool one_step = true;  // no state between steps (so RePaint jumps may use it)
  std::vector<std::int32_t> ts;           // model timesteps, descending
  std::vector<double> abar;
  Solver(const MyDdim& s, const std::vector<double>& alpha_bar) : abar(alpha_bar) {
    ts = ddpm::sampler::spaced_timesteps(alpha_bar.size(), s.steps);  // ascending
    std::reverse(ts.begin(), ts.end());
  }
  [[nodiscard]] std::size_t size() const { return ts.size(); }
  [[nodiscard]] std::int32_t t(std::size_t k) const { return ts[k]; }
  void reset() {}
  /// x <- sqrt(abar_next) x0_hat + sqrt(1 - abar_next) eps_hat
  template <class Ctx, class W>
  void step(Ctx& c, std::size_t k, W& w) {
    c.denoise(w.x.cview(), ts[k], w.x0.view(), w.eps.view());
    const double a = k + 1 < ts.size() ? abar[std::size_t(ts[k + 1])] : 1.0;
    c.lin(w.tmp.view(), std::sqrt(a), w.x0.cview(), std::sqrt(1.0 - a), w.eps.cview());
    std::swap(w.x, w.tmp);
  }
};

int main() try {
  ddpm::nn::UNetConfig net;
  net.in_channels = 1;
  net.image_size = 8;
  net.base_channels = 8;
  net.channel_mults = {1, 2};
  net.num_res_blocks = 1;
  net.attention_resolutions = {4};
  net.groups = 4;
  net.num_classes = 2;
  ddpm::Diffusion<ddpm::schedule::Cosine, ddpm::target::X0, ddpm::loss::L2, ddpm::backend::Cpu> model(
      ddpm::schedule::Cosine{.steps = 100}, net, 4, {}, ddpm::backend::Cpu(2));

  ddpm::SampleOptions o;
  o.num_samples = 4;
  o.labels = {0, 1, 0, 1};
  o.guidance = 2.0;
  o.seed = 9;
  const auto want = model.sample(ddpm::sampler::Ddim{.steps = 10}, o);

  // The library's loop with the solver above: the denoiser is the model's network.
  o.null_label = std::int32_t(net.num_classes);  // the null class of classifier-free guidance
  auto denoiser = [&](ddpm::ConstView<float> x, ddpm::ConstView<std::int32_t> t,
                      ddpm::ConstView<std::int32_t> y, ddpm::View<float> out) {
    model.net().forward(x, t, y, out, ddpm::nn::Pass{});
  };
  const auto got = ddpm::sample(model.process(), denoiser, ddpm::Shape{1, 8, 8}, MyDdim{.steps = 10}, o);

  const bool same = got.images.size() == want.images.size() &&
                    std::memcmp(got.images.data(), want.images.data(), got.images.size() * sizeof(float)) == 0;
  std::printf("MyDdim: %zu images, %s sampler::Ddim\n", got.shape.n(),
              same ? "bitwise equal to" : "DIFFERENT from");
  return same ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "custom_sampler: error: %s\n", e.what());
  return 1;
}
