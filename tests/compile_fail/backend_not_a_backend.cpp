// EXPECT: B is not a ddpm backend
// Something that is not a backend tag in the backend slot.
#include "ddpm/backend/reference.hpp"
#include "ddpm/diffusion/loss/l2.hpp"
#include "ddpm/diffusion/process.hpp"
#include "ddpm/diffusion/schedule/linear.hpp"
#include "ddpm/diffusion/target/epsilon.hpp"

int main() {
#ifdef DDPM_SHOULD_FAIL
  using B = int;
#else
  using B = ddpm::backend::Reference;
#endif
  ddpm::DiffusionProcess<ddpm::schedule::Linear, ddpm::target::Epsilon, ddpm::loss::L2, B> p(
      ddpm::schedule::Linear{});
  return p.steps() > 0 ? 0 : 1;
}
