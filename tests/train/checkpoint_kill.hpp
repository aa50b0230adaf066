// SPDX-License-Identifier: MIT
// tests/train/checkpoint_kill.hpp — the crash-during-save experiment shared by
// test_checkpoint_kill.cpp (default run) and test_checkpoint_kill_slow.cpp (label slow).
//
// Starts tests/helpers/checkpoint_writer.cpp as a child process, which resumes from the newest
// checkpoint and then saves step after step in a loop; kills it with SIGKILL after a random
// delay; checks what is on disk; starts it again; many times. After every kill:
//  * <path> itself loads (no fallback needed: a half-written file never appears under that
//    name) and holds exactly the state of one step that was saved, the newest one: the last
//    step the writer reported as saved, or the one after it (killed after the rename, before it
//    could report);
//  * <path>.prev holds the step before (or the same one, killed between the two renames);
//  * the only temporary files are those of the writers killed since the last completed save
//    (each save removes those of dead processes), at most two per writer.
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "helpers/checkpoint_state.hpp"

extern char** environ;

namespace ddpm::test {

struct KillStats {
  int kills = 0;
  std::uint64_t saves = 0;          ///< checkpoints the writers reported as saved
  int mid_save = 0;                 ///< kills that left a temporary file (killed inside a save)
  int after_rename = 0;             ///< kills after the rename, before the writer reported it
  int between_renames = 0;          ///< kills after .prev was swapped in, before the new file
  double save_ms = 0;               ///< measured time of one save (with the writer's loop)
};

namespace kill_detail {

/// The child process with its stdout on a pipe.
struct Child {
  pid_t pid = -1;
  int out = -1;
  std::string buffer;
  bool eof = false;

