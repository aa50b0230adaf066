// SPDX-License-Identifier: MIT
// tests/helpers/checkpoint_writer.cpp — the child process of the checkpoint-kill test
// (tests/train/test_checkpoint_kill.cpp): resumes from the newest complete checkpoint in a folder,
// then saves a new checkpoint for step + 1, step + 2, ... forever, until it is killed.
//
// Usage: ddpm_checkpoint_writer <checkpoint path>
// Protocol on stdout (one line each, flushed): "resumed <step>" once the checkpoint was loaded
// (0 when there was none), then "saved <step>" after each save_checkpoint returned.
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>

#include "helpers/checkpoint_state.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <checkpoint path>\n", argv[0]);
    return 2;
  }
  const std::filesystem::path path = argv[1];
  try {
    ddpm::test::KillState s;
    std::uint64_t step = 0;
    if (std::filesystem::exists(path) || std::filesystem::exists(path.string() + ".prev")) {
      const auto ck = ddpm::load_latest_checkpoint(path, s.model, &s.adam, &s.ema);
      step = ck.counters.step;
      // The loaded state must be the one saved for that step (the test checks it as well).
      ddpm::test::KillState expect;
      ddpm::test::set_state(expect, step);
      if (!ddpm::test::same_bytes(s.tensors(), expect.tensors())) {
        std::fprintf(stderr, "checkpoint_writer: %s holds step %llu but not its state\n",
                     ck.path.c_str(), static_cast<unsigned long long>(step));
        return 3;
      }
    }
    std::printf("resumed %llu\n", static_cast<unsigned long long>(step));
    std::fflush(stdout);
    for (;;) {
      ++step;
      ddpm::test::set_state(s, step);
      ddpm::save_checkpoint(path, s.model, &s.adam, &s.ema, ddpm::test::counters_for(step));
      std::printf("saved %llu\n", static_cast<unsigned long long>(step));
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "checkpoint_writer: %s\n", e.what());
    return 1;
  }
}
