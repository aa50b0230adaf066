// EXPECT: Ops<B> has no op 'dummy_op' with the signature of backend/reference.hpp
// An operation added to the op list (DDPM_BACKEND_OPS in ddpm/backend/op_list.hpp) that the CPU
// backend does not implement fails at the one DDPM_CHECK_BACKEND_OPS of ddpm/backend/cpu/ops.hpp,
// and its message names the operation. The list is expanded where it is checked, so the test hook
// DDPM_BACKEND_OPS_TEST_EXTRA, defined after the reference backend (checked without the extra
// entry), reaches the CPU backend's check only.
#include "ddpm/backend/reference.hpp"

#ifdef DDPM_SHOULD_FAIL
#undef DDPM_BACKEND_OPS_TEST_EXTRA
#define DDPM_BACKEND_OPS_TEST_EXTRA(X) X(dummy_op, (class T), void, (View<T> x), dummy_op(be, x))
#endif

#include "ddpm/backend/cpu.hpp"

int main() {
  ddpm::backend::Cpu be(1);
  ddpm::Tensor<float, ddpm::backend::Cpu> x(ddpm::Shape{4});
  ddpm::Ops<ddpm::backend::Cpu>::fill(be, x.view(), 1.0f);
  return x.view()[3] == 1.0f ? 0 : 1;
}
