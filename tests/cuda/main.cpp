// SPDX-License-Identifier: MIT
// tests/cuda/main.cpp — doctest main of the GPU tests: without a CUDA device it prints a message and
// returns 77, which ctest reports as "skipped" (SKIP_RETURN_CODE 77).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "ddpm/backend/cuda.hpp"

int main(int argc, char** argv) {
  if (ddpm::backend::Cuda::device_count() == 0) {
    std::puts("no CUDA device found: GPU tests skipped");
    return 77;
  }
  std::printf("ddpm GPU tests on device 0: %s\n", ddpm::detail::cuda::Runtime<>::describe(0).c_str());
  doctest::Context context(argc, argv);
  return context.run();
}
