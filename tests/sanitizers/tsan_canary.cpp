// SPDX-License-Identifier: MIT
// tests/sanitizers/tsan_canary.cpp — proof that the TSan set-up for oneTBB (tbb_itt_tsan.cpp)
// hides no real race: the same kind of parallel loop as the CPU backend's, once correct (no
// report expected) and once with a deliberate race (every chunk adds to one plain int). The
// ctest tsan.canary_race expects TSan's report, tsan.canary_clean expects none.
// Usage: ddpm_tsan_canary race|clean
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include <cstdio>
#include <cstring>
#include <vector>

int main(int argc, char** argv) {
  const bool race = argc > 1 && std::strcmp(argv[1], "race") == 0;
  tbb::task_arena arena(2);
  std::vector<float> in(1 << 16), out(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = float(i);  // written before the loop
  int shared = 0;
  for (int round = 0; round < 20; ++round) {
    arena.execute([&] {
      tbb::parallel_for(tbb::blocked_range<std::size_t>(0, in.size(), 1024),
                        [&](const tbb::blocked_range<std::size_t>& r) {
                          for (std::size_t i = r.begin(); i != r.end(); ++i) out[i] = 2 * in[i];
                          if (race) shared += 1;  // the bug TSan must still see
                        },
                        tbb::simple_partitioner());
    });
  }
  double sum = 0;
  for (const float x : out) sum += x;  // read after the loop
  std::printf("sum %.0f shared %d\n", sum, shared);
  return 0;
}
