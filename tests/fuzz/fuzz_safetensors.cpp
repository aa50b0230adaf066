// SPDX-License-Identifier: MIT
// libFuzzer target for the safetensors reader: parse, then touch every tensor. See README.md.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "ddpm/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    std::vector<std::byte> bytes(size);
    for (std::size_t i = 0; i < size; ++i) bytes[i] = std::byte(data[i]);
    const auto f = ddpm::io::SafeTensorsFile::parse(std::move(bytes), "fuzz");
    volatile unsigned sink = 0;
    for (const auto& name : f.names()) {
      const auto b = f.bytes(name);
      for (const std::byte x : b) sink = sink + unsigned(x);
      if (f.info(name).dtype == "F32") (void)f.f32(name);
    }
    for (const auto& [k, v] : f.metadata()) sink = sink + unsigned(k.size() + v.size());
  } catch (const ddpm::IoError&) {
  }
  return 0;
}
