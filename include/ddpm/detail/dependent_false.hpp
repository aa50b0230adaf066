// SPDX-License-Identifier: MIT
// ddpm/detail/dependent_false.hpp — a false that depends on a template parameter.
#pragma once

namespace ddpm::detail {
template <class...>
inline constexpr bool dependent_false = false;
}  // namespace ddpm::detail
