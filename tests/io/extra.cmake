# ddpm_tests_io needs the readers' and writers' dependencies (zlib, giflib, stb, nlohmann-json).
if(TARGET ddpm_tests_io)
  if(DDPM_HAVE_IO)
    target_link_libraries(ddpm_tests_io PRIVATE ddpm::io)
  else()
    message(WARNING "ddpm: ddpm_tests_io needs ddpm::io (zlib1g-dev, libgif-dev, libstb-dev, nlohmann-json3-dev)")
  endif()
endif()
