# Configures tests/cmake_consumer/components against the installed package (PREFIX) in several
# ways and checks which ddpm:: targets exist and what the messages say. Variables: SRC, BIN,
# GENERATOR, PREFIX. Every case hides xtensor (CMAKE_DISABLE_FIND_PACKAGE_xtensor), as if the
# package were not installed, except the first.
set(cases_passed 0)
# case(<name> <expect: ok|fail> <regex the output must match> <extra -D arguments>...)
function(check_case name expect regex)
  set(bin ${BIN}/${name})
  file(REMOVE_RECURSE ${bin})
  execute_process(COMMAND ${CMAKE_COMMAND} -S ${SRC} -B ${bin} -G "${GENERATOR}"
                          -DCMAKE_PREFIX_PATH=${PREFIX} ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(all "${out}${err}")
  string(REGEX REPLACE "[ \t\r\n]+" " " all "${all}")  # CMake wraps long messages
  if(expect STREQUAL "ok" AND rc)
    message(FATAL_ERROR "case ${name}: configure failed (${rc}) but should succeed:\n${all}")
  elseif(expect STREQUAL "fail" AND NOT rc)
    message(FATAL_ERROR "case ${name}: configure succeeded but should fail:\n${all}")
  endif()
  if(NOT all MATCHES "${regex}")
    message(FATAL_ERROR "case ${name}: output does not match '${regex}':\n${all}")
  endif()
  message("case ${name}: ${expect} as expected")
  math(EXPR n "${cases_passed} + 1")
  set(cases_passed ${n} PARENT_SCOPE)
endfunction()

set(no_xt -DCMAKE_DISABLE_FIND_PACKAGE_xtensor=ON)
# 1. With xtensor installed, the xtensor component is found, and only what was asked exists.
check_case(with_xtensor ok "ddpm targets: \\[ddpm,xtensor\\] xtensor_FOUND=TRUE" -DDDPM_REQUIRED=xtensor)
# 2. Without xtensor, asking for it (REQUIRED) fails, naming the component and the package.
check_case(xtensor_required fail "component 'xtensor' \\(ddpm::xtensor\\) needs xtensor >= 0.24 \\(Debian: libxtensor-dev\\), which was not found"
           ${no_xt} -DDDPM_REQUIRED=xtensor)
# 3. Without xtensor, the other components still work; xtensor as an optional component is
#    reported and skipped.
check_case(xtensor_optional ok "needs xtensor >= 0.24.*optional component skipped.*ddpm targets: \\[ddpm,io,eigen\\] xtensor_FOUND=FALSE"
           ${no_xt} -DDDPM_REQUIRED=eigen,io -DDDPM_OPTIONAL=xtensor)
# 4. Without xtensor and without components: everything else is loaded.
check_case(no_components ok "ddpm targets: \\[ddpm,io,eigen,eval\\]" ${no_xt})
# 5. Only xsimd and oneTBB: the core target alone, with eigen/io/xtensor/eval hidden.
check_case(core_only ok "ddpm targets: \\[ddpm\\]" ${no_xt} -DCMAKE_DISABLE_FIND_PACKAGE_Eigen3=ON
           -DCMAKE_DISABLE_FIND_PACKAGE_ZLIB=ON -DCMAKE_DISABLE_FIND_PACKAGE_xtl=ON)
# 6. eval needs eigen: without Eigen, asking for eval fails and says why.
check_case(eval_without_eigen fail "component 'eval' \\(ddpm::eval\\) needs the components io and eigen \\(eigen: Eigen 3.4"
           -DCMAKE_DISABLE_FIND_PACKAGE_Eigen3=ON -DDDPM_REQUIRED=eval)
# 7. interop is xtensor + eigen: without xtensor, asking for it fails and says why.
check_case(interop_without_xtensor fail "component 'interop' \\(ddpm::interop\\) needs the components xtensor and eigen \\(xtensor: xtensor >= 0.24"
           ${no_xt} -DDDPM_REQUIRED=interop)
# 8. With xtensor, interop brings both parts.
check_case(interop ok "ddpm targets: \\[ddpm,eigen,xtensor,interop\\]" -DDDPM_REQUIRED=interop)
# 9. A misspelt component.
check_case(unknown fail "unknown component 'xtensr'" -DDDPM_REQUIRED=xtensr)
message("components ok (${cases_passed} cases)")
