// SPDX-License-Identifier: MIT
// libFuzzer target for image decoding (stb_image via decode_image) and the resize/crop path
// that load_image_folder applies. See README.md.
#include <cstddef>
#include <cstdint>
#include <span>

#include "ddpm/io/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    auto img = ddpm::io::decode_image(std::as_bytes(std::span(data, size)), "fuzz", 3);
    if (img.h * img.w <= (1u << 16)) {
      img = ddpm::io::center_crop_square(img);
      (void)ddpm::io::resize_area_or_bilinear(img, 16, 16);
    }
  } catch (const ddpm::IoError&) {
  }
  return 0;
}
