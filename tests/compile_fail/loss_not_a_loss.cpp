// EXPECT: the loss policy L is not a ddpm::Loss
// A loss without grad(d).
#include <string_view>

#include "ddpm/backend/reference.hpp"
#include "ddpm/diffusion/loss/l1.hpp"
#include "ddpm/diffusion/process.hpp"
#include "ddpm/diffusion/schedule/cosine.hpp"
#include "ddpm/diffusion/target/epsilon.hpp"

struct NoGrad {
  static constexpr std::string_view name() { return "nograd"; }
  float value(float d) const { return d * d; }
};

int main() {
#ifdef DDPM_SHOULD_FAIL
  using L = NoGrad;
#else
  using L = ddpm::loss::L1;
#endif
  ddpm::DiffusionProcess<ddpm::schedule::Cosine, ddpm::target::Epsilon, L, ddpm::backend::Reference>
      p(ddpm::schedule::Cosine{});
  return p.steps() > 0 ? 0 : 1;
}
