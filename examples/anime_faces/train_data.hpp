// examples/anime_faces/train_data.hpp — the training images of `anime_faces train` (a folder of
// image files or an IDX file, both brought to --image-size) and the checks that turn a U-Net
// option that cannot work with those images into an error naming the option, the cause and a fix.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <ddpm/core/assert.hpp>
#include <ddpm/io/idx.hpp>
#include <ddpm/io/image.hpp>
#include <ddpm/nn/unet/config.hpp>

namespace anime {

/// Where the training images come from and what size they are trained at.
struct DataArgs {
  std::string data_dir, idx_file;
  std::size_t image_size = 64;
  bool image_size_given = false;  ///< --image-size on the command line (else: the default)
  std::size_t max_images = 0;     ///< 0 = all
  bool crop = true;               ///< centre-crop non-square images (else squash)
};

/// NCHW images brought to size x size: centre-cropped to a square (if crop) or squashed, then
/// resized with io::resize_area_or_bilinear (area when shrinking, bilinear when growing) — the
/// same steps as io::load_image_folder.
inline ddpm::io::ImageDataset resize_dataset(const ddpm::io::ImageDataset& d, std::size_t size,
                                             bool crop) {
  if (d.h == size && d.w == size) return d;
  ddpm::io::ImageDataset out;
  out.n = d.n;
  out.c = d.c;
  out.h = out.w = size;
  out.labels = d.labels;
  out.pixels.resize(d.n * d.c * size * size);
  const std::size_t in_hw = d.h * d.w, out_hw = size * size;
  ddpm::io::Image8 img{d.h, d.w, d.c, std::vector<std::uint8_t>(in_hw * d.c)};
  for (std::size_t i = 0; i < d.n; ++i) {
    const std::uint8_t* src = d.pixels.data() + i * d.c * in_hw;
    for (std::size_t p = 0; p < in_hw; ++p)
      for (std::size_t ch = 0; ch < d.c; ++ch) img.px[p * d.c + ch] = src[ch * in_hw + p];
    const ddpm::io::Image8 r =
        ddpm::io::resize_area_or_bilinear(crop ? ddpm::io::center_crop_square(img) : img, size, size);
    std::uint8_t* dst = out.pixels.data() + i * d.c * out_hw;
    for (std::size_t p = 0; p < out_hw; ++p)
      for (std::size_t ch = 0; ch < d.c; ++ch) dst[ch * out_hw + p] = r.px[p * d.c + ch];
  }
  return out;
}

/// Whether image i of an RGB data set has R == G == B at every pixel.
inline bool is_grey(const ddpm::io::ImageDataset& d, std::size_t i) {
  const std::size_t hw = d.h * d.w;
  const std::uint8_t* p = d.pixels.data() + i * 3 * hw;
  for (std::size_t k = 0; k < hw; ++k)
    if (p[k] != p[hw + k] || p[k] != p[2 * hw + k]) return false;
  return true;
}

/// The image files io::load_image_folder reads, in its order.
inline std::vector<std::filesystem::path> image_files(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const auto& p = it->path();
    const std::string f = p.filename().string();
    std::error_code e2;
    if (!f.empty() && f[0] != '.' && ddpm::io::detail::has_image_extension(p) && it->is_regular_file(e2))
      files.push_back(p);
  }
  std::sort(files.begin(), files.end());
  return files;
}

