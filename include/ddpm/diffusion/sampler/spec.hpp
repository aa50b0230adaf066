// SPDX-License-Identifier: MIT
// ddpm/diffusion/sampler/spec.hpp — a sampler chosen at run time, and sampler names.
#pragma once

#include <string>
#include <string_view>
#include <variant>

#include "ddpm/core/assert.hpp"
#include "ddpm/diffusion/sampler/ancestral.hpp"
#include "ddpm/diffusion/sampler/ddim.hpp"
#include "ddpm/diffusion/sampler/solvers.hpp"

namespace ddpm {

/// A sampler chosen at run time.
using SamplerSpec = std::variant<sampler::Ancestral, sampler::Ddim, sampler::DpmSolverPP,
                                 sampler::Euler, sampler::Heun, sampler::UniPC>;

namespace sampler {

/// The names make_sampler accepts.
inline constexpr std::string_view names = "ancestral, ddim, dpmpp-2m, dpmpp-2m-sde, euler, heun, unipc";

/// A sampler by name with `steps` steps; `spacing` empty keeps the sampler's default spacing.
/// Throws std::invalid_argument naming the bad name or spacing.
[[nodiscard]] inline SamplerSpec make_sampler(std::string_view name, std::size_t steps,
                                              std::string_view spacing = {}, double eta = 0.0) {
  auto with = [&](auto s) -> SamplerSpec {
    if (!spacing.empty()) s.spacing = parse_spacing(spacing);
    return s;
  };
  if (name != "ddim")
    detail::require(eta == 0.0, "sampler eta", "only ddim takes eta, got ", eta, " for ",
                    std::string(name));
  if (name == "ancestral") return with(Ancestral{.steps = steps});
  if (name == "ddim") return with(Ddim{.steps = steps, .eta = eta});
  if (name == "dpmpp-2m") return with(DpmSolverPP{.steps = steps});
  if (name == "dpmpp-2m-sde") return with(DpmSolverPP{.steps = steps, .sde = true});
  if (name == "euler") return with(Euler{.steps = steps});
  if (name == "heun") return with(Heun{.steps = steps});
  if (name == "unipc") return with(UniPC{.steps = steps});
  detail::require(false, "sampler", "unknown sampler '", std::string(name), "' (choose ",
                  std::string(names), ")");
  return Ancestral{};
}

}  // namespace sampler
}  // namespace ddpm
