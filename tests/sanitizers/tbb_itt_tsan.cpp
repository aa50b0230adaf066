// SPDX-License-Identifier: MIT
// tests/sanitizers/tbb_itt_tsan.cpp — tells ThreadSanitizer about oneTBB's synchronisation.
//
// Debian's libtbb is not built with -fsanitize=thread, so TSan does not see the atomics with
// which oneTBB hands a task (and the data it captured) from the thread that spawned it to the
// thread that runs it, nor the join at the end of a parallel_for, nor the recycling of task
// memory: every parallel loop then shows up as "data races" (about 1200 reports in
// ddpm_tests_backend, in oneTBB's headers and in every kernel). Three pieces give TSan the
// missing happens-before edges; none of them suppresses a report:
//  1. oneTBB announces its hand-offs to threading tools (Intel Inspector) through the ITT API:
//     libtbb loads the tool library named by INTEL_LIBITTNOTIFY64 and calls
//     __itt_sync_releasing(addr) before it publishes an object and __itt_sync_acquired(addr)
//     after it took it over. This library is such a tool and forwards them to __tsan_release /
//     __tsan_acquire. The header-side calls need -DTBB_USE_PROFILING_TOOLS=2 (the tsan preset).
//  2. Preloaded (LD_PRELOAD), it wraps the small-object pool's allocate/deallocate (release on
//     free, acquire on allocation: a freed task block is reused by another thread).
//  3. ...and notify_waiters (see below).
// tests/sanitizers/tsan_canary.cpp proves that a real race in a parallel_for body is still
// reported with all of this in place (ctest tsan.canary_race), and that a correct loop is clean.
//
// Use (the tsan test preset sets this environment):
//   LD_PRELOAD=<lib> INTEL_LIBITTNOTIFY64=<lib> INTEL_ITTNOTIFY_GROUPS=sync <test program>
#include <dlfcn.h>

#include <cstddef>
#include <cstdint>

