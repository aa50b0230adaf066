// SPDX-License-Identifier: MIT
// Crash during save: a child process checkpoints in a loop and is killed with SIGKILL at random
// moments, 100 times; after every kill the newest complete checkpoint loads and matches a saved
// state exactly (see checkpoint_kill.hpp). The 1000-kill variant is test_checkpoint_kill_slow.cpp.
#include <doctest/doctest.h>

#include <filesystem>

#include "io/io_test_util.hpp"
#include "train/checkpoint_kill.hpp"

TEST_CASE("checkpoint: SIGKILL at random moments of a save loop never leaves a bad or missing newest checkpoint") {
  ddpm::io::test::TempDir dir;
  const auto st = ddpm::test::run_kill_experiment(dir.path(), 100, 20240611u);
  MESSAGE("kills: ", st.kills, ", saves: ", st.saves, " (", st.save_ms, " ms each), killed inside a save: ", st.mid_save,
          ", after the rename: ", st.after_rename, ", between the renames: ", st.between_renames);
  CHECK(st.kills == 100);
  CHECK(st.saves > 0);
  CHECK(st.mid_save > 0);  // the experiment did hit saves in progress
}
