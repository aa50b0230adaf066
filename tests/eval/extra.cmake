# ddpm_tests_eval[_slow] read IDX data and safetensors and compute Fréchet distances (ddpm::eval:
# ddpm::io and Eigen; tests/CMakeLists.txt leaves the area out without it).
foreach(t ddpm_tests_eval ddpm_tests_eval_slow)
  if(TARGET ${t})
    target_link_libraries(${t} PRIVATE ddpm::eval)
  endif()
endforeach()