/// Loads the training images as 3-channel size x size images (size = --image-size; with --idx and
/// image_size_given false, the file's own size: ddpm-eval train-encoder).
/// @throws std::invalid_argument unless exactly one of --data / --idx is given;
///         ddpm::IoError naming the folder or file: no image files, an image that cannot be
///         decoded, a grey (1-channel) IDX file or a folder of only grey images, an IDX file with
///         another channel count than 3.
inline ddpm::io::ImageDataset load_training_images(const DataArgs& a) {
  if (a.data_dir.empty() == a.idx_file.empty())
    throw std::invalid_argument("give exactly one of --data DIR (a folder of images) or --idx FILE");
  ddpm::detail::require(a.image_size >= 4 && a.image_size <= 1024, "--image-size",
                        "must be in [4, 1024], got ", a.image_size);
  if (!a.idx_file.empty()) {
    ddpm::io::ImageDataset d = ddpm::io::load_idx_images(a.idx_file);
    if (d.c == 1)
      throw ddpm::IoError(a.idx_file, ddpm::detail::cat(
          "holds grey images (", d.n, " x ", d.h, " x ", d.w,
          ", one channel); anime_faces trains an RGB model: give an idx4 file of N x H x W x 3 "
          "images, or a folder of colour images with --data"));
    if (d.c != 3)
      throw ddpm::IoError(a.idx_file, ddpm::detail::cat(
          "holds images with ", d.c, " channels (", d.n, " x ", d.h, " x ", d.w, " x ", d.c,
          "); anime_faces trains on RGB images: give an idx4 file of N x H x W x 3 images"));
    if (a.max_images && a.max_images < d.n) {
      d.n = a.max_images;
      d.pixels.resize(d.n * d.c * d.h * d.w);
    }
    d.labels.clear();
    const std::size_t size = a.image_size_given ? a.image_size : std::min(d.h, d.w);
    if (d.h != size || d.w != size) {
      std::printf("data: %s holds %zux%zu images; %s and resized to %zux%zu%s\n", a.idx_file.c_str(),
                  d.w, d.h, a.crop ? "centre-cropped" : "squashed", size, size,
                  a.image_size_given ? " (--image-size)" : "");
      d = resize_dataset(d, size, a.crop);
    }
    return d;
  }
  ddpm::io::ImageDataset d =
      ddpm::io::load_image_folder(a.data_dir, a.image_size, 3, a.crop, a.max_images);
  std::size_t grey = 0;
  for (std::size_t i = 0; i < d.n; ++i) grey += is_grey(d, i);
  if (grey == d.n) {
    const auto files = image_files(a.data_dir);
    throw ddpm::IoError(a.data_dir, ddpm::detail::cat(
        "all ", d.n, " images are grey (R = G = B everywhere, e.g. ",
        files.empty() ? std::string("?") : files.front().filename().string(),
        "); anime_faces trains an RGB model: give a folder of colour images (for grey images, "
        "see examples/mnist)"));
  }
  if (grey > 0)
    std::printf("note: %zu of %zu images in %s are grey (trained as R = G = B)\n", grey, d.n,
                a.data_dir.c_str());
  return d;
}

/// The sizes of the U-Net's levels for `u` (image_size, image_size / 2, ...), as text "32,16,8".
inline std::string level_sizes(const ddpm::nn::UNetConfig& u) {
  std::string s;
  for (std::size_t i = 0; i < u.levels(); ++i) {
    if (u.image_size % (std::size_t{1} << i)) break;
    s += (i ? "," : "") + std::to_string(u.image_size >> i);
  }
  return s;
}

/// The attention resolution used when --attn-res is not given: a quarter of the image size (16
/// at 64x64, as UNetConfig::anime64; 8 at 32x32, as manga32), or the smallest level if the U-Net
/// has fewer than three levels.
inline std::size_t default_attention(const ddpm::nn::UNetConfig& u) {
  return u.image_size >> std::min<std::size_t>(2, u.levels() ? u.levels() - 1 : 0);
}

/// The U-Net of the 32x32 CPU recipe: 2.25 M parameters (base 32, mults 1,2,2,2, attention at
/// 8x8, no dropout), sized like the manga-face U-Net that gave faces in a short CPU run; about
/// four times cheaper per image than UNetConfig::manga32 (base 64).
inline ddpm::nn::UNetConfig cpu_recipe_unet() {
  ddpm::nn::UNetConfig c;
  c.in_channels = 3;
  c.image_size = 32;
  c.base_channels = 32;
  c.channel_mults = {1, 2, 2, 2};
  c.attention_resolutions = {8};
  c.dropout = 0.0;
  return c;
}

