// An outside project's program: its own two-class data set as an xt::xarray, a few training
// steps of a tiny class-conditional U-Net on the SIMD CPU backend, samples taken out into
// xtensor without a copy, per-image statistics of the samples computed with Eigen, and an
// inpainting of xtensor images with an xtensor mask.
#include <cmath>
#include <cstdio>
#include <vector>

#include <Eigen/Core>
#include <xtensor/xarray.hpp>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>

#include <ddpm/backend/cpu.hpp>
#include <ddpm/ddpm.hpp>
#include <ddpm/diffusion/diffusion.hpp>
#include <ddpm/interop/eigen.hpp>
#include <ddpm/interop/xtensor.hpp>
#include <ddpm/train/trainer.hpp>

int main() {
  // 16 images 1x8x8 in [-1, 1]: class 0 a horizontal bar, class 1 a vertical bar.
  const std::size_t n = 16;
  xt::xarray<float> images = xt::full_like(xt::xarray<float>::from_shape({n, 1, 8, 8}), -1.0f);
  xt::xarray<int> labels = xt::zeros<int>({n});
  for (std::size_t i = 0; i < n; ++i) {
    labels(i) = int(i % 2);
    if (i % 2 == 0)
      xt::view(images, i, 0, 1 + i % 6, xt::all()) = 1.0f;
    else
      xt::view(images, i, 0, xt::all(), 1 + i % 6) = 1.0f;
  }

  ddpm::nn::UNetConfig net;
  net.in_channels = 1;
  net.image_size = 8;
  net.base_channels = 8;
  net.channel_mults = {1, 2};
  net.num_res_blocks = 1;
  net.attention_resolutions = {4};
  net.groups = 4;
  net.num_classes = 2;
  using Model = ddpm::Diffusion<ddpm::schedule::Cosine, ddpm::target::Epsilon, ddpm::loss::L2,
                                ddpm::backend::Cpu>;
  Model model(ddpm::schedule::Cosine{.steps = 50}, net, /*seed=*/3);

  // training data from the xt::xarray (8-bit, as Trainer::fit takes it)
  const ddpm::io::ImageDataset data = ddpm::interop::to_dataset(images, labels);
  ddpm::TrainConfig cfg;
  cfg.batch_size = 8;
  cfg.max_steps = 4;
  cfg.progress = false;
  cfg.handle_sigint = false;
  ddpm::Trainer<float, ddpm::backend::Cpu> trainer(model, cfg);
  const ddpm::TrainSummary summary = trainer.fit(data);

  // one more training forward/backward straight on the xarray's memory (no copy)
  const std::vector<std::int32_t> y(labels.begin(), labels.end());
  const double loss = model.forward_backward(ddpm::interop::as_view(images, "images"), y, 99, {});

  // sample into xtensor: the result's images are moved into the xtensor, not copied
  auto x = ddpm::interop::to_xtensor(
      model.sample(ddpm::sampler::Ddim{.steps = 5},
                   {.num_samples = 4, .labels = {0, 1, 0, 1}, .guidance = 2.0, .seed = 7}));
  const bool finite = xt::all(xt::isfinite(x));
  const float lo = xt::amin(x)(), hi = xt::amax(x)();

  // statistics with Eigen on the same memory: one row per image
  const auto m = ddpm::interop::as_matrix(ddpm::interop::as_view(x, "samples"));
  const Eigen::VectorXf mean = m.rowwise().mean();
  const Eigen::VectorXf stddev =
      ((m.colwise() - mean).array().square().rowwise().sum() / float(m.cols())).sqrt();

  // inpainting: the top half of four training images is known (mask 1), handed over as spans
  const xt::xtensor<float, 4> src = xt::view(images, xt::range(0, 4));
  xt::xtensor<float, 2> mask = xt::zeros<float>({8, 8});  // one value per pixel (H, W)
  xt::view(mask, xt::range(0, 4), xt::all()) = 1.0f;
  auto painted = ddpm::interop::to_xtensor(
      model.inpaint(ddpm::sampler::Ddim{.steps = 5}, ddpm::interop::as_span(src, "images"),
                    ddpm::interop::as_span(mask, "mask"), {},
                    {.num_samples = 4, .labels = {0, 1, 0, 1}, .seed = 9}));
  const float known_err = xt::amax(xt::abs(xt::view(painted, xt::all(), xt::all(), xt::range(0, 4)) -
                                           xt::view(src, xt::all(), xt::all(), xt::range(0, 4))))();
  const bool painted_finite = xt::all(xt::isfinite(painted));

  std::printf("trained %llu steps (loss %.4f, direct step %.4f); samples %zux%zux%zux%zu in [%.3f, %.3f]\n",
              static_cast<unsigned long long>(summary.last_step - summary.first_step),
              summary.final_loss, loss, x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3],
              double(lo), double(hi));
  for (Eigen::Index i = 0; i < mean.size(); ++i)
    std::printf("sample %ld: mean %.4f std %.4f\n", static_cast<long>(i), double(mean(i)),
                double(stddev(i)));
  std::printf("inpainting: largest change of a known pixel %g\n", double(known_err));
  const bool ok = painted_finite && known_err <= 1e-6f && summary.last_step - summary.first_step == 4 && std::isfinite(summary.final_loss) &&
                  std::isfinite(loss) && finite && lo >= -1.0f && hi <= 1.0f && m.rows() == 4 &&
                  m.cols() == 64 && mean.allFinite() && stddev.allFinite() && stddev.maxCoeff() > 0.0f;
  if (!ok) {
    std::printf("interop consumer FAILED\n");
    return 1;
  }
  std::printf("interop consumer ok\n");
  return 0;
}
