// examples/common/sampling_options.hpp — the sampling and editing options the examples share:
// sampler, steps, spacing, guidance, clipping on the command line, and the inputs, masks and
// strips of img2img / inpaint / interpolate.
#pragma once

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <ddpm/diffusion/diffusion.hpp>
#include <ddpm/diffusion/sampler/spec.hpp>
#include <ddpm/io/idx.hpp>
#include <ddpm/io/image.hpp>
#include <ddpm/io/png.hpp>

namespace examples {

/// --sampler, --steps (or --sample-steps), --spacing, --eta, --guidance, --guidance-interval, --no-clip,
/// --dynamic-threshold, --sample-seed.
struct SamplerArgs {
  std::string sampler;
  std::size_t steps;
  std::string spacing;  // empty: the sampler's default
  double eta = 0.0;
  double guidance = 1.0;
  std::vector<double> guidance_interval{0.0, 1.0};  // guidance only where lo <= t / T <= hi
  bool no_clip = false;
  double dynamic_threshold = 0.0;
  std::uint64_t seed = 7;

  SamplerArgs(std::string default_sampler, std::size_t default_steps, double default_guidance)
      : sampler(std::move(default_sampler)), steps(default_steps), guidance(default_guidance) {}

  /// `steps_alias`: also accept --steps (not on `train`, where --steps counts training steps).
  void add_options(CLI::App& app, bool steps_alias, bool with_guidance) {
    app.add_option("--sampler", sampler,
                   "ancestral (DDPM), ddim, dpmpp-2m, dpmpp-2m-sde, euler, heun or unipc")
        ->check(CLI::IsMember({"ancestral", "ddim", "dpmpp-2m", "dpmpp-2m-sde", "euler", "heun", "unipc"}))
        ->capture_default_str();
    app.add_option(steps_alias ? "--steps,--sample-steps" : "--sample-steps", steps,
                   "sampling steps (ancestral: 0 = all T; heun: 2 steps - 1 network calls)")
        ->capture_default_str();
    app.add_option("--spacing", spacing,
                   "timestep spacing: linspace, leading, trailing or karras (default: the sampler's)")
        ->check(CLI::IsMember({"linspace", "leading", "trailing", "karras"}));
    app.add_option("--eta", eta, "DDIM eta (0 = deterministic)")->capture_default_str();
    if (with_guidance) {
      app.add_option("--guidance", guidance, "classifier-free guidance weight w (1 = off)")->capture_default_str();
      app.add_option("--guidance-interval", guidance_interval,
                     "LO,HI: guide only the steps with LO <= t/T <= HI (the others: w = 1, one network call)")
          ->delimiter(',')
          ->expected(2)
          ->check(CLI::Range(0.0, 1.0))
          ->capture_default_str();
    }
    app.add_flag("--no-clip", no_clip, "do not clip the predicted x0 to [-1, 1]");
    app.add_option("--dynamic-threshold", dynamic_threshold,
                   "Imagen dynamic thresholding percentile, e.g. 0.995 (0 = off)")->capture_default_str();
    app.add_option("--sample-seed", seed, "seed of the sampling noise")->capture_default_str();
  }
  [[nodiscard]] ddpm::SamplerSpec spec() const {
    return ddpm::sampler::make_sampler(sampler, steps, spacing, sampler == "ddim" ? eta : 0.0);
  }
  /// Options common to every sampling call (labels and counts are the caller's).
  void apply(ddpm::SampleOptions& o) const {
    o.seed = seed;
    o.guidance_interval = {guidance_interval.at(0), guidance_interval.at(1)};
    o.clip = !no_clip;
    o.dynamic_threshold = dynamic_threshold;
  }
};

/// Inputs and settings of img2img, inpaint and interpolate.
struct EditArgs {
  std::vector<std::string> inputs;  // image files; empty: the first --count images of --data
  std::string data_dir;
  std::size_t count = 10;
  int label = -1;          // class of the outputs (class-conditional models); -1: the input's own
  double strength = 0.6;   // img2img
  std::string keep = "top";  // inpaint: known region
  std::string mask_file;   // inpaint: or a mask image (white = known)
  std::size_t jumps = 0;   // inpaint: RePaint jumps
  std::uint64_t seed_a = 1, seed_b = 2;  // interpolate
  std::size_t frames = 10;               // interpolate

