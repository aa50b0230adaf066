# tests/examples/anime_faces_smoke.cmake — the anime_faces example end to end on images the test
# makes itself (tests/examples/make_anime_fixture.cpp), a few seconds of CPU:
#   train from a folder (mixed sizes, non-square: centre-cropped) at 8x8 for 3 steps, then
#   `sample` a 2x2 grid from the checkpoint and check grid.png's size from its PNG header;
#   train from an idx4 file with --image-size 8 (resized: the option must take effect);
#   bad input fails with an error naming the file or option: a folder without images (other
#   files, or images only in a subfolder), an undecodable
#   image, grey images (folder and idx3), an --attn-res that is no level of the U-Net;
#   with ddpm-eval (-DEVAL): train-encoder, train --eval-every (eval.csv rows), score-rgb of the
#   grid, and an encoder of another size refused by name.
# Run by ctest as: cmake -DEXE=<anime_faces> -DFIXTURE=<make_anime_fixture> -DWORK=<dir> -P this
foreach(v EXE FIXTURE WORK)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "anime_faces_smoke: -D${v}=... is required")
  endif()
endforeach()
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})

function(check_rc what rc out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "anime_faces_smoke: ${what} failed (exit ${rc}):\n${out}")
  endif()
endfunction()
function(expect_in what haystack)
  foreach(needle IN LISTS ARGN)
    string(FIND "${haystack}" "${needle}" pos)
    if(pos EQUAL -1)
      message(FATAL_ERROR "anime_faces_smoke: ${what}: expected '${needle}' in the output:\n${haystack}")
    endif()
  endforeach()
endfunction()

