# Compile-fail tests, the header self-containment check and the CMake consumer tests.

# ---- compile-fail: tests/compile_fail/<name>.cpp must fail to build with DDPM_SHOULD_FAIL and the
# diagnostic must match `regex`; it must build without DDPM_SHOULD_FAIL (so the test cannot pass by
# accident, e.g. through a typo in an include).
function(ddpm_add_compile_fail_test name regex)
  set(src ${PROJECT_SOURCE_DIR}/tests/compile_fail/${name}.cpp)
  add_executable(cf_${name}_ok EXCLUDE_FROM_ALL ${src})
  target_link_libraries(cf_${name}_ok PRIVATE ddpm::ddpm)
  add_executable(cf_${name} EXCLUDE_FROM_ALL ${src})
  target_link_libraries(cf_${name} PRIVATE ddpm::ddpm)
  target_compile_definitions(cf_${name} PRIVATE DDPM_SHOULD_FAIL)
  add_test(NAME compile_fail.${name}.builds_without_error
           COMMAND ${CMAKE_COMMAND} --build ${CMAKE_BINARY_DIR} --target cf_${name}_ok)
  add_test(NAME compile_fail.${name}
           COMMAND ${CMAKE_COMMAND} --build ${CMAKE_BINARY_DIR} --target cf_${name})
  set_tests_properties(compile_fail.${name} PROPERTIES PASS_REGULAR_EXPRESSION "${regex}"
                       LABELS compile_fail RUN_SERIAL ON)
  set_tests_properties(compile_fail.${name}.builds_without_error PROPERTIES LABELS compile_fail RUN_SERIAL ON)
endfunction()

