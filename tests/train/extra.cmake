if(TARGET ddpm_tests_train)
  target_link_libraries(ddpm_tests_train PRIVATE ddpm::io)
endif()
if(TARGET ddpm_tests_train_slow)
  target_link_libraries(ddpm_tests_train_slow PRIVATE ddpm::io)
endif()

# The child process of the checkpoint-kill tests (tests/train/checkpoint_kill.hpp): saves
# checkpoints in a loop until it is killed.
if(DDPM_HAVE_IO)
  add_executable(ddpm_checkpoint_writer ${CMAKE_CURRENT_SOURCE_DIR}/helpers/checkpoint_writer.cpp)
  target_link_libraries(ddpm_checkpoint_writer PRIVATE ddpm::io ddpm_dev_flags)
  target_include_directories(ddpm_checkpoint_writer PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  foreach(t ddpm_tests_train ddpm_tests_train_slow)
    if(TARGET ${t})
      add_dependencies(${t} ddpm_checkpoint_writer)
      target_compile_definitions(${t} PRIVATE
        DDPM_CHECKPOINT_WRITER="$<TARGET_FILE:ddpm_checkpoint_writer>")
    endif()
  endforeach()
endif()
