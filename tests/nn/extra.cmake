# tests/nn: the golden U-Net test reads a safetensors fixture with ddpm::io's reader.
if(TARGET ddpm::io AND TARGET ddpm_tests_nn)
  target_link_libraries(ddpm_tests_nn PRIVATE ddpm::io)
  target_compile_definitions(ddpm_tests_nn PRIVATE DDPM_TEST_HAVE_IO=1)
endif()
