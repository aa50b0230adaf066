// examples/anime_faces — unconditional RGB DDPM (32x32 by default) from images you supply.
//
//   anime_faces train --data DIR [--minutes 60]          # PNG/JPEG/... files, resized to 32x32
//   anime_faces train --idx FILE.idx4 [--image-size 64]  # or an IDX file (N, H, W, 3)
//   anime_faces sample --checkpoint runs/anime/checkpoint.safetensors --sampler dpmpp-2m --steps 20
//   anime_faces img2img --checkpoint ... --input a.png b.png --strength 0.5
//   anime_faces inpaint --checkpoint ... --input a.png --keep left --jumps 2
//   anime_faces interpolate --checkpoint ... --seed-a 1 --seed-b 2 --frames 8
//
// Writes into --out: loss.csv, loss.png, checkpoint.safetensors, and a 5x5 grid.png and
// denoise.gif after training (and from `sample`). CPU backend, or CUDA with --backend cuda (builds
// with nvcc).
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <type_traits>

#include <oneapi/tbb/global_control.h>

#include <ddpm/backend/cpu.hpp>
#include <ddpm/ddpm.hpp>
#include <ddpm/io/idx.hpp>
#include <ddpm/io/image.hpp>
#include <ddpm/train/trainer.hpp>
#if defined(DDPM_EXAMPLE_HAVE_CUDA)
#include <ddpm/backend/cuda.hpp>
#endif

#include "../common/model_options.hpp"
#include "../common/outputs.hpp"
#include "../common/sampling_options.hpp"
#include "train_data.hpp"
#if defined(DDPM_ANIME_HAVE_EVAL)
#include "rgb_eval.hpp"
#endif

namespace fs = std::filesystem;
using Backend = ddpm::backend::Cpu;

struct SampleArgs {
  examples::SamplerArgs s{"ddim", 100, 1.0};
  std::size_t count = 25, record_every = 10;
  bool raw_weights = false;
  void add_options(CLI::App& app, bool steps_alias = false) {
    s.add_options(app, steps_alias, /*with_guidance=*/false);
    app.add_option("--count", count, "images to sample (a square grid)")->capture_default_str();
    app.add_option("--record-every", record_every, "GIF frame every k steps (0 = no GIF)")->capture_default_str();
    app.add_flag("--raw-weights", raw_weights, "sample with the raw weights instead of the EMA");
  }
};

