// Tests for ddpm/nn/unet/config.hpp.
#include <doctest/doctest.h>

#include <string>

#include "ddpm/nn/unet/config.hpp"

using ddpm::nn::UNetConfig;

TEST_CASE("UNetConfig: the three reference configurations validate; describe() is stable") {
  CHECK_NOTHROW(UNetConfig::mnist().validate());
  CHECK_NOTHROW(UNetConfig::manga32().validate());
  CHECK_NOTHROW(UNetConfig::anime64().validate());
  CHECK(UNetConfig::mnist().describe() ==
        "UNetConfig{in_channels=1, image_size=28, base_channels=32, channel_mults=[1,2,2], "
        "num_res_blocks=2, attention_resolutions=[7], num_classes=10, groups=32, dropout=0.1, "
        "out_channels=0}");
  CHECK(UNetConfig::anime64().describe() ==
        "UNetConfig{in_channels=3, image_size=64, base_channels=64, channel_mults=[1,2,2,4], "
        "num_res_blocks=2, attention_resolutions=[16], num_classes=0, groups=32, dropout=0.1, "
        "out_channels=0}");
  CHECK(UNetConfig::mnist() == UNetConfig::mnist());
  CHECK_FALSE(UNetConfig::mnist() == UNetConfig::manga32());
  CHECK(UNetConfig::mnist().emb_dim() == 128);
  CHECK(UNetConfig::mnist().output_channels() == 1);
}

TEST_CASE("UNetConfig::validate names the field") {
  auto expect = [](UNetConfig c, const char* text) {
    CAPTURE(text);
    CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains(text), std::invalid_argument);
  };
  UNetConfig c;
  c.image_size = 30;
  CHECK_THROWS_WITH_AS(c.validate(),
                       "ddpm: UNetConfig.image_size: 30 must be divisible by 2^(levels-1) = 4",
                       std::invalid_argument);
  c = {};
  c.groups = 24;
  expect(c, "UNetConfig.groups: 24 must divide");
  c = {};
  c.base_channels = 48;
  expect(c, "UNetConfig.groups: 32 must divide base_channels = 48");
  c = {};
  c.channel_mults = {};
  expect(c, "UNetConfig.channel_mults");
  c = {};
  c.channel_mults = {1, 0};
  expect(c, "UNetConfig.channel_mults");
  c = {};
  c.in_channels = 0;
  expect(c, "UNetConfig.in_channels");
  c = {};
  c.base_channels = 1;
  c.groups = 1;
  expect(c, "UNetConfig.base_channels");
  c = {};
  c.dropout = 1.0;
  expect(c, "UNetConfig.dropout");
  c = {};
  c.attention_resolutions = {8};
  expect(c, "UNetConfig.attention_resolutions: 8 is not the size of any level");
  c = {};
  c.attention_resolutions = {};
  CHECK_NOTHROW(c.validate());
  c = {};
  c.num_heads = 0;
  expect(c, "UNetConfig.num_heads: must be positive");
  c = {};
  c.num_heads = 3;  // levels of 32, 64, 64 channels: attention at 7 (64) and in the middle (64)
  expect(c, "UNetConfig.num_heads: 3 must divide the channels of every attention block; level 2 has 64");
  c = {};
  c.num_heads = 64;  // 64 divides the attention levels' 64 channels; level 0 (32) has no attention
  CHECK_NOTHROW(c.validate());
}

TEST_CASE("UNetConfig: num_heads is named in describe() only when it is not 1") {
  // Checkpoints written before num_heads existed carry the describe() text without it; a
  // single-head configuration must keep describing itself that way so that they still load.
  UNetConfig c = UNetConfig::mnist();
  CHECK(c.describe().find("num_heads") == std::string::npos);
  c.num_heads = 4;
  CHECK(c.describe() ==
        "UNetConfig{in_channels=1, image_size=28, base_channels=32, channel_mults=[1,2,2], "
        "num_res_blocks=2, attention_resolutions=[7], num_classes=10, groups=32, dropout=0.1, "
        "out_channels=0, num_heads=4}");
  CHECK_FALSE(c == UNetConfig::mnist());
}
