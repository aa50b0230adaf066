// docs/extending/custom_backend.cpp — a backend of one's own (see docs/extending.md): `Profiled`
// is the SIMD CPU backend with every convolution timed. Its tag derives from backend::Cpu (so it
// shares the thread arena, the memory space and every operation it does not override), and
// Ops<Profiled> derives from Ops<backend::Cpu> and replaces two operations. A model on it trains
// and samples exactly as on backend::Cpu (the test checks the bytes). DDPM_CHECK_BACKEND_OPS checks
// Ops<Profiled> against the list of operations (ddpm/backend/op_list.hpp) at compile time.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string_view>

#include <ddpm/backend/cpu.hpp>
#include <ddpm/backend/op_list.hpp>
#include <ddpm/ddpm.hpp>
#include <ddpm/diffusion/diffusion.hpp>

struct Profiled : ddpm::backend::Cpu {
  static constexpr std::string_view name = "profiled-cpu";
  using Cpu::Cpu;
  struct Stats {
    long calls = 0;
    double seconds = 0;
  };
  std::shared_ptr<Stats> conv = std::make_shared<Stats>();
};
static_assert(ddpm::backend::Backend<Profiled>);

template <>
struct ddpm::Ops<Profiled> : ddpm::Ops<ddpm::backend::Cpu> {
  using Base = ddpm::Ops<ddpm::backend::Cpu>;
  template <class T>
  static void conv2d_forward(const Profiled& be, ConstView<T> x, ConstView<T> w, ConstView<T> bias,
                             View<T> y, ConvGeometry g) {
    const auto t0 = std::chrono::steady_clock::now();
    Base::conv2d_forward(be, x, w, bias, y, g);
    record(be, t0);
  }
  template <class T>
  static void conv2d_backward(const Profiled& be, ConstView<T> x, ConstView<T> w, ConstView<T> dy,
                              View<T> dx, View<T> dw, View<T> db, ConvGeometry g, bool acc) {
    const auto t0 = std::chrono::steady_clock::now();
    Base::conv2d_backward(be, x, w, dy, dx, dw, db, g, acc);
    record(be, t0);
  }

 private:
  static void record(const Profiled& be, std::chrono::steady_clock::time_point t0) {
    be.conv->calls += 1;
    be.conv->seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
};
// Every operation of the list is there, with the signature of ddpm/backend/reference.hpp; one
// missing would stop the build here with "ddpm: Ops<B> has no op '...'".
DDPM_CHECK_BACKEND_OPS(Profiled);

template <class B>
std::vector<float> train_and_sample(B be) {
  ddpm::nn::UNetConfig net;
  net.in_channels = 1;
  net.image_size = 8;
  net.base_channels = 8;
  net.channel_mults = {1, 2};
  net.num_res_blocks = 1;
  net.attention_resolutions = {4};
  net.groups = 4;
  ddpm::Diffusion<ddpm::schedule::Cosine, ddpm::target::V, ddpm::loss::Huber, B> model(
      ddpm::schedule::Cosine{.steps = 50}, net, 3, {}, be);
  ddpm::Tensor<float, B> x0({4, 1, 8, 8});
  std::vector<float> host(4 * 64);
  for (std::size_t i = 0; i < host.size(); ++i) host[i] = (i % 9) < 3 ? 1.0f : -1.0f;
  x0.copy_from(host);
  const double loss = model.forward_backward(x0.cview(), {}, 0, {});
  std::printf("%s: loss %.6f\n", std::string(B::name).c_str(), loss);
  return model.sample(ddpm::sampler::Ddim{.steps = 5}, {.num_samples = 2, .seed = 5}).images;
}

int main() try {
  Profiled prof(2);
  const auto a = train_and_sample(prof);
  const auto b = train_and_sample(ddpm::backend::Cpu(2));
  std::printf("convolutions: %ld calls, %.3f ms\n", prof.conv->calls, 1e3 * prof.conv->seconds);
  const bool same = a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  std::printf("samples on Profiled and on Cpu are %s\n", same ? "bitwise equal" : "DIFFERENT");
  return same && prof.conv->calls > 0 ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "custom_backend: error: %s\n", e.what());
  return 1;
}