template <class B>
static void sample_and_write(ddpm::Model<float, B>& model, const SampleArgs& a, const fs::path& out) {
  ddpm::SampleOptions o;
  o.num_samples = a.count;
  a.s.apply(o);
  o.record_every = a.record_every;
  o.batch = 25;
  const bool tty = ::isatty(2);
  o.progress = [tty](std::size_t d, std::size_t n) {
    if (tty) std::fprintf(stderr, "\rsampling %zu/%zu", d, n);
    else if (d % 20 == 0 || d == n) std::fprintf(stderr, "sampling %zu/%zu\n", d, n);
  };
  const ddpm::SamplerSpec spec = a.s.spec();
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = model.sample(spec, o);
  if (tty) std::fputc('\n', stderr);
  std::printf("sampled %zu images with %s in %.1f s\n", a.count,
              std::visit([](const auto& x) { return x.describe(); }, spec).c_str(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  const auto cols = std::size_t(std::ceil(std::sqrt(double(a.count))));
  // 32x32 faces are small on screen: their grid and GIF are drawn twice as large
  examples::write_sample_outputs(out, r, cols, r.shape[2] <= 32 ? 2 : 1, false);
}

int main(int argc, char** argv) try {
  CLI::App app{"Unconditional RGB DDPM (32x32 by default) from a folder of images (ddpm, SIMD CPU backend)"};
  app.require_subcommand(1);
  int threads = 0;
  app.add_option("--threads", threads, "worker threads (0 = all cores)")->capture_default_str();
  std::string backend = "cpu";
  app.add_option("--backend", backend, "cpu, or cuda (GPU 0; builds with nvcc)")
      ->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();

  auto* train = app.add_subcommand("train", "train, then sample a 5x5 grid and a GIF");
  examples::ModelOptions mo;
  // The CPU recipe (README "Anime faces"): 32x32, anime::cpu_recipe_unet(), T = 200, v target.
  // The U-Net defaults follow --image-size (recipe_unet: UNetConfig::anime64 above 32x32).
  mo.unet = anime::cpu_recipe_unet();
  mo.timesteps = 200;
  mo.target = "v";
  mo.add_options(*train);
  std::string data_dir, idx_file, out_dir = "runs/anime", resume;
  std::size_t image_size = 32, max_images = 0;
  bool no_crop = false, fresh = false;
  ddpm::TrainConfig tc;
  tc.adam.lr = 1e-3;  // with batch 32: the best of the 6-minute trials (docs/anime.md)
  tc.batch_size = 32;
  tc.lr_warmup = 100;
  tc.hflip = true;
  tc.checkpoint_every = 100;
  std::uint64_t max_steps = 0;
  double minutes = 60, epochs = 0;
  train->add_option("--data", data_dir, "folder of images (PNG, JPEG, BMP, ...)")->check(CLI::ExistingDirectory);
  train->add_option("--idx", idx_file, "or: an IDX file of N x H x W x 3 images")->check(CLI::ExistingFile);
  train->add_option("--image-size", image_size,
                    "images are centre-cropped and resized to this; above 32 the U-Net defaults are "
                    "UNetConfig::anime64 (17 M parameters, for a GPU)")->capture_default_str();
  train->add_option("--max-images", max_images, "use at most this many images (0 = all)")->capture_default_str();
  train->add_flag("--no-crop", no_crop, "squash instead of centre-cropping non-square images");
  train->add_option("--out", out_dir, "output folder")->capture_default_str();
  train->add_option("--minutes", minutes, "time budget (0 = none)")->capture_default_str();
  train->add_option("--steps", max_steps, "total steps (0 = none)")->capture_default_str();
  train->add_option("--epochs", epochs, "epochs (0 = none)")->capture_default_str();
  train->add_option("--batch", tc.batch_size, "batch size")->capture_default_str();
  train->add_option("--lr", tc.adam.lr, "Adam learning rate")->capture_default_str();
  train->add_option("--lr-warmup", tc.lr_warmup, "linear warm-up steps")->capture_default_str();
  train->add_option("--ema-decay", tc.ema.decay, "EMA decay")->capture_default_str();
  train->add_option("--checkpoint-every", tc.checkpoint_every, "checkpoint every N steps")->capture_default_str();
  train->add_option("--sample-every", tc.sample_every, "sample grid every N steps (0 = off)")->capture_default_str();
  train->add_option("--resume", resume, "continue from this checkpoint (default: <out>/checkpoint.safetensors if present)");
  train->add_flag("--fresh", fresh, "ignore an existing checkpoint in --out");
  bool no_flip = false;
  train->add_flag("--no-hflip", no_flip, "no random horizontal flips");
  SampleArgs sa;
  sa.add_options(*train);
#if defined(DDPM_ANIME_HAVE_EVAL)
  anime::RgbEvalArgs eval_args;
  eval_args.add_options(*train);
#endif

  auto* sample = app.add_subcommand("sample", "sample from a checkpoint (EMA weights by default)");
  std::string ckpt, sample_out;
  sample->add_option("--checkpoint", ckpt, "checkpoint written by `anime_faces train`")->required()->check(CLI::ExistingFile);
  sample->add_option("--out", sample_out, "output folder (default: next to the checkpoint)");
  SampleArgs sb;
  sb.add_options(*sample, /*steps_alias=*/true);

  auto* i2i = app.add_subcommand("img2img", "SDEdit: noise the --input images to --strength, then denoise");
  auto* inp = app.add_subcommand("inpaint", "keep part of each --input image (--keep or --mask), generate the rest");
  auto* itp = app.add_subcommand("interpolate", "slerp between the starting noises of two seeds, as a strip");
  examples::SamplerArgs se{"ddim", 50, 1.0};
  examples::EditArgs ed;
  ed.count = 5;
  std::string edit_ckpt, edit_out;
  bool edit_raw = false;
  for (auto* c : {i2i, inp, itp}) {
    c->add_option("--checkpoint", edit_ckpt, "checkpoint written by `anime_faces train`")->required()->check(CLI::ExistingFile);
    c->add_option("--out", edit_out, "output folder (default: next to the checkpoint)");
    c->add_flag("--raw-weights", edit_raw, "use the raw weights instead of the EMA");
    se.add_options(*c, /*steps_alias=*/true, /*with_guidance=*/false);
  }
  for (auto* c : {i2i, inp}) {
    c->add_option("--input", ed.inputs, "image files to edit (centre-cropped, resized to the model's size)")->required();
  }
  i2i->add_option("--strength", ed.strength, "0 = return the input, 1 = sample from scratch")->capture_default_str();
  inp->add_option("--keep", ed.keep, "known region: top, bottom, left, right, center or border")->capture_default_str();
  inp->add_option("--mask", ed.mask_file, "or: a mask image, white = known")->check(CLI::ExistingFile);
  inp->add_option("--jumps", ed.jumps, "RePaint resamplings per step (ancestral, ddim, euler, heun)")->capture_default_str();
  itp->add_option("--seed-a", ed.seed_a, "seed of the first starting noise")->capture_default_str();
  itp->add_option("--seed-b", ed.seed_b, "seed of the last starting noise")->capture_default_str();
  itp->add_option("--frames", ed.frames, "images in the strip")->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  Backend cpu(threads);
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, std::size_t(cpu.threads()));
  auto threads_of = [&](const auto& be) {
    if constexpr (std::is_same_v<std::remove_cvref_t<decltype(be)>, Backend>)
      return std::to_string(be.threads()) + " threads";
    else
      return std::string("CUDA device ") + std::to_string(be.device());
  };
  // The rest runs on the chosen backend (one instantiation per backend).
  auto run = [&](auto& be) -> int {
    using B = std::remove_cvref_t<decltype(be)>;

    if (*train) {
      anime::DataArgs da{data_dir, idx_file, image_size, /*image_size_given=*/true, max_images, !no_crop};
      ddpm::io::ImageDataset data = anime::load_training_images(da);
      mo.unet = anime::recipe_unet(data.h, mo.unet, [&](const char* name) { return train->count(name) > 0; });
      anime::check_unet_options(mo.unet, "--image-size " + std::to_string(data.h));
      std::printf("data: %zu images %zux%zux%zu\n", data.n, data.c, data.h, data.w);
      auto model = examples::make_model(mo, be);
      std::printf("model: %s, %s, %s, T=%zu, %zu parameters, %s\n", mo.schedule.c_str(), mo.target.c_str(),
                  mo.loss.c_str(), mo.timesteps, model->net().num_parameters(), threads_of(be).c_str());
      tc.max_steps = max_steps;
      tc.minutes = minutes;
      tc.epochs = epochs;
      tc.out_dir = out_dir;
      tc.hflip = !no_flip;
      tc.sample_count = 16;
      tc.checkpoint_metadata = mo.to_metadata();
#if defined(DDPM_ANIME_HAVE_EVAL)
      std::optional<anime::RgbTrainingEval<B>> rgb_eval;
      if (eval_args.every > 0) {
        rgb_eval.emplace(eval_args, *model, data, cpu);
        tc.on_step = rgb_eval->hook();
      }
#endif
      ddpm::Trainer<float, B> trainer(*model, tc);
      const fs::path default_ck = fs::path(out_dir) / "checkpoint.safetensors";
      if (resume.empty() && !fresh && fs::exists(default_ck)) resume = default_ck.string();
      if (!resume.empty()) {
        const auto ck = trainer.resume(resume);
        std::printf("resumed from %s at step %llu\n", resume.c_str(), (unsigned long long)ck.counters.step);
      }
#if defined(DDPM_ANIME_HAVE_EVAL)
      if (rgb_eval) rgb_eval->start(trainer, out_dir);
#endif
      const auto s = trainer.fit(data);
      std::printf("trained steps %llu..%llu in %.0f s: %.2f img/s, loss %.4f (avg of last 100: %.4f)%s\n",
                  (unsigned long long)s.first_step, (unsigned long long)s.last_step, s.seconds, s.images_per_second,
                  s.final_loss, s.loss_avg100, s.interrupted ? " [interrupted]" : "");
      if (s.interrupted) return 130;
      if (trainer.ema()) trainer.ema()->swap();
      SampleArgs gif = sa;
      sample_and_write(*model, gif, out_dir);
      return 0;
    }
    if (*i2i || *inp || *itp) {
      const auto meta = ddpm::io::SafeTensorsFile::load(edit_ckpt).metadata();
      const auto opts = examples::ModelOptions::from_metadata(meta, edit_ckpt);
      auto model = examples::make_model(opts, be);
      ddpm::load_checkpoint(edit_ckpt, *model, nullptr, nullptr, !edit_raw);
      const std::size_t size = opts.unet.image_size, c = opts.unet.in_channels;
      const fs::path out = edit_out.empty() ? fs::path(edit_ckpt).parent_path() / (*i2i ? "img2img" : *inp ? "inpaint" : "interpolate")
                                            : fs::path(edit_out);
      ddpm::SampleOptions o;
      se.apply(o);
      const auto t0 = std::chrono::steady_clock::now();
      auto done = [&](const char* what, std::size_t n) {
        std::printf("%s: %zu images with %s in %.1f s\n", what, n,
                    std::visit([](const auto& x) { return x.describe(); }, se.spec()).c_str(),
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      };
      if (*itp) {
        o.num_samples = ed.frames;
        const auto r = model->interpolate(se.spec(), ed.seed_a, ed.seed_b, o);
        done("interpolate", ed.frames);
        examples::write_rows(out / "strip.png", {&r.images}, ed.frames, c, size, 1);
        return 0;
      }
      const auto in = examples::load_edit_inputs(ed, c, size);
      o.num_samples = in.n;
      examples::run_image_edit(*model, se.spec(), bool(*i2i), ed, in, o, out, c, size, 1, done);
      return 0;
    }
    const auto meta = ddpm::io::SafeTensorsFile::load(ckpt).metadata();
    const auto opts = examples::ModelOptions::from_metadata(meta, ckpt);
    auto model = examples::make_model(opts, be);
    ddpm::load_checkpoint(ckpt, *model, nullptr, nullptr, !sb.raw_weights);
    sample_and_write(*model, sb, sample_out.empty() ? fs::path(ckpt).parent_path() / "sample" : fs::path(sample_out));
    return 0;
  };
  if (backend == "cuda") {
#if defined(DDPM_EXAMPLE_HAVE_CUDA)
    ddpm::backend::Cuda gpu;
    return run(gpu);
#else
    throw std::invalid_argument("--backend cuda: this build has no CUDA backend (configure with nvcc and -DDDPM_ENABLE_CUDA=ON)");
#endif
  }
  return run(cpu);
} catch (const std::exception& e) {
  std::fprintf(stderr, "anime_faces: error: %s\n", e.what());
  return 1;
}
