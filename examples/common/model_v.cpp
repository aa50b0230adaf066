// examples/common/model_v.cpp — ddpm::Diffusion<S, target::V, L, B> for every schedule and loss
// of the examples (see make_model_impl.hpp): one of the three translation units of the models.
#include <ddpm/backend/cpu.hpp>
#if defined(DDPM_EXAMPLE_HAVE_CUDA)
#include <ddpm/backend/cuda.hpp>
#endif

#include "make_model_impl.hpp"

using examples::ModelOptions;
DDPM_EXAMPLE_MODELS(ddpm::target::V)
