// SPDX-License-Identifier: MIT
// ddpm/diffusion/loss/l2.hpp — loss::L2; defined with the other built-in losses in
// ddpm/core/losses.hpp (below the backends, which run them in their kernels).
#pragma once

#include "ddpm/core/losses.hpp"
