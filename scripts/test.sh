#!/usr/bin/env bash
# The README's second command: installs what is missing, builds everything (tests, examples,
# benchmarks; the CUDA ones too when nvcc is found) and runs the default test suite (ctest labels
# slow and gpu are left out; run them with `ctest --preset slow` etc.). Open MPI is installed for
# the data-parallel tests (label mpi, about a minute on 2 cores: docs/distributed.md); they are
# part of the default suite whenever CMake finds MPI, and `ctest --preset mpi` runs them alone.
# The default suite includes the fuzz smoke runs (label fuzz, 15 s per target; reported as
# skipped without clang's libFuzzer) and the fuzz corpus replays (tests/fuzz/README.md).
#
# Then the CPU tests (ddpm_tests_backend, ddpm_tests_layers) built for x86-64-v4 (preset x86-64-v4),
# run where the CPU has AVX-512F and only built elsewhere; and the backend, layer and U-Net tests
# built with no -march (preset portable: the scalar fallbacks; about 2 min of CPU to build, 25 s to
# run).
#
# Then a second pass under AddressSanitizer + UndefinedBehaviorSanitizer (preset `sanitizers`)
# over the tests of the code that handles untrusted input and files: ddpm_tests_{core,optim,io,
# train} (readers, atomic writes, checkpoints incl. the SIGKILL test, trainer guards) and the
# fuzz corpus replays. The whole suite passes under the sanitizers too
# (`ctest --preset sanitizers` after building that preset); CI runs this subset because the
# sanitizer build of all test programs roughly doubles the build time on 2 cores.
#
# Usage: scripts/test.sh [--no-asan | --asan-only] [ctest arguments for the first pass...]
set -euo pipefail
cd "$(dirname "$0")/.."
asan=1 main=1
args=()
for a in "$@"; do
  case "$a" in
    --no-asan) asan=0 ;;
    --asan-only) main=0 ;;
    *) args+=("$a") ;;
  esac
done
scripts/install-deps.sh libopenmpi-dev openmpi-bin
# nvcc is not on PATH on every machine; CMake finds it through CUDACXX.
if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
if ((main)); then
  cmake --preset release
  cmake --build --preset release -j "$(nproc)"
  ctest --preset release "${args[@]}"
  # The CPU tests built with -march=x86-64-v4 (AVX-512 everywhere the compiler wants it): they must
  # compile on every machine and pass where the CPU has AVX-512F.
  cmake --preset x86-64-v4
  cmake --build --preset x86-64-v4 -j "$(nproc)"
  if grep -qw avx512f /proc/cpuinfo; then
    ctest --preset x86-64-v4
  else
    echo "ddpm: this CPU has no AVX-512F: the x86-64-v4 CPU tests were built, not run"
  fi
  # The same tests and the U-Net's built with no -march at all: the scalar / SSE2 fallbacks.
  cmake --preset portable
  cmake --build --preset portable -j "$(nproc)"
  ctest --preset portable
fi
if ((asan)); then
  echo "ddpm: ASan + UBSan pass (preset sanitizers) over core, optim, io, train and the fuzz corpus replays"
  cmake --preset sanitizers
  cmake --build --preset sanitizers -j "$(nproc)" --target \
    ddpm_tests_core ddpm_tests_optim ddpm_tests_io ddpm_tests_train ddpm_checkpoint_writer \
    ddpm_fuzz_replay_idx ddpm_fuzz_replay_safetensors ddpm_fuzz_replay_image
  ctest --preset sanitizers -R '^(ddpm_tests_(core|optim|io|train):|fuzz_replay\.)'
fi
