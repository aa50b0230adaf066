// tests/extending/cuda_custom_policies.cu — a user's float-only target and loss (as in
// docs/extending/custom_policies.cpp, with DDPM_HOST_DEVICE so they also run inside CUDA kernels)
// instantiated for the CUDA backend: this translation unit must compile with nvcc. Built with the
// project whenever CMake finds CUDA; nothing to run (the GPU tests run the built-in policies).
#include <cmath>
#include <string_view>

#include <ddpm/backend/cuda.cuh>

struct ScaledEps {
  static constexpr std::string_view name = "scaled-eps";
  DDPM_HOST_DEVICE static float target(float, float eps, float, float) { return 2.0f * eps; }
  DDPM_HOST_DEVICE static float x0(float xt, float out, float a, float s) { return (xt - s * 0.5f * out) / a; }
  DDPM_HOST_DEVICE static float eps(float, float out, float, float) { return 0.5f * out; }
};
static_assert(ddpm::Target<ScaledEps>);

struct LogCosh {
  static constexpr std::string_view name() { return "logcosh"; }
  DDPM_HOST_DEVICE float value(float d) const { return logf(coshf(d)); }
  DDPM_HOST_DEVICE float grad(float d) const { return tanhf(d); }
};
static_assert(ddpm::Loss<LogCosh>);

DDPM_CUDA_INSTANTIATE_POLICIES(ScaledEps, LogCosh)
DDPM_CUDA_INSTANTIATE_TARGET(ScaledEps)
