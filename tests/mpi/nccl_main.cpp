// SPDX-License-Identifier: MIT
// tests/mpi/nccl_main.cpp — doctest main of the NCCL test: without a CUDA device it prints a message
// and returns 77, which ctest reports as "skipped".
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "ddpm/backend/cuda.hpp"

int main(int argc, char** argv) {
  if (ddpm::backend::Cuda::device_count() == 0) {
    std::puts("no CUDA device found: NCCL test skipped");
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
