// examples/common/model_x0_cuda.cpp — ddpm::Diffusion<S, target::X0, L, backend::Cuda> for every
// schedule and loss of the examples (CUDA builds only; the kernels come from cuda_instantiate.cu).
#include <ddpm/backend/cuda.hpp>

#include "make_model_impl.hpp"

using examples::ModelOptions;
DDPM_EXAMPLE_MODELS(ddpm::backend::Cuda, ddpm::target::X0)
