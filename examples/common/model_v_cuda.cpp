// examples/common/model_v_cuda.cpp — ddpm::Diffusion<S, target::V, L, backend::Cuda> for every
// schedule and loss of the examples (CUDA builds only; the kernels come from cuda_instantiate.cu).
#include <ddpm/backend/cuda.hpp>

#include "make_model_impl.hpp"

using examples::ModelOptions;
DDPM_EXAMPLE_MODELS(ddpm::backend::Cuda, ddpm::target::V)