extern "C" {

// TSan's annotation interface (compiler-rt tsan_interface.h), looked up at run time so that the
// library can be preloaded into any process (ctest itself, when a test preset sets LD_PRELOAD):
// without the TSan runtime the wrappers below only forward.
using AnnotateFn = void (*)(void*);
static AnnotateFn tsan_function(const char* name) {
  return reinterpret_cast<AnnotateFn>(::dlsym(RTLD_DEFAULT, name));
}
static void tsan_acquire(void* addr) {
  static const AnnotateFn f = tsan_function("__tsan_acquire");
  if (f) f(addr);
}
static void tsan_release(void* addr) {
  static const AnnotateFn f = tsan_function("__tsan_release");
  if (f) f(addr);
}

// ITT API version 1: the collector exports each function under its ITT name.
__attribute__((visibility("default"))) std::uint32_t __itt_api_version = 1;

__attribute__((visibility("default"))) void __itt_sync_releasing(void* addr) { tsan_release(addr); }
__attribute__((visibility("default"))) void __itt_sync_acquired(void* addr) { tsan_acquire(addr); }
__attribute__((visibility("default"))) void __itt_sync_prepare(void*) {}
__attribute__((visibility("default"))) void __itt_sync_cancel(void*) {}
__attribute__((visibility("default"))) void __itt_sync_create(void*, const char*, const char*, int) {}
__attribute__((visibility("default"))) void __itt_sync_rename(void*, const char*) {}
__attribute__((visibility("default"))) void __itt_sync_destroy(void*) {}
// Legacy names (tools of ITT API version 0 are asked for these).
__attribute__((visibility("default"))) void __itt_notify_sync_releasing(void* addr) { tsan_release(addr); }
__attribute__((visibility("default"))) void __itt_notify_sync_acquired(void* addr) { tsan_acquire(addr); }
__attribute__((visibility("default"))) void __itt_notify_sync_prepare(void*) {}
__attribute__((visibility("default"))) void __itt_notify_sync_cancel(void*) {}

// oneTBB recycles task objects through its small-object pool (inside libtbb): a block freed by
// one thread is handed to another, which TSan cannot see either, so it reports the new owner's
// first writes as racing with the old owner's last ones. When this library is also preloaded
// (LD_PRELOAD), these wrappers of the pool's entry points (the calls from oneTBB's headers,
// compiled into the program) mark the hand-off: release on free, acquire on allocation.
using AllocFn = void* (*)(void**, std::size_t);
using AllocEdFn = void* (*)(void**, std::size_t, const void*);
using FreeFn = void (*)(void*, void*, std::size_t);
using FreeEdFn = void (*)(void*, void*, std::size_t, const void*);

#define DDPM_TBB_ALLOC "_ZN3tbb6detail2r18allocateERPNS0_2d117small_object_poolEm"
#define DDPM_TBB_ALLOC_ED "_ZN3tbb6detail2r18allocateERPNS0_2d117small_object_poolEmRKNS2_14execution_dataE"
#define DDPM_TBB_FREE "_ZN3tbb6detail2r110deallocateERNS0_2d117small_object_poolEPvm"
#define DDPM_TBB_FREE_ED "_ZN3tbb6detail2r110deallocateERNS0_2d117small_object_poolEPvmRKNS2_14execution_dataE"
#define DDPM_TBB_NOTIFY_WAITERS "_ZN3tbb6detail2r114notify_waitersEm"

static void* next_symbol(const char* name) { return ::dlsym(RTLD_NEXT, name); }

__attribute__((visibility("default"))) void* ddpm_tbb_allocate(void** pool, std::size_t n) __asm__(DDPM_TBB_ALLOC);
__attribute__((visibility("default"))) void* ddpm_tbb_allocate_ed(void** pool, std::size_t n, const void* ed) __asm__(DDPM_TBB_ALLOC_ED);
__attribute__((visibility("default"))) void ddpm_tbb_deallocate(void* pool, void* p, std::size_t n) __asm__(DDPM_TBB_FREE);
__attribute__((visibility("default"))) void ddpm_tbb_deallocate_ed(void* pool, void* p, std::size_t n, const void* ed) __asm__(DDPM_TBB_FREE_ED);
__attribute__((visibility("default"))) void ddpm_tbb_notify_waiters(std::uintptr_t wait_ctx) __asm__(DDPM_TBB_NOTIFY_WAITERS);

void* ddpm_tbb_allocate(void** pool, std::size_t n) {
  static const AllocFn real = reinterpret_cast<AllocFn>(next_symbol(DDPM_TBB_ALLOC));
  void* p = real(pool, n);
  tsan_acquire(p);
  return p;
}
void* ddpm_tbb_allocate_ed(void** pool, std::size_t n, const void* ed) {
  static const AllocEdFn real = reinterpret_cast<AllocEdFn>(next_symbol(DDPM_TBB_ALLOC_ED));
  void* p = real(pool, n, ed);
  tsan_acquire(p);
  return p;
}
void ddpm_tbb_deallocate(void* pool, void* p, std::size_t n) {
  static const FreeFn real = reinterpret_cast<FreeFn>(next_symbol(DDPM_TBB_FREE));
  tsan_release(p);
  real(pool, p, n);
}
void ddpm_tbb_deallocate_ed(void* pool, void* p, std::size_t n, const void* ed) {
  static const FreeEdFn real = reinterpret_cast<FreeEdFn>(next_symbol(DDPM_TBB_FREE_ED));
  tsan_release(p);
  real(pool, p, n, ed);
}


// wait_context::add_reference (oneTBB header) announces `releasing` *before* its last atomic
// decrement and then calls notify_waiters; the waiting thread's `acquired` therefore misses that
// decrement, and its next wait_context at the same stack address looks like a race with it.
// notify_waiters comes after the decrement: releasing there as well completes the edge.
using NotifyFn = void (*)(std::uintptr_t);
void ddpm_tbb_notify_waiters(std::uintptr_t wait_ctx) {
  static const NotifyFn real = reinterpret_cast<NotifyFn>(next_symbol(DDPM_TBB_NOTIFY_WAITERS));
  tsan_release(reinterpret_cast<void*>(wait_ctx));
  real(wait_ctx);
}

}  // extern "C"