/// The U-Net of the recipe for size x size images: cpu_recipe_unet() up to 32x32,
/// UNetConfig::anime64 (17.2 M parameters, for a GPU) above. Each U-Net option given on the command line (`given(name)`
/// true, e.g. "--dropout") keeps the value the user gave, which `user` holds. in_channels,
/// image_size and attention_resolutions (when --attn-res is not given: default_attention) follow
/// the data.
template <class Given>
ddpm::nn::UNetConfig recipe_unet(std::size_t size, const ddpm::nn::UNetConfig& user, Given&& given) {
  ddpm::nn::UNetConfig u = size <= 32 ? cpu_recipe_unet() : ddpm::nn::UNetConfig::anime64();
  if (given("--base-channels")) u.base_channels = user.base_channels;
  if (given("--channel-mults")) u.channel_mults = user.channel_mults;
  if (given("--num-res-blocks")) u.num_res_blocks = user.num_res_blocks;
  if (given("--attn-heads")) u.num_heads = user.num_heads;
  if (given("--groups")) u.groups = user.groups;
  if (given("--dropout")) u.dropout = user.dropout;
  u.in_channels = 3;
  u.image_size = size;
  u.num_classes = 0;
  u.attention_resolutions = given("--attn-res") ? user.attention_resolutions
                                                : std::vector<std::size_t>{default_attention(u)};
  return u;
}

/// Checks the U-Net options against the image size of the data, before the model is built.
/// `where` says where the image size came from (e.g. "--image-size 32", "the IDX file's 28x28").
/// @throws std::invalid_argument naming the option, the cause and a fix.
inline void check_unet_options(const ddpm::nn::UNetConfig& u, const std::string& where) {
  using ddpm::detail::cat;
  std::string mults;
  for (std::size_t i = 0; i < u.channel_mults.size(); ++i)
    mults += (i ? "," : "") + std::to_string(u.channel_mults[i]);
  const std::size_t div = std::size_t{1} << (u.levels() ? u.levels() - 1 : 0);
  if (u.levels() == 0) throw std::invalid_argument("--channel-mults: needs at least one level");
  if (u.image_size % div != 0)
    throw std::invalid_argument(cat(
        "--image-size: the U-Net halves the images ", u.levels() - 1, " times (--channel-mults ",
        mults, " has ", u.levels(), " levels), so the image size must be a multiple of ", div,
        "; the images are ", u.image_size, "x", u.image_size, " (", where,
        "). Use an image size that is a multiple of ", div, ", or fewer --channel-mults"));
  for (const std::size_t r : u.attention_resolutions) {
    bool found = false;
    for (std::size_t i = 0; i < u.levels(); ++i) found = found || (u.image_size >> i) == r;
    if (!found)
      throw std::invalid_argument(cat(
          "--attn-res ", r, ": no U-Net level has size ", r, "x", r, ". The images are ",
          u.image_size, "x", u.image_size, " (", where, ") and --channel-mults ", mults,
          " gives levels of ", level_sizes(u), " pixels; pass --attn-res with sizes from that list (e.g. --attn-res ",
          default_attention(u), ")"));
  }
  if (u.base_channels % u.groups != 0)
    throw std::invalid_argument(cat("--groups ", u.groups, " must divide --base-channels ",
                                    u.base_channels));
  for (std::size_t i = 0; i < u.levels(); ++i)
    if (u.level_channels(i) % u.groups != 0)
      throw std::invalid_argument(cat("--groups ", u.groups, " must divide the channels of every level (",
                                      "--base-channels ", u.base_channels, " x --channel-mults ", mults,
                                      "); level ", i, " has ", u.level_channels(i)));
}

}  // namespace anime
