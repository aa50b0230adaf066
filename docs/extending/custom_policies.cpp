// docs/extending/custom_policies.cpp — an outside project's own schedule, target and loss (see
// docs/extending.md), trained on its own two-class data set and sampled with guidance.
//
//  * CosineSquared: a schedule given by alpha_bar(t) only;
//  * ScaledEps: a prediction target of its own (the network predicts 2 eps), written for float
//    only and without min_snr_weight (the library derives it from x0());
//  * LogCosh: a loss written for float only (the SIMD backend runs it lane by lane).
// Built and run by the test suite against the installed package (ctest -R extending).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string_view>
#include <vector>

#include <ddpm/backend/cpu.hpp>
#include <ddpm/ddpm.hpp>
#include <ddpm/diffusion/diffusion.hpp>
#include <ddpm/train/trainer.hpp>

// ---- a schedule through alpha_bar only
struct CosineSquared {
  std::size_t steps = 100;
  std::size_t num_steps() const { return steps; }
  double alpha_bar(std::size_t t) const {
    const double u = (double(t) + 1.0) / double(steps);
    const double c = std::cos(0.5 * 3.14159265358979323846 * (u + 0.008) / 1.008);
    return std::max(c * c, 1e-5);
  }
};
static_assert(ddpm::Schedule<CosineSquared>);

// ---- a target of its own: the network predicts 2 eps (float only, no min_snr_weight)
struct ScaledEps {
  static constexpr std::string_view name = "scaled-eps";
  static float target(float /*x0*/, float eps, float /*a*/, float /*s*/) { return 2.0f * eps; }
  static float x0(float xt, float out, float a, float s) { return (xt - s * 0.5f * out) / a; }
  static float eps(float /*xt*/, float out, float /*a*/, float /*s*/) { return 0.5f * out; }
};
static_assert(ddpm::Target<ScaledEps>);

// ---- a loss of its own, for float only
struct LogCosh {
  static constexpr std::string_view name() { return "logcosh"; }
  float value(float d) const { return std::log(std::cosh(d)); }
  float grad(float d) const { return std::tanh(d); }
};
static_assert(ddpm::Loss<LogCosh>);

// ---- its own data: 8x8 images, class 0 a horizontal bar, class 1 a vertical bar
ddpm::io::ImageDataset bars(std::size_t n) {
  ddpm::io::ImageDataset d;
  d.n = n;
  d.c = 1;
  d.h = d.w = 8;
  d.pixels.assign(n * 64, 0);
  d.labels.resize(n);
  std::mt19937 gen(7);
  for (std::size_t i = 0; i < n; ++i) {
    const int cls = int(i % 2), at = 1 + int(gen() % 6);
    d.labels[i] = cls;
    for (int k = 0; k < 8; ++k) d.pixels[i * 64 + (cls == 0 ? at * 8 + k : k * 8 + at)] = 255;
  }
  return d;
}

// Class of an image: a bar along a row (0) or a column (1), by the brightest row and column mean.
int class_of(const float* img) {
  float best_row = -1e9f, best_col = -1e9f;
  for (int r = 0; r < 8; ++r) {
    float row = 0, col = 0;
    for (int k = 0; k < 8; ++k) {
      row += img[r * 8 + k];
      col += img[k * 8 + r];
    }
    best_row = std::max(best_row, row);
    best_col = std::max(best_col, col);
  }
  return best_row > best_col ? 0 : 1;
}

int main() try {
  ddpm::nn::UNetConfig net;
  net.in_channels = 1;
  net.image_size = 8;
  net.base_channels = 16;
  net.channel_mults = {1, 2};
  net.num_res_blocks = 1;
  net.attention_resolutions = {4};
  net.groups = 4;
  net.num_classes = 2;
  ddpm::backend::Cpu be(2);
  ddpm::ProcessOptions po;
  po.min_snr_gamma = 5.0;  // uses the weight derived from ScaledEps::x0
  ddpm::Diffusion<CosineSquared, ScaledEps, LogCosh, ddpm::backend::Cpu> model(CosineSquared{}, net, 1, {},
                                                                             be, po);
  ddpm::TrainConfig tc;
  tc.batch_size = 32;
  tc.adam.lr = 2e-3;
  tc.lr_warmup = 50;
  tc.max_steps = 600;
  tc.progress = false;
  ddpm::Trainer<float, ddpm::backend::Cpu> trainer(model, tc);
  const auto stats = trainer.fit(bars(512));
  std::printf("trained %llu steps, loss %.4f\n", (unsigned long long)stats.last_step, stats.loss_avg100);
  trainer.ema()->swap();

  ddpm::SampleOptions o;
  for (int i = 0; i < 40; ++i) o.labels.push_back(i % 2);
  o.num_samples = o.labels.size();
  o.guidance = 3.0;
  o.seed = 11;
  const auto r = model.sample(ddpm::sampler::Ddim{.steps = 25}, o);
  int right = 0;
  for (std::size_t i = 0; i < o.num_samples; ++i) right += class_of(r.images.data() + i * 64) == o.labels[i];
  std::printf("%d of %zu samples have the class asked for\n", right, o.num_samples);
  if (right < int(o.num_samples) * 9 / 10) return 1;
  std::printf("custom policies ok\n");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "custom_policies: error: %s\n", e.what());
  return 1;
}