  void add_inputs(CLI::App& app, const std::string& default_data) {
    data_dir = default_data;
    app.add_option("--input", inputs, "image files to edit (resized to the model's size)");
    app.add_option("--data", data_dir, "or: take the first --count images of this data folder")->capture_default_str();
    app.add_option("--count", count, "images taken from --data")->capture_default_str();
  }
  void add_label(CLI::App& app) {
    app.add_option("--label", label, "class of the results (-1 = each input's own class)")->capture_default_str();
  }
};

/// Images in [-1, 1] (NCHW) with labels, from files or from an MNIST-format folder / IDX file.
struct EditInputs {
  std::vector<float> images;
  std::vector<std::int32_t> labels;
  std::size_t n = 0;
};

inline EditInputs load_edit_inputs(const EditArgs& a, std::size_t c, std::size_t size) {
  EditInputs r;
  auto push = [&](const std::uint8_t* px) {
    for (std::size_t i = 0; i < c * size * size; ++i) r.images.push_back(float(px[i]) / 127.5f - 1.0f);
    ++r.n;
  };
  if (!a.inputs.empty()) {
    for (const auto& f : a.inputs) {
      auto img = ddpm::io::read_image(f, c);
      if (img.h != img.w) img = ddpm::io::center_crop_square(img);
      if (img.h != size) img = ddpm::io::resize_area_or_bilinear(img, size, size);
      std::vector<std::uint8_t> chw(c * size * size);
      for (std::size_t ch = 0; ch < c; ++ch)
        for (std::size_t p = 0; p < size * size; ++p) chw[ch * size * size + p] = img.px[p * c + ch];
      push(chw.data());
      r.labels.push_back(-1);
    }
    return r;
  }
  const std::filesystem::path p(a.data_dir);
  ddpm::io::ImageDataset d = std::filesystem::is_directory(p) && std::filesystem::exists(p / "t10k-images-idx3-ubyte.gz")
                                 ? ddpm::io::load_mnist_dir(p, "t10k")
                                 : std::filesystem::is_directory(p) ? ddpm::io::load_mnist_dir(p, "train")
                                                                    : ddpm::io::load_idx_images(p);
  if (d.c != c || d.h != size || d.w != size)
    throw std::invalid_argument("--data: images are " + std::to_string(d.c) + "x" + std::to_string(d.h) + "x" +
                                std::to_string(d.w) + ", the model wants " + std::to_string(c) + "x" +
                                std::to_string(size) + "x" + std::to_string(size));
  const std::size_t item = c * size * size;
  for (std::size_t i = 0; i < std::min(a.count, d.n); ++i) {
    push(d.pixels.data() + i * item);
    r.labels.push_back(d.labels.empty() ? -1 : d.labels[i]);
  }
  return r;
}

/// Labels for an edit: --label for all, else the inputs' own (needed by class-conditional models).
inline std::vector<std::int32_t> edit_labels(const EditArgs& a, const EditInputs& in, std::size_t classes) {
  if (classes == 0) return {};
  std::vector<std::int32_t> y(in.n);
  for (std::size_t i = 0; i < in.n; ++i) {
    y[i] = a.label >= 0 ? a.label : in.labels[i];
    if (y[i] < 0 || std::size_t(y[i]) >= classes)
      throw std::invalid_argument("--label: the model is class-conditional (" + std::to_string(classes) +
                                  " classes); give --label 0.." + std::to_string(classes - 1) +
                                  " for inputs without a class");
  }
  return y;
}

/// The inpainting mask (H W, 1 = known): --keep top|bottom|left|right|center|border, or --mask FILE.
inline std::vector<float> make_mask(const EditArgs& a, std::size_t size) {
  std::vector<float> m(size * size, 0.0f);
  if (!a.mask_file.empty()) {
    auto img = ddpm::io::read_image(a.mask_file, 1);
    if (img.h != size || img.w != size) img = ddpm::io::resize_area_or_bilinear(img, size, size);
    for (std::size_t i = 0; i < m.size(); ++i) m[i] = img.px[i] >= 128 ? 1.0f : 0.0f;
    return m;
  }
  for (std::size_t y = 0; y < size; ++y)
    for (std::size_t x = 0; x < size; ++x) {
      const bool centre = y >= size / 4 && y < size - size / 4 && x >= size / 4 && x < size - size / 4;
      bool known = false;
      if (a.keep == "top") known = y < size / 2;
      else if (a.keep == "bottom") known = y >= size / 2;
      else if (a.keep == "left") known = x < size / 2;
      else if (a.keep == "right") known = x >= size / 2;
      else if (a.keep == "center") known = centre;
      else if (a.keep == "border") known = !centre;
      else throw std::invalid_argument("--keep: unknown region '" + a.keep + "' (top, bottom, left, right, center, border)");
      m[y * size + x] = known ? 1.0f : 0.0f;
    }
  return m;
}

/// Inputs with the unknown region greyed out (mask 0 -> 0.0), for the strips.
inline std::vector<float> masked_view(const std::vector<float>& images, const std::vector<float>& mask, std::size_t c) {
  std::vector<float> v = images;
  const std::size_t hw = mask.size(), item = c * hw;
  for (std::size_t i = 0; i < v.size(); ++i)
    if (mask[(i % item) % hw] == 0.0f) v[i] = 0.0f;
  return v;
}

/// Writes rows of n images each as one PNG (each row one block of `rows[r]`).
inline void write_rows(const std::filesystem::path& path, const std::vector<const std::vector<float>*>& rows,
                       std::size_t n, std::size_t c, std::size_t size, std::size_t upscale) {
  std::vector<float> all;
  for (const auto* r : rows) all.insert(all.end(), r->begin(), r->end());
  std::filesystem::create_directories(path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path());
  ddpm::io::write_png_grid(path, all, rows.size() * n, c, size, size, n, 2, 1.0f, upscale);
  std::printf("wrote %s\n", path.string().c_str());
}

/// The img2img (when `img2img`) or inpainting edit of `in` with `model`, written as a strip to
/// <out>/strip.png (rows: inputs and results; for inpainting also the known pixels). `done(what,
/// n)` reports the time. Shared by the mnist and anime_faces edit subcommands.
template <class Model, class Done>
void run_image_edit(Model& model, const ddpm::SamplerSpec& spec, bool img2img, const EditArgs& ed,
                    const EditInputs& in, const ddpm::SampleOptions& o,
                    const std::filesystem::path& out, std::size_t c, std::size_t size,
                    std::size_t upscale, Done&& done) {
  if (img2img) {
    const auto r = model.img2img(spec, in.images, ed.strength, o);
    done("img2img", in.n);
    write_rows(out / "strip.png", {&in.images, &r.images}, in.n, c, size, upscale);
    std::printf("rows: inputs, results (strength %.2f)\n", ed.strength);
  } else {
    const auto mask = make_mask(ed, size);
    const auto r = model.inpaint(spec, in.images, mask, {.jumps = ed.jumps}, o);
    done("inpaint", in.n);
    const auto shown = masked_view(in.images, mask, c);
    write_rows(out / "strip.png", {&in.images, &shown, &r.images}, in.n, c, size, upscale);
    std::printf("rows: inputs, known pixels, results\n");
  }
}

}  // namespace examples
