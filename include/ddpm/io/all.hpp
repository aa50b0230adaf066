// SPDX-License-Identifier: MIT
// ddpm/io/all.hpp — everything that reads or writes files; this comment documents the module.
//
// The io/ module is host-only and independent of tensors and backends: functions take and
// return plain std::vector / std::span with explicit dimensions. It needs the ddpm::io CMake
// target (zlib, giflib, stb from libstb, nlohmann-json).
//
//   types.hpp        Image8 (HWC bytes), ImageDataset (NCHW bytes + labels), to_float_pm1
//   atomic_file.hpp  read_file (bounded), write_file_atomic (temp file, fsync, rename, fsync dir)
//   idx.hpp          read_idx / write_idx (MNIST family, raw or gzip), load_idx_images,
//                    load_mnist_dir
//   image.hpp        read_image (stb_image), resize_area_or_bilinear, center_crop_square, hflip,
//                    load_image_folder
//   png.hpp          write_png, make_grid, write_png_grid (sample grids, one row per class)
//   gif.hpp          GifWriter, write_gif (denoising trajectories)
//   font.hpp         a built-in bitmap font: draw_text, text_width
//   plot.hpp         render_line_plot / write_line_plot (loss, schedules, metrics), smooth_ema
//   safetensors.hpp  write_safetensors, SafeTensorsFile (checkpoints)
//
// Errors. Readers treat every file as hostile (they are fuzzed: tests/fuzz/): sizes are checked
// before memory is allocated, and any bad input — a missing file, wrong magic, unsupported type,
// truncated data, trailing bytes, oversized or overflowing dimensions, corrupt compressed data,
// undecodable images, missing or empty folders, mismatched image and label counts, malformed
// safetensors headers — throws ddpm::IoError, whose message starts with the path of the file
// and then names the problem ("data/train-images-idx3-ubyte: truncated: ..."). Wrong arguments
// from the caller (cols = 0, a buffer of the wrong size) throw std::invalid_argument.
//
// Writes. Every file is written through write_file_atomic, so a crash or a failed write (disk
// full: "No space left on device") never leaves a torn file and never destroys the previous one.
#pragma once

#include "ddpm/io/atomic_file.hpp"
#include "ddpm/io/font.hpp"
#include "ddpm/io/gif.hpp"
#include "ddpm/io/idx.hpp"
#include "ddpm/io/image.hpp"
#include "ddpm/io/plot.hpp"
#include "ddpm/io/png.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/io/types.hpp"
