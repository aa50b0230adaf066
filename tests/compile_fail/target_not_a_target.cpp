// EXPECT: the target policy P is not a ddpm::Target
// A type that is not a prediction target (here: a loss) in the target slot.
#include "ddpm/backend/reference.hpp"
#include "ddpm/diffusion/loss/l2.hpp"
#include "ddpm/diffusion/process.hpp"
#include "ddpm/diffusion/schedule/linear.hpp"
#include "ddpm/diffusion/target/x0.hpp"

int main() {
#ifdef DDPM_SHOULD_FAIL
  using P = ddpm::loss::L2;
#else
  using P = ddpm::target::X0;
#endif
  ddpm::DiffusionProcess<ddpm::schedule::Linear, P, ddpm::loss::L2, ddpm::backend::Reference> p(
      ddpm::schedule::Linear{});
  return p.steps() > 0 ? 0 : 1;
}
