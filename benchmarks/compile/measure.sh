#!/usr/bin/env bash
# Times the compile of the translation unit that includes the SIMD CPU backend and the U-Net and
# instantiates a training step and the samplers (unet_cpu_tu.cpp), at -O2, the way a user's
# project would compile it (g++, C++20, -march=x86-64-v3: AVX2 + FMA). Budget: < 30 s on the
# 2-core development machine. Prints wall and CPU seconds and the peak memory of the compiler.
#
# Usage: benchmarks/compile/measure.sh [repeats (default 3)]     CXX, CXXFLAGS override
set -euo pipefail
cd "$(dirname "$0")/../.."
CXX=${CXX:-g++}
repeats=${1:-3}
flags=(-std=c++20 -O2 -march=x86-64-v3 -Iinclude -I/usr/include/eigen3 ${CXXFLAGS:-})
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "$CXX $("$CXX" -dumpfullversion) ${flags[*]} -c benchmarks/compile/unet_cpu_tu.cpp"
for ((i = 1; i <= repeats; ++i)); do
  /usr/bin/time -f "run $i: %e s wall, %U s user + %S s sys, peak %M KiB" \
    "$CXX" "${flags[@]}" -c benchmarks/compile/unet_cpu_tu.cpp -o "$out/tu.o"
done
