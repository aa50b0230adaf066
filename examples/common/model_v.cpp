// examples/common/model_v.cpp — ddpm::Diffusion<S, target::V, L, backend::Cpu> for every schedule
// and loss of the examples (see make_model_impl.hpp): one of the translation units of the models.
#include <ddpm/backend/cpu.hpp>

#include "make_model_impl.hpp"

using examples::ModelOptions;
DDPM_EXAMPLE_MODELS(ddpm::backend::Cpu, ddpm::target::V)
