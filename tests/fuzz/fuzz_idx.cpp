// SPDX-License-Identifier: MIT
// libFuzzer target for the IDX reader (raw and gzip). Build: see tests/fuzz/README.md.
#include <cstddef>
#include <cstdint>
#include <span>

#include "ddpm/io/idx.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto a = ddpm::io::parse_idx(std::as_bytes(std::span(data, size)), "fuzz");
    std::size_t n = 1;
    for (const std::size_t d : a.dims) n *= d;
    if (n != a.data.size()) __builtin_trap();  // the postcondition
  } catch (const ddpm::IoError&) {
  }
  return 0;
}
