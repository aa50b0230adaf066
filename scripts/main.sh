#!/usr/bin/env bash
# The README's first command: installs what is missing, builds the examples (release), and runs
# the main job. Idempotent; outputs go to runs/ (override with OUT=...).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset release -DDDPM_BUILD_TESTS=OFF -DDDPM_BUILD_BENCHMARKS=OFF -DDDPM_ENABLE_CUDA=OFF >/dev/null
cmake --build --preset release -j "$(nproc)" --target forward_process
./build/release/examples/forward_process 1000
