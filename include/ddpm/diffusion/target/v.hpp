// SPDX-License-Identifier: MIT
// ddpm/diffusion/target/v.hpp — target::V; defined with the other built-in targets in
// ddpm/core/targets.hpp (below the backends, which run them in their kernels).
#pragma once

#include "ddpm/core/targets.hpp"
