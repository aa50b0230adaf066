// forward_process: two policy combinations composed at compile time, their schedules printed side
// by side, and the forward process q(x_t | x0) applied to a synthetic image.
//
//   forward_process [T]        (default T = 1000)
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <ddpm/backend/reference.hpp>
#include <ddpm/ddpm.hpp>

using Linear = ddpm::DiffusionProcess<ddpm::schedule::Linear, ddpm::target::Epsilon, ddpm::loss::L2,
                                      ddpm::backend::Reference>;
using Cosine = ddpm::DiffusionProcess<ddpm::schedule::Cosine, ddpm::target::V, ddpm::loss::Huber,
                                      ddpm::backend::Reference>;

int main(int argc, char** argv) try {
  const std::size_t T = argc > 1 ? std::stoul(argv[1]) : 1000;
  Linear lin(ddpm::schedule::Linear{.steps = T});
  Cosine cos(ddpm::schedule::Cosine{.steps = T});

  for (const auto& [name, sig] : {std::pair{"linear", lin.signature()}, std::pair{"cosine", cos.signature()}}) {
    std::printf("%s:", name);
    for (const auto& [k, v] : sig) std::printf(" %s=%s", k.c_str(), v.c_str());
    std::printf("\n");
  }
  std::printf("\n%6s | %10s %10s %10s | %10s %10s %10s\n", "t", "beta", "alpha_bar", "SNR", "beta",
              "alpha_bar", "SNR");
  std::printf("%6s | %32s | %32s\n", "", "linear (epsilon, L2)", "cosine (v, Huber)");
  const auto& a = lin.table();
  const auto& b = cos.table();
  for (std::size_t t : {std::size_t{0}, T / 10, T / 4, T / 2, 3 * T / 4, 9 * T / 10, T - 1}) {
    if (t >= T) continue;
    std::printf("%6zu | %10.3e %10.3e %10.3e | %10.3e %10.3e %10.3e\n", t, a.beta[t], a.alpha_bar[t],
                a.snr[t], b.beta[t], b.alpha_bar[t], b.snr[t]);
  }

  // q_sample of a synthetic 8x8 "image" (a diagonal bar) at a few timesteps.
  const std::size_t n = 4, hw = 8;
  std::vector<float> img(n * hw * hw);
  for (std::size_t k = 0; k < n; ++k)
    for (std::size_t i = 0; i < hw; ++i)
      for (std::size_t j = 0; j < hw; ++j) img[(k * hw + i) * hw + j] = (i == j) ? 1.0f : -1.0f;
  ddpm::Tensor<float, ddpm::backend::Reference> x0({n, 1, hw, hw}, img), eps({n, 1, hw, hw}),
      xt({n, 1, hw, hw});
  ddpm::Ops<ddpm::backend::Reference>::fill_normal({}, eps.view(), ddpm::Rng{0}, 1);
  const std::vector<std::int32_t> ts{0, std::int32_t(T / 4), std::int32_t(T / 2), std::int32_t(T - 1)};
  cos.q_sample(x0.cview(), eps.cview(), ts, xt.view());
  std::printf("\nq_sample, cosine schedule: the bar fades into noise (row 3 of each 8x8 image)\n");
  for (std::size_t k = 0; k < n; ++k) {
    std::printf("t=%4d:", ts[k]);
    for (std::size_t j = 0; j < hw; ++j) std::printf(" %6.2f", xt.view()[(k * hw + 3) * hw + j]);
    std::printf("\n");
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "forward_process: %s\n", e.what());
  return 1;
}
