#!/usr/bin/env bash
# The README's second command: installs what is missing, builds everything (tests, examples,
# benchmarks; the CUDA ones too when nvcc is found) and runs the default test suite (ctest labels
# slow and gpu are left out; run them with `ctest --preset slow` etc.). Open MPI is installed for
# the data-parallel tests (label mpi, about a minute on 2 cores: docs/distributed.md); they are
# part of the default suite whenever CMake finds MPI, and `ctest --preset mpi` runs them alone.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh libopenmpi-dev openmpi-bin
# nvcc is not on PATH on every machine; CMake finds it through CUDACXX.
if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
cmake --preset release
cmake --build --preset release -j "$(nproc)"
ctest --preset release "$@"
