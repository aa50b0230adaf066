// benchmarks/compile/unet_cpu_tu.cpp — the translation unit whose compile time the library keeps
// bounded (under 30 s at -O2 on a 2-core development machine): the SIMD CPU backend, the U-Net
// forward and backward, the diffusion training step, Adam + EMA and both samplers, all
// instantiated. `benchmarks/compile/measure.sh` times it; benchmarks/README.md has the figures.
#include <cstdio>
#include <vector>

#include <ddpm/backend/cpu.hpp>
#include <ddpm/ddpm.hpp>
#include <ddpm/diffusion/diffusion.hpp>
#include <ddpm/train/trainer.hpp>

int main() {
  using Model = ddpm::Diffusion<ddpm::schedule::Cosine, ddpm::target::Epsilon, ddpm::loss::L2, ddpm::backend::Cpu>;
  auto cfg = ddpm::nn::UNetConfig::mnist();
  Model model(ddpm::schedule::Cosine{.steps = 100}, cfg, /*seed=*/0);
  ddpm::Trainer<float, ddpm::backend::Cpu> trainer(model, {.batch_size = 4, .max_steps = 1});
  ddpm::io::ImageDataset data;
  data.n = 4, data.c = 1, data.h = 28, data.w = 28;
  data.pixels.assign(4 * 28 * 28, 0);
  data.labels = {0, 1, 2, 3};
  const auto s = trainer.fit(data);
  auto r = model.sample(ddpm::sampler::Ddim{.steps = 2}, {.num_samples = 2, .labels = {1, 2}, .seed = 1});
  std::printf("loss %.4f, %zu sampled values\n", s.final_loss, r.images.size());
  return 0;
}
