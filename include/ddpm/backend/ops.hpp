// SPDX-License-Identifier: MIT
// ddpm/backend/ops.hpp — the primary template Ops<B>. Each backend specialises it in its own
// header with the same static member functions: the list of them, with their signatures, is
// DDPM_BACKEND_OPS in backend/op_list.hpp (checked per backend by DDPM_CHECK_BACKEND_OPS); the
// contract of each operation is documented in backend/reference.hpp.
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
