// SPDX-License-Identifier: MIT
// ddpm/backend/ops.hpp — the primary template Ops<B>. Each backend specialises it in its own
// header with the same static member functions; see backend/reference.hpp for the full list and
// the contract of each operation.
#pragma once

#include "ddpm/backend/tags.hpp"
#include "ddpm/detail/dependent_false.hpp"

namespace ddpm {

template <class B>
struct Ops {
  static_assert(detail::dependent_false<B>,
                "ddpm: no Ops<B> for this backend; include <ddpm/backend/cpu.hpp>, "
                "<ddpm/backend/reference.hpp>, or <ddpm/backend/cuda.hpp> (and link a .cu that "
                "includes <ddpm/backend/cuda.cuh>)");
};

}  // namespace ddpm
