// examples/common/model_x0.cpp — ddpm::Diffusion<S, target::X0, L, B> for every schedule and loss
// of the examples (see make_model_impl.hpp): one of the three translation units of the models.
#include <ddpm/backend/cpu.hpp>
#if defined(DDPM_EXAMPLE_HAVE_CUDA)
#include <ddpm/backend/cuda.hpp>
#endif

#include "make_model_impl.hpp"

using examples::ModelOptions;
DDPM_EXAMPLE_MODELS(ddpm::target::X0)
