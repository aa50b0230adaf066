// An outside project's program: its own schedule, composed with the library's policies, one
// training step and a few sampling steps of a tiny U-Net on the SIMD CPU backend.
#include <cmath>
#include <cstdio>
#include <vector>

#include <ddpm/backend/cpu.hpp>
#include <ddpm/ddpm.hpp>
#include <ddpm/diffusion/diffusion.hpp>

struct Quadratic {
  std::size_t steps = 100;
  std::size_t num_steps() const { return steps; }
  double beta(std::size_t t) const {
    const double u = double(t) / double(steps - 1);
    return std::pow(std::sqrt(1e-4) + u * (std::sqrt(0.02) - std::sqrt(1e-4)), 2);
  }
};
static_assert(ddpm::Schedule<Quadratic>);

int main() {
  ddpm::nn::UNetConfig net;
  net.in_channels = 1;
  net.image_size = 8;
  net.base_channels = 8;
  net.channel_mults = {1, 2};
  net.num_res_blocks = 1;
  net.attention_resolutions = {4};
  net.groups = 4;
  ddpm::Diffusion<Quadratic, ddpm::target::V, ddpm::loss::Huber, ddpm::backend::Cpu> model(Quadratic{}, net, 1);
  ddpm::Tensor<float, ddpm::backend::Cpu> x0({2, 1, 8, 8});
  x0.zero();
  const double loss = model.forward_backward(x0.cview(), {}, 0, {});
  const auto r = model.sample(ddpm::sampler::Ddim{.steps = 5}, {.num_samples = 2});
  std::printf("loss %.4f, %zu samples of %s\n", loss, r.shape.n(), r.shape.str().c_str());
  if (!std::isfinite(loss) || r.images.size() != 2 * 64) return 1;
  std::printf("consumer ok\n");
  return 0;
}
