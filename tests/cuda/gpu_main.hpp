// SPDX-License-Identifier: MIT
// tests/cuda/gpu_main.hpp — the main() of the GPU test binaries (ddpm_tests_cuda, ddpm_tests_nccl).
//
// Default: without a usable CUDA device (none, no driver, a driver too old for the runtime) the
// binary prints why and returns 77, which ctest reports as "skipped" (SKIP_RETURN_CODE 77).
// Strict: with DDPM_REQUIRE_GPU=1 in the environment (the gpu-strict preset, scripts/gpu-check.sh)
// the same situations are failures (exit 1, with the reason), the device's context must come up,
// and the binary never returns 77.
#pragma once

#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "ddpm/backend/cuda.hpp"

namespace cuda_test {

/// DDPM_REQUIRE_GPU: unset, "" or "0": skip without a device; "1": a missing device is a failure.
/// Any other value is an error (exit 2), so that a typo cannot turn strict mode off.
inline int require_gpu_mode() {
  const char* v = std::getenv("DDPM_REQUIRE_GPU");
  if (!v || !*v || std::strcmp(v, "0") == 0) return 0;
  if (std::strcmp(v, "1") == 0) return 1;
  return -1;
}

/// True when the command line only asks doctest something (--help, --list-test-cases, --count,
/// ...): answered without a device.
inline bool query_only(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    for (const char* q : {"-h", "-?", "--help", "-ltc", "--list-test-cases", "-lts", "--list-test-suites", "-lr",
                          "--list-reporters", "-c", "--count", "-v", "--version"})
      if (a == q || a.rfind(std::string(q) + "=", 0) == 0) return true;
  }
  return false;
}

/// Runs the doctest cases of a GPU test binary; `what` names it in messages.
inline int gpu_test_main(int argc, char** argv, const char* what) {
  if (query_only(argc, argv)) {
    doctest::Context context(argc, argv);
    return context.run();
  }
  const int strict = require_gpu_mode();
  if (strict < 0) {
    std::fprintf(stderr, "%s: DDPM_REQUIRE_GPU=\"%s\" is not 0 or 1\n", what, std::getenv("DDPM_REQUIRE_GPU"));
    return 2;
  }
  using Runtime = ddpm::detail::cuda::Runtime<>;
  const int n = ddpm::backend::Cuda::device_count();
  if (n == 0) {
    const std::string why = Runtime::device_error();
    if (strict) {
      std::fprintf(stderr,
                   "%s: FAILED: DDPM_REQUIRE_GPU=1 but no usable CUDA device: %s. The GPU tests did not run.\n",
                   what, why.c_str());
      return 1;
    }
    std::printf("%s: no usable CUDA device (%s): GPU tests skipped (set DDPM_REQUIRE_GPU=1 to fail instead)\n", what,
                why.c_str());
    return 77;
  }
  try {
    // Brings up device 0's context (stream, cuBLAS, pool): a driver/runtime problem shows here, once,
    // with its CUDA error, rather than in every test case.
    const ddpm::backend::Cuda be(0);
    be.synchronize();
    std::printf("%s on device 0 of %d: %s%s\n", what, n, Runtime::describe(0).c_str(),
                strict ? " (DDPM_REQUIRE_GPU=1)" : "");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: FAILED: CUDA device 0 could not be initialised: %s\n", what, e.what());
    return 1;
  }
  doctest::Context context(argc, argv);
  int rc = context.run();
  if (context.shouldExit()) return rc;  // --help, --list-test-cases, ...
  if (strict && rc == 77) rc = 1;       // never "skipped" in strict mode
  return rc;
}

}  // namespace cuda_test
