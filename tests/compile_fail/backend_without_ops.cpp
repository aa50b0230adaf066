// EXPECT: no Ops<B> for this backend
// A backend tag that satisfies the Backend concept but has no Ops<B> specialisation fails where
// an operation is first used, with a message that says what to include.
#include <string_view>

#include "ddpm/backend/reference.hpp"
#include "ddpm/diffusion/loss/l2.hpp"
#include "ddpm/diffusion/process.hpp"
#include "ddpm/diffusion/schedule/linear.hpp"
#include "ddpm/diffusion/target/epsilon.hpp"

struct MyBackend {
  using memory_space = ddpm::backend::host_memory;
  static constexpr std::string_view name = "mine";
};

int main() {
#ifdef DDPM_SHOULD_FAIL
  using B = MyBackend;
#else
  using B = ddpm::backend::Reference;
#endif
  ddpm::DiffusionProcess<ddpm::schedule::Linear, ddpm::target::Epsilon, ddpm::loss::L2, B> p(
      ddpm::schedule::Linear{.steps = 10});
  ddpm::Tensor<float, B> x(ddpm::Shape{1, 1, 1, 1}), e(ddpm::Shape{1, 1, 1, 1}), y(ddpm::Shape{1, 1, 1, 1});
  const std::int32_t t[1] = {0};
  p.q_sample(x.cview(), e.cview(), t, y.view());
  return 0;
}
