// Forward FLOPs of the U-Net per image, counted as ../shared/ref/unet.py count_forward_flops does:
// 2 x MACs of every Conv2d, Linear and the two attention matmuls (QK^T and AV); embeddings, norms,
// activations and softmax are not counted.
#pragma once

#include <cstddef>

#include "ddpm/nn/unet/config.hpp"

namespace ddpm::bench {

inline double unet_forward_flops(const nn::UNetConfig& c) {
  double f = 0;
  auto conv = [&](std::size_t cin, std::size_t cout, std::size_t k, std::size_t out_res) {
    f += 2.0 * double(out_res * out_res * cout) * double(cin * k * k);
  };
  auto linear = [&](std::size_t in, std::size_t out) { f += 2.0 * double(in * out); };
  const std::size_t E = c.emb_dim(), base = c.base_channels;
  auto res_block = [&](std::size_t cin, std::size_t cout, std::size_t r) {
    conv(cin, cout, 3, r);
    linear(E, cout);
    conv(cout, cout, 3, r);
    if (cin != cout) conv(cin, cout, 1, r);
  };
  auto attn = [&](std::size_t ch, std::size_t r) {
    conv(ch, 3 * ch, 1, r);
    conv(ch, ch, 1, r);
    const double n = double(r * r);
    f += 2.0 * 2.0 * n * n * double(ch);
  };
  linear(base, E);
  linear(E, E);
  std::size_t res = c.image_size, ch = base;
  conv(c.in_channels, base, 3, res);
  std::vector<std::size_t> skips{base};
  const std::size_t L = c.channel_mults.size();
  for (std::size_t i = 0; i < L; ++i) {
    for (std::size_t b = 0; b < c.num_res_blocks; ++b) {
      res_block(ch, base * c.channel_mults[i], res);
      ch = base * c.channel_mults[i];
      if (c.has_attention(res)) attn(ch, res);
      skips.push_back(ch);
    }
    if (i + 1 != L) {
      conv(ch, ch, 3, res / 2);
      skips.push_back(ch);
      res /= 2;
    }
  }
  res_block(ch, ch, res);
  attn(ch, res);
  res_block(ch, ch, res);
  for (std::size_t i = L; i-- > 0;) {
    for (std::size_t b = 0; b <= c.num_res_blocks; ++b) {
      const std::size_t sk = skips.back();
      skips.pop_back();
      res_block(ch + sk, base * c.channel_mults[i], res);
      ch = base * c.channel_mults[i];
      if (c.has_attention(res)) attn(ch, res);
    }
    if (i != 0) {
      res *= 2;
      conv(ch, ch, 3, res);
    }
  }
  conv(ch, c.output_channels(), 3, res);
  return f;
}

}  // namespace ddpm::bench
