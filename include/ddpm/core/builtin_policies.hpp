// SPDX-License-Identifier: MIT
// ddpm/core/builtin_policies.hpp — the built-in targets and losses, and the one list of their
// pairs. A backend that compiles policy kernels ahead of time (CUDA: declared in
// backend/cuda/ops.hpp, emitted by DDPM_CUDA_INSTANTIATE() in backend/cuda/instantiate.cuh) reads
// the list from here, so adding a built-in policy is one edit.
#pragma once

#include "ddpm/core/losses.hpp"
#include "ddpm/core/targets.hpp"

/// X(P) for each built-in prediction target.
#define DDPM_FOR_EACH_BUILTIN_TARGET(X) \
  X(::ddpm::target::Epsilon)            \
  X(::ddpm::target::X0)                 \
  X(::ddpm::target::V)

/// X(P, L) for each built-in (target, loss) pair.
#define DDPM_FOR_EACH_BUILTIN_TARGET_LOSS(X)       \
  X(::ddpm::target::Epsilon, ::ddpm::loss::L1)     \
  X(::ddpm::target::Epsilon, ::ddpm::loss::L2)     \
  X(::ddpm::target::Epsilon, ::ddpm::loss::Huber)  \
  X(::ddpm::target::X0, ::ddpm::loss::L1)          \
  X(::ddpm::target::X0, ::ddpm::loss::L2)          \
  X(::ddpm::target::X0, ::ddpm::loss::Huber)       \
  X(::ddpm::target::V, ::ddpm::loss::L1)           \
  X(::ddpm::target::V, ::ddpm::loss::L2)           \
  X(::ddpm::target::V, ::ddpm::loss::Huber)
