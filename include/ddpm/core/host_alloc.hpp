// SPDX-License-Identifier: MIT
// ddpm/core/host_alloc.hpp — host buffers of tensors and CPU scratch: 64-byte aligned, and
// backed by transparent huge pages where that pays.
//
// A buffer of 2 MiB or more is 2 MiB aligned, rounded up to whole 2 MiB pages and marked
// MADV_HUGEPAGE (Linux), so that it is backed by huge pages where the kernel's THP setting is
// "always" or "madvise". The Winograd convolutions write and read 36 planes per block, each in a
// different 4 KiB page; with huge pages those accesses stop missing the TLB, and first-touch page
// faults drop 512-fold. DDPM_HUGE_PAGES=0 turns this off (64-byte alignment only, as before).
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace ddpm::detail {

/// Buffers of at least this many bytes get huge pages.
inline constexpr std::size_t huge_page_bytes = std::size_t{2} << 20;

/// Whether large buffers are marked for huge pages (DDPM_HUGE_PAGES unset or not "0").
[[nodiscard]] inline bool huge_pages_enabled() noexcept {
  static const bool on = [] {
    const char* v = std::getenv("DDPM_HUGE_PAGES");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return on;
}

/// At least `bytes` bytes (> 0), 64-byte aligned (2 MiB aligned and huge-page backed when large);
/// throws std::bad_alloc. Free with host_free.
[[nodiscard]] inline void* host_alloc(std::size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (bytes >= huge_page_bytes && huge_pages_enabled()) {
    const std::size_t rounded = (bytes + huge_page_bytes - 1) / huge_page_bytes * huge_page_bytes;
    void* p = std::aligned_alloc(huge_page_bytes, rounded);
    if (!p) throw std::bad_alloc();
    (void)madvise(p, rounded, MADV_HUGEPAGE);  // advice only: without THP the pages stay 4 KiB
    return p;
  }
#endif
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!p) throw std::bad_alloc();
  return p;
}

inline void host_free(void* p) noexcept { std::free(p); }

}  // namespace ddpm::detail
