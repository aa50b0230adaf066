#!/usr/bin/env bash
# The README's first command: installs what is missing (apt-get), builds the examples (release),
# and runs the main job: the class-conditional MNIST example trains on the 10,000 digits bundled
# in data/mnist10k for MINUTES minutes (default 10) on the SIMD CPU backend, then writes
# runs/mnist/grid.png (one row per digit class), runs/mnist/denoise.gif and runs/mnist/loss.png.
# Idempotent: it starts a fresh run each time (the previous one is moved to runs/mnist.prev).
# Environment: MINUTES (default 10), OUT (default runs/mnist), THREADS (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset examples >/dev/null
cmake --build --preset examples -j "$(nproc)" --target mnist forward_process
OUT=${OUT:-runs/mnist}
if [ -d "$OUT" ]; then rm -rf "$OUT.prev"; mv "$OUT" "$OUT.prev"; fi
./build/examples/examples/forward_process 1000 runs/forward_process >/dev/null
./build/examples/examples/mnist/mnist --threads "${THREADS:-0}" train --fresh --out "$OUT" \
  --minutes "${MINUTES:-10}" "$@"
echo "main job done: $OUT/grid.png, $OUT/denoise.gif, $OUT/loss.png (schedule plots in runs/forward_process)"