file(GLOB cf_sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/compile_fail/*.cpp)
foreach(src IN LISTS cf_sources)
  get_filename_component(stem ${src} NAME_WE)
  # The expected diagnostic is the first line "// EXPECT: <regex>" of the file.
  file(STRINGS ${src} expect REGEX "^// EXPECT: " LIMIT_COUNT 1)
  string(REGEX REPLACE "^// EXPECT: " "" expect "${expect}")
  ddpm_add_compile_fail_test(${stem} "${expect}")
endforeach()

# ---- header self-containment: every public .hpp compiles alone, twice in a row.
file(GLOB_RECURSE ddpm_public_headers CONFIGURE_DEPENDS
     RELATIVE ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/include/ddpm/*.hpp)
# Headers of components whose dependencies were not found are left out (ddpm/interop/xtensor.hpp
# without xtensor, ddpm/interop/eigen.hpp and ddpm/eval/ without Eigen).
if(NOT TARGET ddpm::xtensor)
  list(REMOVE_ITEM ddpm_public_headers ddpm/interop/xtensor.hpp)
endif()
if(NOT TARGET ddpm::eigen)
  list(REMOVE_ITEM ddpm_public_headers ddpm/interop/eigen.hpp)
endif()
if(NOT TARGET ddpm::eval)
  list(FILTER ddpm_public_headers EXCLUDE REGEX "^ddpm/eval/")
endif()
set(ddpm_header_tus "")
foreach(h IN LISTS ddpm_public_headers)
  string(REPLACE "/" "__" stem "${h}")
  string(REPLACE ".hpp" "" stem "${stem}")
  set(tu ${CMAKE_BINARY_DIR}/header_check/${stem}.cpp)
  file(CONFIGURE OUTPUT ${tu} CONTENT "#include <${h}>\n#include <${h}>\n")
  list(APPEND ddpm_header_tus ${tu})
endforeach()
add_library(ddpm_header_check OBJECT EXCLUDE_FROM_ALL ${ddpm_header_tus})
target_link_libraries(ddpm_header_check PRIVATE ddpm::ddpm ddpm_dev_flags)
target_compile_options(ddpm_header_check PRIVATE -fsyntax-only)
foreach(part io eigen xtensor eval)
  if(TARGET ddpm::${part})
    target_link_libraries(ddpm_header_check PRIVATE ddpm::${part})
  endif()
endforeach()
add_test(NAME header_check COMMAND ${CMAKE_COMMAND} --build ${CMAKE_BINARY_DIR} --target ddpm_header_check)
set_tests_properties(header_check PROPERTIES LABELS build RUN_SERIAL ON)

# ---- consumers: an outside project through find_package (installed tree) and add_subdirectory.
set(consumer_dir ${CMAKE_BINARY_DIR}/consumers)
add_test(NAME consumer.install
         COMMAND ${CMAKE_COMMAND} --install ${CMAKE_BINARY_DIR} --prefix ${consumer_dir}/prefix)
set_tests_properties(consumer.install PROPERTIES FIXTURES_SETUP ddpm_installed LABELS consumer)
add_test(NAME consumer.find_package
         COMMAND ${CMAKE_COMMAND} -DSRC=${PROJECT_SOURCE_DIR}/tests/cmake_consumer/find_package
                 -DBIN=${consumer_dir}/find_package -DPREFIX=${consumer_dir}/prefix
                 -DGENERATOR=${CMAKE_GENERATOR}
                 -P ${PROJECT_SOURCE_DIR}/tests/cmake_consumer/run_consumer.cmake)
set_tests_properties(consumer.find_package PROPERTIES FIXTURES_REQUIRED ddpm_installed
                     LABELS consumer RUN_SERIAL ON PASS_REGULAR_EXPRESSION "consumer ok")
add_test(NAME consumer.add_subdirectory
         COMMAND ${CMAKE_COMMAND} -DSRC=${PROJECT_SOURCE_DIR}/tests/cmake_consumer/add_subdirectory
                 -DBIN=${consumer_dir}/add_subdirectory -DDDPM_SOURCE_DIR=${PROJECT_SOURCE_DIR}
                 -DGENERATOR=${CMAKE_GENERATOR}
                 -P ${PROJECT_SOURCE_DIR}/tests/cmake_consumer/run_consumer.cmake)
set_tests_properties(consumer.add_subdirectory PROPERTIES LABELS consumer RUN_SERIAL ON
                     PASS_REGULAR_EXPRESSION "consumer ok")
# An outside project that asks for the components io, xtensor and eigen only, builds with
# -Wall -Wextra -Wpedantic -Werror, trains from an xt::xarray, samples into xtensor and takes a
# statistic with Eigen (tests/cmake_consumer/interop).
if(TARGET ddpm::io AND TARGET ddpm::xtensor AND TARGET ddpm::eigen)
  add_test(NAME consumer.interop
           COMMAND ${CMAKE_COMMAND} -DSRC=${PROJECT_SOURCE_DIR}/tests/cmake_consumer/interop
                   -DBIN=${consumer_dir}/interop -DPREFIX=${consumer_dir}/prefix
                   -DGENERATOR=${CMAKE_GENERATOR}
                   -P ${PROJECT_SOURCE_DIR}/tests/cmake_consumer/run_consumer.cmake)
  set_tests_properties(consumer.interop PROPERTIES FIXTURES_REQUIRED ddpm_installed
                       LABELS consumer RUN_SERIAL ON PASS_REGULAR_EXPRESSION "interop consumer ok")
endif()
# The package config without xtensor: the xtensor component alone is not found, with a message
# naming xtensor; the core and the other components still are (tests/cmake_consumer/components).
add_test(NAME consumer.components_without_xtensor
         COMMAND ${CMAKE_COMMAND} -DSRC=${PROJECT_SOURCE_DIR}/tests/cmake_consumer/components
                 -DBIN=${consumer_dir}/components -DPREFIX=${consumer_dir}/prefix
                 -DGENERATOR=${CMAKE_GENERATOR}
                 -P ${PROJECT_SOURCE_DIR}/tests/cmake_consumer/run_components.cmake)
set_tests_properties(consumer.components_without_xtensor PROPERTIES FIXTURES_REQUIRED ddpm_installed
                     LABELS consumer RUN_SERIAL ON PASS_REGULAR_EXPRESSION "components ok")

# ---- docs/extending.md: its programs (a schedule, target, loss and backend of the user's own) built
# against the installed package with -march=native and -march=x86-64-v4 (run where the CPU has
# AVX-512F, built only elsewhere), -Werror.
if(DDPM_HAVE_IO)
  set(ddpm_cpu_avx512 OFF)
  if(EXISTS /proc/cpuinfo)
    file(STRINGS /proc/cpuinfo ddpm_cpu_flags REGEX "^flags" LIMIT_COUNT 1)
    if(ddpm_cpu_flags MATCHES " avx512f ")
      set(ddpm_cpu_avx512 ON)
    endif()
  endif()
  foreach(march native x86-64-v4)
    set(run ON)
    if(march STREQUAL "x86-64-v4" AND NOT ddpm_cpu_avx512)
      set(run OFF)
    endif()
    add_test(NAME extending.${march}
             COMMAND ${CMAKE_COMMAND} -DSRC=${PROJECT_SOURCE_DIR}/docs/extending
                     -DBIN=${consumer_dir}/extending-${march} -DPREFIX=${consumer_dir}/prefix
                     -DGENERATOR=${CMAKE_GENERATOR} -DMARCH=${march} -DRUN=${run}
                     -P ${PROJECT_SOURCE_DIR}/tests/extending/run_extending.cmake)
    set_tests_properties(extending.${march} PROPERTIES FIXTURES_REQUIRED ddpm_installed
                         LABELS consumer RUN_SERIAL ON PASS_REGULAR_EXPRESSION "extending ok" TIMEOUT 900)
  endforeach()
endif()

# ---- fuzzing (tests/fuzz): the libFuzzer targets of the io/ readers.
# 1. Replays: every file of tests/fuzz/corpus/<target> (seeds and crash reproducers) goes through
#    the target's LLVMFuzzerTestOneInput, built with the project's compiler: part of the default
#    run (and of the sanitizers preset, where it runs under ASan + UBSan).
# 2. Short fuzzing runs (ctest label "fuzz"): each target is built with clang's libFuzzer, ASan
#    and UBSan and tries DDPM_FUZZ_RUNS inputs from seed DDPM_FUZZ_SEED (reproducible; at most
#    DDPM_FUZZ_SECONDS), starting from the seed corpus (new inputs go to
#    the build folder, never into the source tree). Without clang++ and libFuzzer these tests
#    report "skipped". Long runs: see tests/fuzz/README.md.
if(DDPM_HAVE_IO)
  set(DDPM_FUZZ_RUNS 40000 CACHE STRING "Inputs each libFuzzer target tries in the test suite (label fuzz)")
  set(DDPM_FUZZ_SECONDS 60 CACHE STRING "At most this many seconds per libFuzzer target in the test suite")
  set(DDPM_FUZZ_SEED 1 CACHE STRING "libFuzzer -seed of the test-suite runs (0: a new random seed each run)")
  set(ddpm_fuzz_targets idx safetensors image)
  foreach(t IN LISTS ddpm_fuzz_targets)
    add_executable(ddpm_fuzz_replay_${t} ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_${t}.cpp
                                         ${PROJECT_SOURCE_DIR}/tests/fuzz/replay_main.cpp)
    target_link_libraries(ddpm_fuzz_replay_${t} PRIVATE ddpm::io ddpm_dev_flags)
    add_test(NAME fuzz_replay.${t}
             COMMAND ddpm_fuzz_replay_${t} ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/${t})
    set_tests_properties(fuzz_replay.${t} PROPERTIES LABELS fuzz_replay PASS_REGULAR_EXPRESSION "replayed [1-9]")
  endforeach()

  # clang++ with libFuzzer: the first of these names that links a trivial fuzz target.
  if(NOT DEFINED DDPM_FUZZ_CXX)
    set(DDPM_FUZZ_CXX "")
    find_program(ddpm_clangxx NAMES clang++-14 clang++ clang++-15 clang++-16 clang++-17 clang++-18)
    if(ddpm_clangxx)
      set(probe_dir ${CMAKE_BINARY_DIR}/fuzz/probe)
      file(MAKE_DIRECTORY ${probe_dir})
      file(WRITE ${probe_dir}/probe.cpp
           "#include <cstdint>\n#include <cstddef>\nextern \"C\" int LLVMFuzzerTestOneInput(const std::uint8_t*, std::size_t) { return 0; }\n")
      execute_process(COMMAND ${ddpm_clangxx} -fsanitize=fuzzer,address,undefined ${probe_dir}/probe.cpp
                              -o ${probe_dir}/probe
                      RESULT_VARIABLE probe_rc OUTPUT_QUIET ERROR_QUIET)
      if(probe_rc EQUAL 0)
        set(DDPM_FUZZ_CXX ${ddpm_clangxx})
      endif()
    endif()
    set(DDPM_FUZZ_CXX "${DDPM_FUZZ_CXX}" CACHE STRING "clang++ with libFuzzer for tests/fuzz (empty: fuzz tests skipped)")
  endif()

  if(DDPM_FUZZ_CXX)
    message(STATUS "ddpm: libFuzzer targets built with ${DDPM_FUZZ_CXX}; ctest label fuzz runs each for ${DDPM_FUZZ_RUNS} inputs (seed ${DDPM_FUZZ_SEED}, at most ${DDPM_FUZZ_SECONDS} s)")
    set(fuzz_dir ${CMAKE_BINARY_DIR}/fuzz)
    foreach(t IN LISTS ddpm_fuzz_targets)
      set(exe ${fuzz_dir}/fuzz_${t})
      set(srcs ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_${t}.cpp)
      set(libs ${ZLIB_LIBRARIES} ${GIF_LIBRARIES})
      if(t STREQUAL "image")
        list(APPEND srcs ${PROJECT_SOURCE_DIR}/tests/fuzz/stb_image_impl.cpp)  # instrumented stb
      else()
        list(APPEND libs ${DDPM_STB_LIBRARY})
      endif()
      # One object per source (a depfile each), then the link.
      set(objs "")
      foreach(src IN LISTS srcs)
        get_filename_component(stem ${src} NAME_WE)
        set(obj ${fuzz_dir}/${t}_${stem}.o)
        set(extra "")
        if(stem STREQUAL "stb_image_impl")
          # Two kinds of undefined behaviour inside stb_image 2.27 (not our code; fixed upstream
          # later) that corrupt files trigger and that cannot touch memory: memcpy(NULL, src, 0)
          # for an empty PNG data chunk, and a 32-bit shift by 32 in the JPEG bit reader (x86
          # masks the count: garbage pixels). Every other check, and ASan, stays on for stb.
          set(extra -fno-sanitize=nonnull-attribute,shift)
        endif()
        add_custom_command(OUTPUT ${obj}
          COMMAND ${DDPM_FUZZ_CXX} -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined
                  -fno-sanitize-recover=undefined ${extra} -I${PROJECT_SOURCE_DIR}/include
                  -I${DDPM_STB_INCLUDE_DIR} -MD -MF ${obj}.d -c ${src} -o ${obj}
          DEPFILE ${obj}.d
          DEPENDS ${src}
          COMMENT "Compiling ${stem} for libFuzzer (${DDPM_FUZZ_CXX})"
          VERBATIM)
        list(APPEND objs ${obj})
      endforeach()
      add_custom_command(OUTPUT ${exe}
        COMMAND ${DDPM_FUZZ_CXX} -fsanitize=fuzzer,address,undefined ${objs} -o ${exe} ${libs}
        DEPENDS ${objs}
        COMMENT "Linking libFuzzer target fuzz_${t}"
        VERBATIM)
      add_custom_target(ddpm_fuzz_${t} ALL DEPENDS ${exe})
      # A fixed seed, a fixed number of runs and a fresh output corpus: the run tries the same
      # inputs on every machine with the same compiler (a prefix of them when the time cap stops
      # it first), so the default test run is reproducible; exploration is for long runs by hand.
      add_test(NAME fuzz.${t}
               COMMAND sh -c "rm -rf \"$1\" && mkdir -p \"$1\" && shift && exec \"$@\"" fuzz
                       ${fuzz_dir}/corpus_${t} ${exe} ${fuzz_dir}/corpus_${t}
                       ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/${t}
                       -seed=${DDPM_FUZZ_SEED} -runs=${DDPM_FUZZ_RUNS}
                       -max_total_time=${DDPM_FUZZ_SECONDS} -timeout=20 -rss_limit_mb=2048
                       -print_final_stats=1 -artifact_prefix=${fuzz_dir}/artifacts_${t}_
               WORKING_DIRECTORY ${fuzz_dir})
      set_tests_properties(fuzz.${t} PROPERTIES LABELS fuzz TIMEOUT 600)
    endforeach()
  else()
    message(STATUS "ddpm: no clang++ with libFuzzer found; the fuzz tests (label fuzz) are skipped")
    foreach(t IN LISTS ddpm_fuzz_targets)
      add_test(NAME fuzz.${t}
               COMMAND ${CMAKE_COMMAND} -E echo "skipped: fuzz_${t} needs clang++ with libFuzzer (Debian: clang libclang-rt-dev)")
      set_tests_properties(fuzz.${t} PROPERTIES LABELS fuzz SKIP_REGULAR_EXPRESSION "skipped:")
    endforeach()
  endif()
endif()

# ---- ThreadSanitizer with oneTBB (preset tsan sets DDPM_TSAN): see tests/sanitizers/tbb_itt_tsan.cpp.
# The library that gives TSan oneTBB's happens-before edges (the tsan test preset preloads it),
# and the canary that proves it hides no real race.
option(DDPM_TSAN "Build the ThreadSanitizer helpers for oneTBB (tests/sanitizers)" OFF)
if(DDPM_TSAN)
  add_library(ddpm_tbb_itt_tsan SHARED ${PROJECT_SOURCE_DIR}/tests/sanitizers/tbb_itt_tsan.cpp)
  # Not instrumented and not linked with the TSan runtime: it is preloaded into every process the
  # tests start (ctest, cmake), and looks the TSan functions up at run time.
  target_compile_options(ddpm_tbb_itt_tsan PRIVATE -fno-sanitize=all)
  target_link_options(ddpm_tbb_itt_tsan PRIVATE -fno-sanitize=all)
  target_link_libraries(ddpm_tbb_itt_tsan PRIVATE ${CMAKE_DL_LIBS})
  set_target_properties(ddpm_tbb_itt_tsan PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/sanitizers)
  add_executable(ddpm_tsan_canary ${PROJECT_SOURCE_DIR}/tests/sanitizers/tsan_canary.cpp)
  target_link_libraries(ddpm_tsan_canary PRIVATE TBB::tbb)
  add_dependencies(ddpm_tsan_canary ddpm_tbb_itt_tsan)
  add_test(NAME tsan.canary_clean COMMAND ddpm_tsan_canary clean)
  add_test(NAME tsan.canary_race COMMAND ddpm_tsan_canary race)
  set_tests_properties(tsan.canary_race PROPERTIES
    PASS_REGULAR_EXPRESSION "ThreadSanitizer: data race.*tsan_canary.cpp")
endif()
