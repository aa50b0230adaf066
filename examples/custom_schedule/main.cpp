// examples/custom_schedule — a schedule of your own, plugged in without touching the library.
//
// Any copyable type with num_steps() and beta(t) (or alpha_bar(t)), t = 0..T-1, is a
// ddpm::Schedule. Here: the "scaled linear" schedule of latent diffusion, beta linear in
// sqrt(beta). It trains a small class-conditional model on the bundled digits for a few
// hundred steps and samples a grid.
//
//   custom_schedule [--steps 300] [--out runs/custom_schedule]
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include <oneapi/tbb/global_control.h>

#include <ddpm/backend/cpu.hpp>
#include <ddpm/ddpm.hpp>
#include <ddpm/diffusion/diffusion.hpp>
#include <ddpm/io/idx.hpp>
#include <ddpm/io/png.hpp>
#include <ddpm/train/trainer.hpp>

struct ScaledLinear {
  std::size_t steps = 1000;
  double beta_start = 0.00085, beta_end = 0.012;
  std::size_t num_steps() const { return steps; }
  double beta(std::size_t t) const {
    const double u = steps > 1 ? double(t) / double(steps - 1) : 0.0;
    const double r = std::sqrt(beta_start) + u * (std::sqrt(beta_end) - std::sqrt(beta_start));
    return r * r;
  }
  std::string describe() const { return "scaled_linear(0.00085,0.012)"; }  // optional: names it in checkpoints
};
static_assert(ddpm::Schedule<ScaledLinear>, "ScaledLinear must model ddpm::Schedule");

#ifndef DDPM_EXAMPLE_DATA_DIR
#define DDPM_EXAMPLE_DATA_DIR "data/mnist10k"
#endif

int main(int argc, char** argv) try {
  CLI::App app{"A user-defined noise schedule plugged into ddpm"};
  std::uint64_t steps = 300;
  std::string out = "runs/custom_schedule", data = DDPM_EXAMPLE_DATA_DIR;
  app.add_option("--steps", steps, "training steps")->capture_default_str();
  app.add_option("--out", out, "output folder")->capture_default_str();
  app.add_option("--data", data, "MNIST-format folder")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  ddpm::backend::Cpu be;
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, std::size_t(be.threads()));
  ddpm::nn::UNetConfig net = ddpm::nn::UNetConfig::mnist();
  net.base_channels = 16;
  net.num_res_blocks = 1;
  net.groups = 8;
  ddpm::Diffusion<ScaledLinear, ddpm::target::V, ddpm::loss::L2, ddpm::backend::Cpu> model(ScaledLinear{}, net, 0,
                                                                                            {}, be);
  const auto& tab = model.process().table();
  std::printf("ScaledLinear: beta[0] = %.2e, beta[T-1] = %.2e, alpha_bar[T-1] = %.3e\n", tab.beta.front(),
              tab.beta.back(), tab.alpha_bar.back());

  ddpm::TrainConfig tc;
  tc.batch_size = 32;
  tc.adam.lr = 2e-3;
  tc.lr_warmup = 50;
  tc.max_steps = steps;
  tc.out_dir = out;
  ddpm::Trainer<float, ddpm::backend::Cpu> trainer(model, tc);
  const auto s = trainer.fit(ddpm::io::load_mnist_dir(data, "train"));
  std::printf("trained %llu steps, loss %.4f\n", (unsigned long long)s.last_step, s.loss_avg100);
  trainer.ema()->swap();
  ddpm::SampleOptions o;
  for (int c = 0; c < 10; ++c)
    for (int j = 0; j < 8; ++j) o.labels.push_back(c);
  o.num_samples = o.labels.size();
  o.guidance = 2.0;
  const auto r = model.sample(ddpm::sampler::Ddim{.steps = 50}, o);
  ddpm::io::write_png_grid(std::filesystem::path(out) / "grid.png", r.images, r.shape.n(), 1, 28, 28, 8, 2, 1.0f, 2);
  std::printf("wrote %s/grid.png\n", out.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "custom_schedule: error: %s\n", e.what());
  return 1;
}
