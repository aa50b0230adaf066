// SPDX-License-Identifier: MIT
// ddpm/backend/reference_fallback.hpp — "this element type is not my fast one: let the reference
// backend do it", written once for every operation of the list in ddpm/backend/op_list.hpp.
//
// A host-memory backend whose operations are written for one element type (the CPU backend:
// float) puts DDPM_REFERENCE_FALLBACK_OPS(float) into its Ops<Tag> and writes each operation for
// that type only:
//
//   template <>
//   struct Ops<backend::Cpu> {
//     using B = backend::Cpu;
//     DDPM_REFERENCE_FALLBACK_OPS(float)   // T != float: Ops<backend::Reference>
//     template <std::same_as<float> T>
//     static void fill(const B& be, View<T> x, T v) { ...the float path only... }
//     ...
//   };
//
// The two overloads of an operation have disjoint constraints, so a call picks the same function
// the former `if constexpr (!std::is_same_v<T, float>) { reference } else { fast }` picked.
#pragma once

#include <concepts>

#include "ddpm/backend/op_list.hpp"
#include "ddpm/backend/reference.hpp"

namespace ddpm::detail {
/// backend::Reference, spelled so that it depends on T: a forwarder's call is then looked up when
/// the forwarder is used, not when it is generated (so an entry the reference lacks is reported by
/// DDPM_CHECK_BACKEND_OPS, which names it, and not by the forwarder).
template <class T>
struct reference_backend_for {
  using type = backend::Reference;
};
}  // namespace ddpm::detail

/// One forwarder: for T other than the backend's fast type, Ops<backend::Reference>::call.
#define DDPM_DETAIL_REFERENCE_FALLBACK_OP(name, template_params, result, params, ...)             \
  template <DDPM_DETAIL_OPS_UNPAREN template_params>                                              \
    requires(!std::same_as<T, ddpm_reference_fallback_fast>)                                      \
  static result name(const B&, DDPM_DETAIL_OPS_UNPAREN params) {                                  \
    using Ref = typename ::ddpm::detail::reference_backend_for<T>::type;                          \
    constexpr Ref be{};                                                                           \
    return ::ddpm::Ops<Ref>::__VA_ARGS__;                                                         \
  }

/// Inside an Ops<Tag> specialisation that defines `using B = Tag;` (a host-memory backend): for
/// every operation of DDPM_BACKEND_OPS, an overload for the element types T other than `Fast`
/// that forwards to Ops<backend::Reference>. The backend's own operations are then written for
/// `template <std::same_as<Fast> T>` only. Leaves the class in `public:` access.
#define DDPM_REFERENCE_FALLBACK_OPS(Fast)                                                         \
 private:                                                                                         \
  using ddpm_reference_fallback_fast = Fast;                                                      \
                                                                                                  \
 public:                                                                                          \
  DDPM_BACKEND_OPS(DDPM_DETAIL_REFERENCE_FALLBACK_OP)
