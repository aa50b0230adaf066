// SPDX-License-Identifier: MIT
// ddpm/eval/all.hpp — everything of ddpm::eval (the sample-quality classifier, its training,
// the metrics and the scoring of image sets). Needs ddpm::io (link the ddpm::io CMake target).
#pragma once

#include "ddpm/eval/classifier.hpp"     // IWYU pragma: export
#include "ddpm/eval/classifier_io.hpp"  // IWYU pragma: export
#include "ddpm/eval/inputs.hpp"         // IWYU pragma: export
#include "ddpm/eval/metrics.hpp"        // IWYU pragma: export
#include "ddpm/eval/rgb_score.hpp"      // IWYU pragma: export
#include "ddpm/eval/score.hpp"          // IWYU pragma: export
#include "ddpm/eval/sha256.hpp"         // IWYU pragma: export
#include "ddpm/eval/train.hpp"          // IWYU pragma: export
