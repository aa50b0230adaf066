// SPDX-License-Identifier: MIT
// ddpm/diffusion/loss/huber.hpp — loss::Huber; defined with the other built-in losses in
// ddpm/core/losses.hpp (below the backends, which run them in their kernels).
#pragma once

#include "ddpm/core/losses.hpp"
