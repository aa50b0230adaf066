// SPDX-License-Identifier: MIT
// The long variant of test_checkpoint_kill.cpp: 1000 kills with a wider range of delays.
#include <doctest/doctest.h>

#include <filesystem>

#include "io/io_test_util.hpp"
#include "train/checkpoint_kill.hpp"

TEST_CASE("checkpoint: 1000 SIGKILLs of a save loop, the newest complete checkpoint always loads") {
  ddpm::io::test::TempDir dir;
  const auto st = ddpm::test::run_kill_experiment(dir.path(), 1000, 7u, 5.0);
  MESSAGE("kills: ", st.kills, ", saves: ", st.saves, " (", st.save_ms, " ms each), killed inside a save: ", st.mid_save,
          ", after the rename: ", st.after_rename, ", between the renames: ", st.between_renames);
  CHECK(st.kills == 1000);
  CHECK(st.mid_save > 0);
  CHECK(st.after_rename > 0);
}
