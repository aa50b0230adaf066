// SPDX-License-Identifier: MIT
// ddpm/backend/cpu.hpp — the SIMD CPU backend, opted into explicitly:
//   #include <ddpm/backend/cpu.hpp>
//   ddpm::backend::Cpu be(2);  // two worker threads; Cpu() uses all cores
// Brings the tag (backend::Cpu, with its thread arena and scratch) and Ops<backend::Cpu>.
#pragma once

#include "ddpm/backend/cpu/ops.hpp"
#include "ddpm/backend/cpu/tag.hpp"
