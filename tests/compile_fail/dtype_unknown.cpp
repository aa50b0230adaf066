// EXPECT: the collectives move float, double or std::uint64_t
// A collective's element type the transports do not know (here: int) is refused at compile time
// (it used to be sent as 8-byte integers without a word).
#include "ddpm/train/communicator.hpp"

int main() {
#ifdef DDPM_SHOULD_FAIL
  using T = int;
#else
  using T = float;
#endif
  return ddpm::dist::dtype_of<T> == ddpm::dist::DType::f32 ? 0 : 1;
}
