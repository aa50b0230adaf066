// SPDX-License-Identifier: MIT
// tests/mpi/nccl_main.cpp — doctest main of the NCCL test: without a CUDA device it prints why and
// returns 77 (ctest: skipped), or fails with DDPM_REQUIRE_GPU=1 (tests/cuda/gpu_main.hpp).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "../cuda/gpu_main.hpp"

int main(int argc, char** argv) { return cuda_test::gpu_test_main(argc, argv, "ddpm_tests_nccl"); }
