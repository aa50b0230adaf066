// SPDX-License-Identifier: MIT
// tests/core/test_host_alloc.cpp — host buffers: alignment, usable size, huge-page rounding.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>

#include "ddpm/core/host_alloc.hpp"

namespace {
std::uintptr_t addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }
}  // namespace

TEST_CASE("host_alloc: small buffers are 64-byte aligned and writable to their last byte") {
  for (std::size_t bytes : {std::size_t{1}, std::size_t{63}, std::size_t{64}, std::size_t{4097},
                            ddpm::detail::huge_page_bytes - 1}) {
    CAPTURE(bytes);
    void* p = ddpm::detail::host_alloc(bytes);
    REQUIRE(p != nullptr);
    CHECK(addr(p) % 64 == 0);
    std::memset(p, 0xAB, bytes);
    CHECK(static_cast<unsigned char*>(p)[bytes - 1] == 0xAB);
    ddpm::detail::host_free(p);
  }
}

TEST_CASE("host_alloc: buffers of 2 MiB or more are huge-page aligned unless DDPM_HUGE_PAGES=0") {
  const std::size_t bytes = ddpm::detail::huge_page_bytes * 3 + 100;
  void* p = ddpm::detail::host_alloc(bytes);
  REQUIRE(p != nullptr);
  CHECK(addr(p) % 64 == 0);
#if defined(__linux__)
  if (ddpm::detail::huge_pages_enabled())
    CHECK(addr(p) % ddpm::detail::huge_page_bytes == 0);
  else
    MESSAGE("DDPM_HUGE_PAGES=0: large buffers are only 64-byte aligned");
#endif
  std::memset(p, 0x5A, bytes);
  CHECK(static_cast<unsigned char*>(p)[bytes - 1] == 0x5A);
  ddpm::detail::host_free(p);
  ddpm::detail::host_free(nullptr);  // like free(nullptr): nothing
}
