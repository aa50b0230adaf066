# NCCL with one rank on the GPU machine (included by tests/mpi/CMakeLists.txt when NCCL and the
# CUDA backend are found). Labels gpu and mpi; exit code 77 (skipped) without a CUDA device.
# Several ranks need one GPU each: NCCL refuses two ranks of a communicator on one device.
add_executable(ddpm_tests_nccl nccl_main.cpp test_nccl.cpp nccl_instantiate.cu)
target_link_libraries(ddpm_tests_nccl PRIVATE ddpm::nccl ddpm::io ddpm_dev_flags doctest::doctest)
target_compile_options(ddpm_tests_nccl PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra>)
add_test(NAME ddpm_tests_nccl COMMAND ddpm_tests_nccl)
set_tests_properties(ddpm_tests_nccl PROPERTIES LABELS "gpu;mpi" SKIP_RETURN_CODE 77 TIMEOUT 600)

# nccl.hpp compiles alone with NCCL and the CUDA runtime on the include path.
file(CONFIGURE OUTPUT ${CMAKE_BINARY_DIR}/header_check_nccl/nccl.cpp
     CONTENT "#include <ddpm/train/nccl.hpp>\n#include <ddpm/train/nccl.hpp>\n#if !DDPM_HAVE_NCCL\n#error nccl.h not found\n#endif\n")
add_library(ddpm_header_check_nccl OBJECT EXCLUDE_FROM_ALL ${CMAKE_BINARY_DIR}/header_check_nccl/nccl.cpp)
target_link_libraries(ddpm_header_check_nccl PRIVATE ddpm::nccl ddpm::io ddpm_dev_flags)
target_compile_options(ddpm_header_check_nccl PRIVATE -fsyntax-only)
add_test(NAME header_check_nccl COMMAND ${CMAKE_COMMAND} --build ${CMAKE_BINARY_DIR} --target ddpm_header_check_nccl)
set_tests_properties(header_check_nccl PROPERTIES LABELS "build;mpi" RUN_SERIAL ON)