  /// Reads what is available, waiting at most `timeout_ms`; returns false at end of file.
  bool pump(int timeout_ms) {
    if (eof) return false;
    pollfd p{out, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return true;
    char b[4096];
    const ssize_t n = ::read(out, b, sizeof b);
    if (n <= 0) {
      eof = true;
      return false;
    }
    buffer.append(b, std::size_t(n));
    return true;
  }
  /// Removes and returns the complete lines received so far.
  std::vector<std::string> lines() {
    std::vector<std::string> out_lines;
    std::size_t nl;
    while ((nl = buffer.find('\n')) != std::string::npos) {
      out_lines.push_back(buffer.substr(0, nl));
      buffer.erase(0, nl + 1);
    }
    return out_lines;
  }
};

inline Child spawn_writer(const std::filesystem::path& ckpt) {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  const std::string exe = DDPM_CHECKPOINT_WRITER;
  const std::string arg = ckpt.string();
  char* argv[] = {const_cast<char*>(exe.c_str()), const_cast<char*>(arg.c_str()), nullptr};
  Child c;
  const int rc = ::posix_spawn(&c.pid, exe.c_str(), &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);
  c.out = fds[0];
  REQUIRE_MESSAGE(rc == 0, "cannot start ", exe);
  return c;
}

inline std::uint64_t number_after(const std::string& line, const std::string& prefix) {
  REQUIRE_MESSAGE(line.rfind(prefix, 0) == 0, "unexpected writer output: ", line);
  return std::stoull(line.substr(prefix.size()));
}

/// Step and state of the checkpoint at `p` (loaded exactly as given, no fallback).
inline std::uint64_t load_and_check(const std::filesystem::path& p) {
  KillState got;
  const LoadedCheckpoint ck = load_checkpoint(p, got.model, &got.adam, &got.ema);
  KillState expect;
  set_state(expect, ck.counters.step);
  INFO("file ", p.string(), " step ", ck.counters.step);
  CHECK(same_bytes(got.tensors(), expect.tensors()));
  CHECK(got.adam.steps() == ck.counters.step);
  CHECK(got.ema.updates() == ck.counters.step);
  CHECK(ck.counters.samples_seen == ck.counters.step * 4);
  return ck.counters.step;
}

}  // namespace kill_detail

/// Runs the experiment with `kills` kills in folder `dir`. The first writer runs until it has
/// saved 5 times, which measures the time of one save; after that the delay before each kill is
/// uniform in [0, saves_per_kill x that time] after the writer reported that it resumed, so
/// kills land at every phase of a save and the series still advances.
inline KillStats run_kill_experiment(const std::filesystem::path& dir, int kills,
                                     std::uint32_t seed, double saves_per_kill = 3.0) {
  using namespace kill_detail;
  namespace fs = std::filesystem;
  const fs::path ckpt = dir / "ck.safetensors";
  const std::string base = ckpt.filename().string();
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  double save_us = 0;  // measured by the first writer
  KillStats st;
  std::uint64_t latest = 0;           // step of the newest checkpoint on disk (0: none yet)
  std::vector<pid_t> may_have_temps;  // writers whose temporary files may still be there
  for (int k = 0; k < kills; ++k) {
    Child c = spawn_writer(ckpt);
    // Wait for "resumed <step>": the writer found the checkpoint the previous round checked.
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::string> got;
    while (got.empty() && c.pump(100)) {
      got = c.lines();
      REQUIRE_MESSAGE(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60),
                      "the writer did not start within 60 s");
    }
    REQUIRE_MESSAGE(!got.empty(), "the writer exited before it resumed (see its stderr)");
    REQUIRE(number_after(got.front(), "resumed ") == latest);
    std::uint64_t acked = 0;
    for (std::size_t i = 1; i < got.size(); ++i) acked = number_after(got[i], "saved ");
    if (k == 0) {
      // Calibration: wait for 5 saves and time them.
      const auto start = std::chrono::steady_clock::now();
      while (acked < 5 && c.pump(100)) {
        for (const std::string& line : c.lines()) acked = number_after(line, "saved ");
        REQUIRE_MESSAGE(std::chrono::steady_clock::now() - start < std::chrono::seconds(120),
                        "the writer did not save 5 times within 120 s");
      }
      REQUIRE(acked >= 5);
      save_us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
                    .count() / double(acked);
      st.save_ms = save_us / 1000.0;
    } else {
      // Let it save for a random while, reading its reports, then kill it.
      const auto until = std::chrono::steady_clock::now() +
                         std::chrono::microseconds(std::int64_t(unit(rng) * saves_per_kill * save_us));
      while (std::chrono::steady_clock::now() < until) {
        pollfd p{c.out, POLLIN, 0};
        if (::poll(&p, 1, 0) > 0) c.pump(0);
      }
    }
    REQUIRE(::kill(c.pid, SIGKILL) == 0);
    int status = 0;
    REQUIRE(::waitpid(c.pid, &status, 0) == c.pid);
    REQUIRE_MESSAGE((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL),
                    "the writer ended by itself (status ", status, "): see its stderr");
    while (c.pump(1000)) {
    }
    ::close(c.out);
    for (const std::string& line : c.lines()) acked = number_after(line, "saved ");
    ++st.kills;
    const std::uint64_t base_step = std::max(latest, acked);
    st.saves += acked > latest ? acked - latest : 0;
    if (acked > 0) may_have_temps.clear();  // its first save removed the older writers' files
    may_have_temps.push_back(c.pid);

    INFO("kill ", k, ": resumed at ", latest, ", last reported save ", acked);
    if (base_step == 0 && !fs::exists(ckpt)) {
      // Killed before the first save completed: nothing to load yet.
      CHECK_FALSE(fs::exists(ckpt.string() + ".prev"));
    } else {
      // <path> itself is complete: load_latest_checkpoint needs no fallback.
      KillState got_state;
      const LoadedCheckpoint ck = load_latest_checkpoint(ckpt, got_state.model, &got_state.adam,
                                                         &got_state.ema);
      CHECK(ck.path == ckpt.string());
      CHECK(ck.fallback_reason.empty());
      const std::uint64_t step = load_and_check(ckpt);
      CHECK(step >= base_step);
      CHECK(step <= base_step + 1);
      if (step == base_step + 1) ++st.after_rename;
      if (step >= 2) {
        REQUIRE(fs::exists(ckpt.string() + ".prev"));
        const std::uint64_t prev = load_and_check(ckpt.string() + ".prev");
        CHECK((prev == step || prev + 1 == step));
        if (prev == step) ++st.between_renames;
      }
      latest = step;
    }
    // Temporary files: only of the writers since the last completed save, two each at most.
    bool temp_seen = false;
    std::size_t temps = 0;
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string name = e.path().filename().string();
      if (name == base || name == base + ".prev") continue;
      bool known = false;
      for (const pid_t pid : may_have_temps) {
        const std::string p = std::to_string(pid);
        if (name.rfind(base + ".tmp." + p + ".", 0) == 0 || name == base + ".prev.link." + p)
          known = true;
      }
      CHECK_MESSAGE(known, "unexpected file left behind: ", name);
      ++temps;
      if (name.rfind(base + ".tmp." + std::to_string(c.pid) + ".", 0) == 0) temp_seen = true;
    }
    CHECK(temps <= 2 * may_have_temps.size());
    if (temp_seen) ++st.mid_save;
  }
  return st;
}

}  // namespace ddpm::test
