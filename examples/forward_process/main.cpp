// forward_process: two policy combinations composed at compile time, their schedules printed and
// plotted side by side (beta, alpha_bar, SNR of linear vs cosine), and the forward process
// q(x_t | x0) shown as a strip of digits at increasing t.
//
//   forward_process [T] [out_dir] [mnist_dir]     (defaults: 1000, runs/forward_process, data/mnist10k)
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <ddpm/backend/reference.hpp>
#include <ddpm/ddpm.hpp>
#if DDPM_EXAMPLE_HAVE_IO
#include <ddpm/io/idx.hpp>
#include <ddpm/io/plot.hpp>
#include <ddpm/io/png.hpp>
#endif

#ifndef DDPM_EXAMPLE_DATA_DIR
#define DDPM_EXAMPLE_DATA_DIR "data/mnist10k"
#endif

using Ref = ddpm::backend::Reference;
using Linear = ddpm::DiffusionProcess<ddpm::schedule::Linear, ddpm::target::Epsilon, ddpm::loss::L2, Ref>;
using Cosine = ddpm::DiffusionProcess<ddpm::schedule::Cosine, ddpm::target::V, ddpm::loss::Huber, Ref>;

int main(int argc, char** argv) try {
  const std::size_t T = argc > 1 ? std::stoul(argv[1]) : 1000;
  const std::filesystem::path out = argc > 2 ? argv[2] : "runs/forward_process";
  const std::string data_dir = argc > 3 ? argv[3] : DDPM_EXAMPLE_DATA_DIR;
  Linear lin(ddpm::schedule::Linear{.steps = T});
  Cosine cos(ddpm::schedule::Cosine{.steps = T});

  for (const auto& [name, sig] : {std::pair{"linear", lin.signature()}, std::pair{"cosine", cos.signature()}}) {
    std::printf("%s:", name);
    for (const auto& [k, v] : sig) std::printf(" %s=%s", k.c_str(), v.c_str());
    std::printf("\n");
  }
  std::printf("\n%6s | %10s %10s %10s | %10s %10s %10s\n", "t", "beta", "alpha_bar", "SNR", "beta", "alpha_bar", "SNR");
  std::printf("%6s | %32s | %32s\n", "", "linear (epsilon, L2)", "cosine (v, Huber)");
  const auto& a = lin.table();
  const auto& b = cos.table();
  for (std::size_t t : {std::size_t{0}, T / 10, T / 4, T / 2, 3 * T / 4, 9 * T / 10, T - 1}) {
    if (t >= T) continue;
    std::printf("%6zu | %10.3e %10.3e %10.3e | %10.3e %10.3e %10.3e\n", t, a.beta[t], a.alpha_bar[t], a.snr[t],
                b.beta[t], b.alpha_bar[t], b.snr[t]);
  }

#if DDPM_EXAMPLE_HAVE_IO
  namespace io = ddpm::io;
  std::filesystem::create_directories(out);
  std::vector<double> ts(T);
  for (std::size_t t = 0; t < T; ++t) ts[t] = double(t);
  auto series = [&](const char* label, const std::vector<float>& v) {
    return io::Series{label, ts, std::vector<double>(v.begin(), v.end())};
  };
  const std::vector<io::Series> betas{series("linear", a.beta), series("cosine", b.beta)};
  io::write_line_plot(out / "beta.png", betas, {.title = "beta_t", .xlabel = "t", .ylabel = "beta", .log_y = true});
  const std::vector<io::Series> abar{series("linear", a.alpha_bar), series("cosine", b.alpha_bar)};
  io::write_line_plot(out / "alpha_bar.png", abar, {.title = "alpha_bar_t", .xlabel = "t", .ylabel = "alpha_bar"});
  const std::vector<io::Series> snr{series("linear", a.snr), series("cosine", b.snr)};
  io::write_line_plot(out / "snr.png", snr,
                      {.title = "SNR_t = alpha_bar / (1 - alpha_bar)", .xlabel = "t", .ylabel = "SNR", .log_y = true});

  // Forward strips: 4 digits x 8 timesteps, for each schedule.
  const auto data = io::load_mnist_dir(data_dir, "t10k");
  const std::vector<std::size_t> picks{0, 1, 2, 3};
  const std::vector<std::int32_t> steps{0, std::int32_t(T / 20), std::int32_t(T / 10), std::int32_t(T / 5),
                                        std::int32_t(3 * T / 10), std::int32_t(T / 2), std::int32_t(7 * T / 10),
                                        std::int32_t(T - 1)};
  const std::size_t hw = data.h * data.w, n = picks.size() * steps.size();
  std::vector<float> x0h(n * hw);
  std::vector<std::int32_t> tv(n);
  for (std::size_t i = 0; i < picks.size(); ++i)
    for (std::size_t k = 0; k < steps.size(); ++k) {
      for (std::size_t p = 0; p < hw; ++p)
        x0h[(i * steps.size() + k) * hw + p] = float(data.pixels[picks[i] * hw + p]) / 127.5f - 1.0f;
      tv[i * steps.size() + k] = steps[k];
    }
  ddpm::Tensor<float, Ref> x0({n, 1, data.h, data.w}, x0h), eps({n, 1, data.h, data.w}), xt({n, 1, data.h, data.w});
  // The same noise for every timestep of a digit, so each row shows one trajectory fading out.
  std::vector<float> e(hw);
  for (std::size_t i = 0; i < picks.size(); ++i) {
    ddpm::Rng{0}.fill_normal(e.data(), hw, 1, i * hw);
    for (std::size_t k = 0; k < steps.size(); ++k)
      std::copy(e.begin(), e.end(), eps.data() + (i * steps.size() + k) * hw);
  }
  for (auto* proc : {static_cast<const ddpm::GaussianProcess<ddpm::target::Epsilon, ddpm::loss::L2, Ref>*>(&lin)}) {
    proc->q_sample(x0.cview(), eps.cview(), tv, xt.view());
    const auto v = xt.to_vector();
    io::write_png_grid(out / "forward_linear.png", v, n, 1, data.h, data.w, steps.size(), 2, 1.0f, 3);
  }
  cos.q_sample(x0.cview(), eps.cview(), tv, xt.view());
  io::write_png_grid(out / "forward_cosine.png", xt.to_vector(), n, 1, data.h, data.w, steps.size(), 2, 1.0f, 3);
  std::printf("\nwrote %s/{beta,alpha_bar,snr}.png and forward_{linear,cosine}.png (columns: t =", out.c_str());
  for (auto t : steps) std::printf(" %d", t);
  std::printf(")\n");
#endif
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "forward_process: %s\n", e.what());
  return 1;
}
