// SPDX-License-Identifier: MIT
// ddpm/ddpm.hpp — the host-only umbrella: core, tensors, policies, the diffusion process.
// Backends are opted into explicitly: #include <ddpm/backend/cpu.hpp> (or reference.hpp, cuda.hpp).
#pragma once

// IWYU pragma: begin_exports
#include "ddpm/config.hpp"
#include "ddpm/core/assert.hpp"
#include "ddpm/core/concepts.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/shape.hpp"
#include "ddpm/tensor/tensor.hpp"
#include "ddpm/backend/ops.hpp"
#include "ddpm/backend/params.hpp"
#include "ddpm/backend/tags.hpp"
#include "ddpm/diffusion/schedule/table.hpp"
#include "ddpm/diffusion/schedule/linear.hpp"
#include "ddpm/diffusion/schedule/cosine.hpp"
#include "ddpm/diffusion/schedule/sigmoid.hpp"
#include "ddpm/diffusion/target/epsilon.hpp"
#include "ddpm/diffusion/target/x0.hpp"
#include "ddpm/diffusion/target/v.hpp"
#include "ddpm/diffusion/loss/l1.hpp"
#include "ddpm/diffusion/loss/l2.hpp"
#include "ddpm/diffusion/loss/huber.hpp"
#include "ddpm/diffusion/process.hpp"
// IWYU pragma: end_exports
