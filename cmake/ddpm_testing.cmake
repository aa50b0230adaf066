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
if(TARGET ddpm::io)
  target_link_libraries(ddpm_header_check PRIVATE ddpm::io)
endif()
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
