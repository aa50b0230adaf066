// EXPECT: the schedule policy S is not a ddpm::Schedule
// A schedule with num_steps() but neither beta(t) nor alpha_bar(t) is rejected at the boundary.
#include <cstddef>

#include "ddpm/backend/reference.hpp"
#include "ddpm/diffusion/loss/l2.hpp"
#include "ddpm/diffusion/process.hpp"
#include "ddpm/diffusion/schedule/linear.hpp"
#include "ddpm/diffusion/target/epsilon.hpp"

struct NoBeta {
  std::size_t num_steps() const { return 10; }
};

int main() {
#ifdef DDPM_SHOULD_FAIL
  ddpm::DiffusionProcess<NoBeta, ddpm::target::Epsilon, ddpm::loss::L2, ddpm::backend::Reference> p(NoBeta{});
#else
  ddpm::DiffusionProcess<ddpm::schedule::Linear, ddpm::target::Epsilon, ddpm::loss::L2,
                         ddpm::backend::Reference>
      p(ddpm::schedule::Linear{});
#endif
  return p.steps() > 0 ? 0 : 1;
}
