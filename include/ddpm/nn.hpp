// SPDX-License-Identifier: MIT
// ddpm/nn.hpp — umbrella for the layers and the U-Net (no backend included: add
// <ddpm/backend/reference.hpp>, <ddpm/backend/cpu.hpp> or <ddpm/backend/cuda.hpp>).
#pragma once

// IWYU pragma: begin_exports
#include "ddpm/layers/attention.hpp"
#include "ddpm/layers/conv2d.hpp"
#include "ddpm/layers/downsample.hpp"
#include "ddpm/layers/dropout.hpp"
#include "ddpm/layers/embedding.hpp"
#include "ddpm/layers/group_norm.hpp"
#include "ddpm/layers/init.hpp"
#include "ddpm/layers/linear.hpp"
#include "ddpm/layers/parameter.hpp"
#include "ddpm/layers/silu.hpp"
#include "ddpm/layers/upsample.hpp"
#include "ddpm/nn/unet/attn_block.hpp"
#include "ddpm/nn/unet/config.hpp"
#include "ddpm/nn/unet/res_block.hpp"
#include "ddpm/nn/unet/unet.hpp"
#include "ddpm/nn/unet/workspace.hpp"
// IWYU pragma: end_exports
