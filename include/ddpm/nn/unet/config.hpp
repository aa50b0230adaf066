// SPDX-License-Identifier: MIT
// ddpm/nn/unet/config.hpp — runtime sizes of the U-Net (UNetConfig) and per-call settings (Pass).
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "ddpm/core/assert.hpp"
#include "ddpm/core/rng.hpp"

namespace ddpm::detail {
inline std::string unet_list(const std::vector<std::size_t>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(v[i]);
  }
  return s + "]";
}
/// Shortest decimal text that reads back as the same double ("0.1", not "0.10000000000000001").
inline std::string unet_double(double x) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, x);
  return std::string(buf, r.ptr);
}
}  // namespace ddpm::detail

namespace ddpm::nn {

/// Sizes of the DDPM U-Net of ../shared/ref/unet.py (Ho et al. 2020 layout). Types choose
/// behaviour, this struct chooses sizes: every configuration shares one UNet<T, B> instantiation.
struct UNetConfig {
  std::size_t in_channels = 1;
  std::size_t image_size = 28;
  std::size_t base_channels = 32;
  std::vector<std::size_t> channel_mults{1, 2, 2};
  std::size_t num_res_blocks = 2;
  std::vector<std::size_t> attention_resolutions{7};
  /// 0 = unconditional; else labels in [0, num_classes], label num_classes = the null class
  /// (classifier-free guidance).
  std::size_t num_classes = 0;
  std::size_t groups = 32;
  double dropout = 0.1;
  std::size_t out_channels = 0;  ///< 0 = in_channels
  /// Heads of every attention block (AttnBlock); must divide the channels of each level that
  /// has attention and of the middle. 1 = the reference's single-head attention.
  std::size_t num_heads = 1;

  /// Number of resolution levels (channel_mults.size()).
  [[nodiscard]] std::size_t levels() const noexcept { return channel_mults.size(); }
  /// Width of the time embedding: 4 * base_channels.
  [[nodiscard]] std::size_t emb_dim() const noexcept { return 4 * base_channels; }
  /// out_channels, or in_channels when out_channels is 0.
  [[nodiscard]] std::size_t output_channels() const noexcept {
    return out_channels ? out_channels : in_channels;
  }
  /// Channels of level i: base_channels * channel_mults[i].
  [[nodiscard]] std::size_t level_channels(std::size_t i) const { return base_channels * channel_mults.at(i); }
  /// Whether a block at spatial size `res` gets an attention block.
  [[nodiscard]] bool has_attention(std::size_t res) const noexcept {
    for (std::size_t r : attention_resolutions)
      if (r == res) return true;
    return false;
  }

  /// Throws std::invalid_argument "ddpm: UNetConfig.<field>: <problem>" for the first bad field.
  inline void validate() const;
  /// One line naming every field, stable across versions (stored in checkpoint metadata), e.g.
  /// "UNetConfig{in_channels=1, image_size=28, ..., dropout=0.1, out_channels=0}". Fields added
  /// later (num_heads) appear only when they differ from their default, so a configuration that
  /// existed before them describes itself as it did (and its checkpoints still load).
  [[nodiscard]] inline std::string describe() const;

  /// The three configurations of ../shared/ref/bench.py (CONFIGS).
  [[nodiscard]] static UNetConfig mnist() {
    UNetConfig c;
    c.num_classes = 10;
    return c;
  }
  [[nodiscard]] static UNetConfig manga32() {
    UNetConfig c;
    c.in_channels = 3;
    c.image_size = 32;
    c.base_channels = 64;
    c.channel_mults = {1, 2, 2, 2};
    c.attention_resolutions = {8};
    return c;
  }
  [[nodiscard]] static UNetConfig anime64() {
    UNetConfig c;
    c.in_channels = 3;
    c.image_size = 64;
    c.base_channels = 64;
    c.channel_mults = {1, 2, 2, 4};
    c.attention_resolutions = {16};
    return c;
  }

  friend bool operator==(const UNetConfig&, const UNetConfig&) = default;
};

/// Settings of one forward pass. Dropout is applied only when `train` and dropout > 0; the mask
/// of ResBlock number b (0-based, in parameter order) is drawn from Philox stream
/// rng_stream::make(rng_stream::dropout, step * 1024 + b) of `rng`, and regenerated in backward.
struct Pass {
  bool train = false;
  Rng rng{};
  std::uint64_t step = 0;
};


inline void UNetConfig::validate() const {
  using ddpm::detail::require;
  require(in_channels > 0, "UNetConfig.in_channels", "must be positive");
  require(image_size > 0, "UNetConfig.image_size", "must be positive");
  require(base_channels >= 2, "UNetConfig.base_channels", base_channels,
          " must be at least 2 (the sinusoidal time embedding has base_channels entries)");
  require(!channel_mults.empty(), "UNetConfig.channel_mults", "must have at least one level");
  require(channel_mults.size() <= 16, "UNetConfig.channel_mults", channel_mults.size(),
          " levels is more than 16");
  for (std::size_t i = 0; i < channel_mults.size(); ++i)
    require(channel_mults[i] > 0, "UNetConfig.channel_mults", "entry ", i, " must be positive");
  const std::size_t div = std::size_t{1} << (levels() - 1);
  require(image_size % div == 0, "UNetConfig.image_size", image_size,
          " must be divisible by 2^(levels-1) = ", div);
  require(groups > 0, "UNetConfig.groups", "must be positive");
  require(base_channels % groups == 0, "UNetConfig.groups", groups,
          " must divide base_channels = ", base_channels);
  for (std::size_t i = 0; i < channel_mults.size(); ++i)
    require(level_channels(i) % groups == 0, "UNetConfig.groups", groups,
            " must divide the channels of level ", i, " = ", level_channels(i));
  for (std::size_t r : attention_resolutions) {
    bool found = false;
    for (std::size_t i = 0; i < levels(); ++i) found = found || (image_size >> i) == r;
    require(found, "UNetConfig.attention_resolutions", r,
            " is not the size of any level (image_size / 2^i for i < levels)");
  }
  require(num_classes < (std::size_t{1} << 30), "UNetConfig.num_classes", num_classes, " is too large");
  require(dropout >= 0.0 && dropout < 1.0, "UNetConfig.dropout", dropout, " must be in [0, 1)");
  require(num_heads > 0, "UNetConfig.num_heads", "must be positive");
  for (std::size_t i = 0; i < levels(); ++i) {
    const bool attn = has_attention(image_size >> i) || i + 1 == levels();  // the middle: last level
    require(!attn || level_channels(i) % num_heads == 0, "UNetConfig.num_heads", num_heads,
            " must divide the channels of every attention block; level ", i, " has ",
            level_channels(i));
  }
}

inline std::string UNetConfig::describe() const {
  return "UNetConfig{in_channels=" + std::to_string(in_channels) +
         ", image_size=" + std::to_string(image_size) +
         ", base_channels=" + std::to_string(base_channels) +
         ", channel_mults=" + ddpm::detail::unet_list(channel_mults) +
         ", num_res_blocks=" + std::to_string(num_res_blocks) +
         ", attention_resolutions=" + ddpm::detail::unet_list(attention_resolutions) +
         ", num_classes=" + std::to_string(num_classes) + ", groups=" + std::to_string(groups) +
         ", dropout=" + ddpm::detail::unet_double(dropout) +
         ", out_channels=" + std::to_string(out_channels) +
         (num_heads != 1 ? ", num_heads=" + std::to_string(num_heads) : std::string()) + "}";
}

}  // namespace ddpm::nn
