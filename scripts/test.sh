#!/usr/bin/env bash
# The README's second command: installs what is missing, builds everything (tests, examples,
# benchmarks; the CUDA ones too when nvcc is found) and runs the default test suite (ctest labels
# slow, gpu and mpi are left out; run them with `ctest --preset slow` etc.).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# nvcc is not on PATH on every machine; CMake finds it through CUDACXX.
if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
cmake --preset release
cmake --build --preset release -j "$(nproc)"
ctest --preset release "$@"