execute_process(COMMAND ${FIXTURE} ${WORK}/in RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
check_rc("make_anime_fixture" "${rc}" "${out}${err}")

# A tiny U-Net: levels 8 and 4, attention at 4, T = 20.
set(tiny --base-channels 8 --channel-mults 1,2 --num-res-blocks 1 --groups 4 -T 20 --batch 4
         --minutes 0 --count 4 --sample-steps 2 --record-every 0 --fresh)

# 1. Folder -> train -> sample.
execute_process(COMMAND ${EXE} --threads 2 train --data ${WORK}/in/colour --image-size 8 --steps 3
                        --attn-res 4 ${tiny} --out ${WORK}/run
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
check_rc("train --data" "${rc}" "${out}${err}")
expect_in("train --data" "${out}" "data: 12 images 3x8x8" "trained steps 0..3")
if(NOT EXISTS ${WORK}/run/checkpoint.safetensors OR NOT EXISTS ${WORK}/run/grid.png)
  message(FATAL_ERROR "anime_faces_smoke: train wrote no checkpoint.safetensors or grid.png in ${WORK}/run")
endif()
execute_process(COMMAND ${EXE} --threads 2 sample --checkpoint ${WORK}/run/checkpoint.safetensors
                        --count 4 --steps 3 --record-every 0 --out ${WORK}/sample
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
check_rc("sample" "${rc}" "${out}${err}")
set(grid ${WORK}/sample/grid.png)
if(NOT EXISTS ${grid})
  message(FATAL_ERROR "anime_faces_smoke: sample wrote no ${grid}:\n${out}${err}")
endif()
# PNG: 8-byte signature, IHDR length and type, then width and height (big-endian).
file(READ ${grid} sig LIMIT 8 HEX)
file(READ ${grid} wh OFFSET 16 LIMIT 8 HEX)
string(SUBSTRING "${wh}" 0 8 whex)
string(SUBSTRING "${wh}" 8 8 hhex)
math(EXPR gw "0x${whex}")
math(EXPR gh "0x${hhex}")
# 4 images of 8x8 in 2 columns, 2 pixels of padding, drawn twice as large (images up to 32x32):
# 2 * (2 * (8 + 2) + 2) = 44.
if(NOT sig STREQUAL "89504e470d0a1a0a" OR NOT gw EQUAL 44 OR NOT gh EQUAL 44)
  message(FATAL_ERROR "anime_faces_smoke: ${grid} is ${gw}x${gh} (signature ${sig}), expected a 44x44 PNG")
endif()

# 2. idx4 at 24x24 with --image-size 8: trained at 8x8.
execute_process(COMMAND ${EXE} --threads 2 train --idx ${WORK}/in/rgb.idx4 --image-size 8 --steps 1
                        --attn-res 4 ${tiny} --out ${WORK}/run_idx
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
check_rc("train --idx --image-size 8" "${rc}" "${out}${err}")
expect_in("train --idx --image-size 8" "${out}" "resized to 8x8" "data: 12 images 3x8x8")

# 3. The defaults are the CPU recipe: 32x32 (the 24x24 idx4 images resized), the 2.25 M-parameter
#    U-Net, v target, T = 200; --image-size 64 switches the U-Net to UNetConfig::anime64 (17.2 M).
set(one_step --steps 1 --batch 2 --count 1 --sample-steps 1 --record-every 0 --fresh)
execute_process(COMMAND ${EXE} --threads 2 train --idx ${WORK}/in/rgb.idx4 ${one_step} --out ${WORK}/run_default
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
check_rc("train --idx (defaults)" "${rc}" "${out}${err}")
expect_in("train --idx (defaults)" "${out}" "resized to 32x32" "data: 12 images 3x32x32"
          "model: cosine, v, l2, T=200, 2245763 parameters")
execute_process(COMMAND ${EXE} --threads 2 train --idx ${WORK}/in/rgb.idx4 --image-size 64 --dropout 0.2
                        ${one_step} --out ${WORK}/run_64
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
check_rc("train --idx --image-size 64" "${rc}" "${out}${err}")
expect_in("train --idx --image-size 64" "${out}" "data: 12 images 3x64x64" "17217923 parameters")
file(READ ${WORK}/run_64/checkpoint.safetensors head OFFSET 8 LIMIT 65536)  # the JSON header
expect_in("--image-size 64 checkpoint metadata" "${head}" "\"opt.base_channels\":\"64\""
          "\"opt.channel_mults\":\"1,2,2,4\"" "\"opt.attention_resolutions\":\"16\"" "\"opt.dropout\":\"0.2\"")

# 4. Bad input: each fails (exit 1) with a message naming the file or option.
function(expect_error what)
  cmake_parse_arguments(A "" "" "ARGS;EXPECT" ${ARGN})
  execute_process(COMMAND ${EXE} --threads 1 train ${A_ARGS} --steps 1 ${tiny} --out ${WORK}/bad
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc EQUAL 0)
    message(FATAL_ERROR "anime_faces_smoke: ${what}: expected an error, got exit 0:\n${out}${err}")
  endif()
  expect_in("${what}" "${err}" ${A_EXPECT})
endfunction()
expect_error("no image file" ARGS --data ${WORK}/in/empty EXPECT "in/empty" "no image files"
             "1 other file" "readme.txt")
expect_error("images only in a subfolder" ARGS --data ${WORK}/in/nested
             EXPECT "in/nested" "no image files" "1 subfolder" "faces" "not searched")
expect_error("undecodable image" ARGS --data ${WORK}/in/broken EXPECT "b_not_an_image.png" "cannot decode image")
expect_error("grey folder" ARGS --data ${WORK}/in/grey EXPECT "in/grey" "grey" "RGB")
expect_error("grey idx3" ARGS --idx ${WORK}/in/grey.idx3 EXPECT "grey.idx3" "grey images" "idx4")
expect_error("--attn-res not a level" ARGS --idx ${WORK}/in/rgb.idx4 --image-size 24 --attn-res 5
             EXPECT "--attn-res 5" "24x24" "levels of 24,12" "--attn-res 12")
expect_error("--image-size not divisible" ARGS --data ${WORK}/in/colour --image-size 9
             EXPECT "--image-size" "multiple of 2")
# 5. With ddpm-eval (-DEVAL=...): an RGB feature encoder for the 8x8 images, `train --eval-every 2`
#    logs two evaluations in eval.csv, score-rgb scores the sampled grid, and an encoder of another
#    size is refused by name.
if(EVAL)
  execute_process(COMMAND ${EVAL} --threads 2 train-encoder --data ${WORK}/in/colour --image-size 8
                          --epochs 1 --out ${WORK}/enc8.safetensors
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  check_rc("ddpm-eval train-encoder" "${rc}" "${out}${err}")
  execute_process(COMMAND ${EXE} --threads 2 train --data ${WORK}/in/colour --image-size 8 --steps 4
                          --attn-res 4 ${tiny} --eval-every 2 --encoder ${WORK}/enc8.safetensors
                          --eval-count 4 --eval-steps 2 --out ${WORK}/run_eval
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  check_rc("train --eval-every" "${rc}" "${out}${err}")
  expect_in("train --eval-every" "${err}" "eval @ step 2: n=4 FD=" "eval @ step 4: n=4 FD=")
  file(STRINGS ${WORK}/run_eval/eval.csv rows)
  list(LENGTH rows nrows)
  if(NOT nrows EQUAL 3)
    message(FATAL_ERROR "anime_faces_smoke: eval.csv has ${nrows} lines, expected a header and 2 rows:\n${rows}")
  endif()
  execute_process(COMMAND ${EVAL} --threads 2 score-rgb --encoder ${WORK}/enc8.safetensors
                          --samples ${grid} --real ${WORK}/in/colour
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  check_rc("ddpm-eval score-rgb" "${rc}" "${out}${err}")
  expect_in("ddpm-eval score-rgb" "${err}" "n=4 FD=")
  expect_in("ddpm-eval score-rgb" "${out}" "\"fd_real\"" "\"nearest_train\"")
  expect_error("--encoder of another size"
               ARGS --data ${WORK}/in/colour --image-size 16 --attn-res 8 --eval-every 1
                    --encoder ${WORK}/enc8.safetensors
               EXPECT "enc8.safetensors" "3x8x8" "3x16x16" "--image-size 16")
endif()
file(REMOVE_RECURSE ${WORK})
message(STATUS "anime_faces smoke ok")
