// SPDX-License-Identifier: MIT
// libFuzzer target for image decoding (stb_image via decode_image) and the resize/crop path
// that load_image_folder applies. See README.md.
#include <cstddef>
#include <cstdint>
#include <span>

#include "ddpm/io/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // A few bytes can declare a huge image (an RLE TGA of 7200 x 11288 in 60 bytes) that stb_image
  // then fills pixel by pixel: bounded by max_image_pixels, but seconds per input under the
  // sanitizers. Such inputs exercise no other code, so the fuzzer skips them to keep its speed.
  // (stbi_info_from_memory only after the guards of decode_image: it parses headers too.)
  const auto bytes = std::as_bytes(std::span(data, size));
  int w = 0, h = 0, comp = 0;
  if (size <= (std::size_t{1} << 30) && ddpm::io::detail::stb_hazard(bytes).reason == nullptr &&
      stbi_info_from_memory(data, static_cast<int>(size), &w, &h, &comp) &&
      static_cast<long long>(w) * h > (1ll << 16))
    return 0;
  try {
    auto img = ddpm::io::decode_image(bytes, "fuzz", 3);
    if (img.h * img.w <= (1u << 16)) {
      img = ddpm::io::center_crop_square(img);
      (void)ddpm::io::resize_area_or_bilinear(img, 16, 16);
    }
  } catch (const ddpm::IoError&) {
  }
  return 0;
}
