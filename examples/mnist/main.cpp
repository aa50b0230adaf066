// examples/mnist — class-conditional DDPM on MNIST-format digits, on the SIMD CPU backend (or
// CUDA with --backend cuda, in builds with nvcc).
//
//   mnist train                       # 10 minutes on the digits bundled in data/mnist10k
//   mnist train --data DIR --minutes 30 --schedule linear --target x0 --loss huber
//   mnist sample --checkpoint runs/mnist/checkpoint.safetensors --sampler dpmpp-2m --steps 15
//   mnist img2img --checkpoint ... --strength 0.6 --label 3    # digits of the test split made 3s
//   mnist inpaint --checkpoint ... --keep top --jumps 2        # complete the bottom halves
//   mnist interpolate --checkpoint ... --seed-a 1 --seed-b 2   # slerp between two noises, per class
//   mpirun -np 2 mnist --threads 1 train --batch 64   # data-parallel, builds with MPI (docs/distributed.md)
//
// `train` writes into --out: loss.csv, loss.png, checkpoint.safetensors, samples/ during training,
// and at the end the `sample` outputs: grid.png (one row per class), denoise.gif, intermediates/.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>

#include <oneapi/tbb/global_control.h>

#include <ddpm/backend/cpu.hpp>
#include <ddpm/ddpm.hpp>
#include <ddpm/io/idx.hpp>
#include <ddpm/train/distributed.hpp>
#include <ddpm/train/trainer.hpp>
#if defined(DDPM_EXAMPLE_HAVE_MPI)
#include <ddpm/train/mpi.hpp>
#endif
#if defined(DDPM_EXAMPLE_HAVE_CUDA)
#include <ddpm/backend/cuda.hpp>
#endif

#include "../common/model_options.hpp"
#include "../common/outputs.hpp"
#include "../common/sampling_options.hpp"
#include "../common/training_eval.hpp"

#ifndef DDPM_EXAMPLE_DATA_DIR
#define DDPM_EXAMPLE_DATA_DIR "data/mnist10k"
#endif

namespace fs = std::filesystem;
using Backend = ddpm::backend::Cpu;

// Default sampler: DPM-Solver++ 2M, 15 steps, measured on one checkpoint of a 10-minute
// `mnist train` (docs/evaluation.md#samplers): the quality of ancestral respaced to 100 steps
// (the former default) with 15 network evaluations per image instead of 100. `--sampler
// ancestral --steps 100` gives the former default back.
// Default guidance 2 (was 3), from the guidance ablation on the main job's checkpoint
// (docs/evaluation.md#guidance): class accuracy 1.00 on two sample seeds, Frechet distance 0.35
// and 0.41 inside the real-vs-real range 0.44 +- 0.10 (w = 3: 0.59, 0.58, outside), ink 13-17 %
// above real digits (w = 3: 22-25 %). w = 1.5 is more varied still (FD 0.30, ink +7-10 %) at
// accuracy 0.985-0.995.
struct SampleArgs {
  examples::SamplerArgs s{"dpmpp-2m", 15, 2.0};
  bool raw_weights = false;
  std::size_t per_class = 10;
  std::size_t record_every = 3;
  bool zero_init = false, no_step_noise = false;

  void add_options(CLI::App& app, bool steps_alias = false) {
    s.add_options(app, steps_alias, true);
    app.add_flag("--raw-weights", raw_weights, "sample with the raw weights instead of the EMA");
    app.add_option("--per-class", per_class, "samples per class (one grid row per class)")->capture_default_str();
    app.add_option("--record-every", record_every, "keep x_t every k steps for the GIF (0 = none)")->capture_default_str();
    app.add_flag("--zero-init", zero_init, "ablation: start from x_T = 0");
    app.add_flag("--no-step-noise", no_step_noise, "ablation: no noise between steps");
  }
  [[nodiscard]] ddpm::SamplerSpec spec() const { return s.spec(); }
};

template <class B>
static void sample_and_write(ddpm::Model<float, B>& model, const SampleArgs& a, const fs::path& out,
                             std::size_t classes) {
  ddpm::SampleOptions o;
  a.s.apply(o);
  o.zero_init = a.zero_init;
  o.no_step_noise = a.no_step_noise;
  o.record_every = a.record_every;
  o.batch = 100;
  std::size_t cols = 10;
  if (classes > 0) {
    for (std::size_t c = 0; c < classes; ++c)
      for (std::size_t j = 0; j < a.per_class; ++j) o.labels.push_back(std::int32_t(c));
    o.num_samples = o.labels.size();
    o.guidance = a.s.guidance;
    cols = a.per_class;
  } else {
    o.num_samples = 100;
  }
  const bool tty = ::isatty(2);
  o.progress = [tty](std::size_t done, std::size_t total) {
    if (tty) std::fprintf(stderr, "\rsampling %zu/%zu", done, total);
    else if (done % 100 == 0 || done == total) std::fprintf(stderr, "sampling %zu/%zu\n", done, total);
  };
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = model.sample(a.spec(), o);
  if (tty) std::fputc('\n', stderr);
  std::printf("sampled %zu images with %s (%zu network evaluations each) in %.1f s\n", o.num_samples,
              std::visit([](const auto& x) { return x.describe(); }, a.spec()).c_str(), r.evaluations,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  examples::write_sample_outputs(out, r, cols, 2, a.record_every > 0);
}

int main(int argc, char** argv) try {
  CLI::App app{"Class-conditional DDPM on MNIST-format digits (ddpm, SIMD CPU backend)"};
  app.require_subcommand(1);
  int threads = 0;
  app.add_option("--threads", threads, "worker threads (0 = all cores)")->capture_default_str();
  std::string backend = "cpu";
  app.add_option("--backend", backend, "cpu, or cuda (GPU 0; builds with nvcc)")
      ->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();

  // ---- train
  auto* train = app.add_subcommand("train", "train, then sample a grid, a GIF and intermediates");
  examples::ModelOptions mo;
  mo.unet = ddpm::nn::UNetConfig::mnist();
  // x0 prediction: on the README's 10-minute run (700 steps) it gave 100/100 clean digits of the
  // requested class (ddpm-eval accuracy 1.00, FD 0.84 against a real-data baseline of 0.87),
  // epsilon 99% but a quarter on grey, blotchy backgrounds (FD 0.99); scripts/ablation.py shows
  // the same at 250 steps. --target epsilon or v for the others.
  mo.target = "x0";
  mo.add_options(*train);
  std::string data_dir = DDPM_EXAMPLE_DATA_DIR, out_dir = "runs/mnist", resume;
  ddpm::TrainConfig tc;
  tc.adam.lr = 1e-3;
  tc.lr_warmup = 200;
  tc.minutes = 10;
  tc.checkpoint_every = 500;
  tc.sample_every = 0;
  std::uint64_t max_steps = 0;
  double epochs = 0, minutes = 10;
  bool fresh = false;
  train->add_option("--data", data_dir, "MNIST-format folder (train-images-idx3-ubyte[.gz], train-labels-...)")
      ->capture_default_str();
  train->add_option("--out", out_dir, "output folder")->capture_default_str();
  train->add_option("--minutes", minutes, "time budget (0 = none)")->capture_default_str();
  train->add_option("--steps", max_steps, "total steps (0 = none)")->capture_default_str();
  train->add_option("--epochs", epochs, "epochs (0 = none)")->capture_default_str();
  train->add_option("--batch", tc.batch_size, "batch size")->capture_default_str();
  train->add_option("--micro-batches", tc.micro_batches,
                    "gradient accumulation: forward/backward passes per step (per rank under mpirun)")
      ->capture_default_str();
  train->add_option("--lr", tc.adam.lr, "Adam learning rate")->capture_default_str();
  train->add_option("--lr-warmup", tc.lr_warmup, "linear warm-up steps")->capture_default_str();
  train->add_option("--grad-clip", tc.grad_clip, "max gradient norm (0 = off)")->capture_default_str();
  train->add_option("--ema-decay", tc.ema.decay, "EMA decay")->capture_default_str();
  train->add_option("--p-uncond", tc.p_uncond, "label drop probability (CFG)")->capture_default_str();
  train->add_option("--checkpoint-every", tc.checkpoint_every, "checkpoint every N steps")->capture_default_str();
  train->add_option("--sample-every", tc.sample_every, "sample grid every N steps (0 = off)")->capture_default_str();
  train->add_option("--resume", resume, "continue from this checkpoint (default: <out>/checkpoint.safetensors if it exists)");
  train->add_flag("--fresh", fresh, "ignore an existing checkpoint in --out and start over");
  SampleArgs sa;
  sa.add_options(*train);
  examples::TrainingEvalArgs ea;  // --eval-every, --classifier, --eval-per-class, --eval-steps
  ea.add_options(*train);

  // ---- sample
  auto* sample = app.add_subcommand("sample", "sample from a checkpoint (EMA weights by default)");
  std::string ckpt, sample_out;
  sample->add_option("--checkpoint", ckpt, "checkpoint written by `mnist train`")->required()->check(CLI::ExistingFile);
  sample->add_option("--out", sample_out, "output folder (default: next to the checkpoint)");
  SampleArgs sb;
  sb.add_options(*sample, /*steps_alias=*/true);

  // ---- editing: img2img, inpaint, interpolate
  auto* i2i = app.add_subcommand("img2img", "SDEdit: noise digits to --strength, then denoise (optionally as another --label)");
  auto* inp = app.add_subcommand("inpaint", "keep part of each digit (--keep top|bottom|left|right|center|border or --mask PNG), generate the rest");
  auto* itp = app.add_subcommand("interpolate", "slerp between the starting noises of two seeds: one strip per class");
  examples::SamplerArgs se{"dpmpp-2m", 20, 3.0};
  examples::EditArgs ed;
  std::string edit_ckpt, edit_out;
  bool edit_raw = false;
  for (auto* c : {i2i, inp, itp}) {
    c->add_option("--checkpoint", edit_ckpt, "checkpoint written by `mnist train`")->required()->check(CLI::ExistingFile);
    c->add_option("--out", edit_out, "output folder (default: next to the checkpoint)");
    c->add_flag("--raw-weights", edit_raw, "use the raw weights instead of the EMA");
    se.add_options(*c, /*steps_alias=*/true, /*with_guidance=*/true);
    ed.add_label(*c);
  }
  for (auto* c : {i2i, inp}) ed.add_inputs(*c, DDPM_EXAMPLE_DATA_DIR);
  i2i->add_option("--strength", ed.strength, "0 = return the input, 1 = sample from scratch")->capture_default_str();
  inp->add_option("--keep", ed.keep, "known region: top, bottom, left, right, center or border")->capture_default_str();
  inp->add_option("--mask", ed.mask_file, "or: a mask image, white = known (resized to 28x28)")->check(CLI::ExistingFile);
  inp->add_option("--jumps", ed.jumps, "RePaint resamplings per step (ancestral, ddim, euler, heun)")->capture_default_str();
  itp->add_option("--seed-a", ed.seed_a, "seed of the first starting noise")->capture_default_str();
  itp->add_option("--seed-b", ed.seed_b, "seed of the last starting noise")->capture_default_str();
  itp->add_option("--frames", ed.frames, "images per strip")->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  // Started by mpirun/srun: data-parallel training over MPI, rank 0 writes every output.
#if defined(DDPM_EXAMPLE_HAVE_MPI)
  std::optional<ddpm::dist::MpiSession> mpi;
  if (ddpm::dist::launched_by_mpi()) mpi.emplace(argc, argv);
  std::unique_ptr<ddpm::dist::Communicator> comm;
  if (mpi) comm = std::make_unique<ddpm::dist::MpiCommunicator>();
  else comm = std::make_unique<ddpm::dist::LocalCommunicator>();
#else
  auto comm = std::make_unique<ddpm::dist::LocalCommunicator>();
#endif
  const bool root = comm->rank() == 0;
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
      const auto data = ddpm::io::load_mnist_dir(data_dir, "train");
      mo.unet.in_channels = data.c;
      mo.unet.image_size = data.h;
      std::size_t classes = 0;
      for (auto y : data.labels) classes = std::max<std::size_t>(classes, std::size_t(y) + 1);
      mo.unet.num_classes = std::max<std::size_t>(classes, 1);
      if (root)
        std::printf("data: %zu images %zux%zux%zu, %zu classes, from %s\n", data.n, data.c, data.h, data.w,
                    mo.unet.num_classes, data_dir.c_str());
      auto model = examples::make_model(mo, be);
      if (root)
        std::printf("model: %s, %s, %s, T=%zu, %zu parameters, %s%s\n", mo.schedule.c_str(), mo.target.c_str(),
                    mo.loss.c_str(), mo.timesteps, model->net().num_parameters(), threads_of(be).c_str(),
                    comm->size() > 1 ? (", " + std::to_string(comm->size()) + " ranks").c_str() : "");
      tc.max_steps = max_steps;
      tc.epochs = epochs;
      tc.minutes = minutes;
      tc.out_dir = out_dir;
      tc.checkpoint_metadata = mo.to_metadata();
      tc.sample_sampler = sa.spec();
      tc.sample_guidance = sa.s.guidance;
      std::unique_ptr<examples::TrainingEval<B>> eval;  // scores EMA samples every --eval-every steps
      if (ea.every > 0 && root) {
        eval = std::make_unique<examples::TrainingEval<B>>(
            ea, *model, data_dir, data, sa.s.guidance, cpu,
            fs::path(DDPM_EXAMPLE_DATA_DIR).parent_path() / "classifiers" / "mnist_classifier.safetensors");
        tc.on_step = eval->hook();
      }
      ddpm::dist::DistributedTrainer<float, B> dtrainer(*comm, *model, tc);  // one rank: Trainer
      auto& trainer = dtrainer.trainer();
      const fs::path default_ck = fs::path(out_dir) / "checkpoint.safetensors";
      if (resume.empty() && !fresh && fs::exists(default_ck)) resume = default_ck.string();
      if (!resume.empty()) {
        const auto ck = dtrainer.resume(resume);
        if (root) std::printf("resumed from %s at step %llu\n", resume.c_str(), (unsigned long long)ck.counters.step);
      }
      if (eval) eval->start(trainer, out_dir);
      const auto s = dtrainer.fit(data);
      if (!root) return s.interrupted ? 130 : 0;
      std::printf("trained steps %llu..%llu in %.0f s: %.1f img/s, loss %.4f (avg of last 100: %.4f)%s\n",
                  (unsigned long long)s.first_step, (unsigned long long)s.last_step, s.seconds, s.images_per_second,
                  s.final_loss, s.loss_avg100, s.interrupted ? " [interrupted]" : "");
      if (s.interrupted) return 130;
      if (trainer.ema()) trainer.ema()->swap();  // sample with the EMA weights
      sample_and_write(*model, sa, out_dir, mo.unet.num_classes);
      std::printf("wrote %s/loss.png and %s/loss.csv\n", out_dir.c_str(), out_dir.c_str());
      return 0;
    }
    if (*i2i || *inp || *itp) {
      const auto meta = ddpm::io::SafeTensorsFile::load(edit_ckpt).metadata();
      const auto opts = examples::ModelOptions::from_metadata(meta, edit_ckpt);
      auto model = examples::make_model(opts, be);
      ddpm::load_checkpoint(edit_ckpt, *model, nullptr, nullptr, !edit_raw);
      const std::size_t classes = opts.unet.num_classes, size = opts.unet.image_size, c = opts.unet.in_channels;
      const fs::path out = edit_out.empty() ? fs::path(edit_ckpt).parent_path() / (*i2i ? "img2img" : *inp ? "inpaint" : "interpolate")
                                            : fs::path(edit_out);
      ddpm::SampleOptions o;
      se.apply(o);
      if (classes > 0) o.guidance = se.guidance;
      const auto t0 = std::chrono::steady_clock::now();
      auto done = [&](const char* what, std::size_t n) {
        std::printf("%s: %zu images with %s in %.1f s\n", what, n,
                    std::visit([](const auto& x) { return x.describe(); }, se.spec()).c_str(),
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      };
      if (*itp) {
        std::vector<float> all;
        std::vector<std::int32_t> rows;
        if (classes == 0) rows.push_back(-1);
        else if (ed.label >= 0) rows.push_back(ed.label);
        else for (std::size_t k = 0; k < std::min<std::size_t>(classes, 10); ++k) rows.push_back(std::int32_t(k));
        o.num_samples = ed.frames;
        for (std::int32_t y : rows) {
          o.labels = y >= 0 ? std::vector<std::int32_t>(ed.frames, y) : std::vector<std::int32_t>{};
          const auto r = model->interpolate(se.spec(), ed.seed_a, ed.seed_b, o);
          all.insert(all.end(), r.images.begin(), r.images.end());
        }
        done("interpolate", all.size() / (c * size * size));
        fs::create_directories(out);
        ddpm::io::write_png_grid(out / "strip.png", all, rows.size() * ed.frames, c, size, size, ed.frames, 2, 1.0f, 2);
        std::printf("wrote %s (one row per class, seed %llu to seed %llu)\n", (out / "strip.png").c_str(),
                    (unsigned long long)ed.seed_a, (unsigned long long)ed.seed_b);
        return 0;
      }
      const auto in = examples::load_edit_inputs(ed, c, size);
      o.num_samples = in.n;
      o.labels = examples::edit_labels(ed, in, classes);
      examples::run_image_edit(*model, se.spec(), bool(*i2i), ed, in, o, out, c, size, 2, done);
      return 0;
    }
    // sample
    const auto meta = ddpm::io::SafeTensorsFile::load(ckpt).metadata();
    const auto opts = examples::ModelOptions::from_metadata(meta, ckpt);
    auto model = examples::make_model(opts, be);
    ddpm::load_checkpoint(ckpt, *model, nullptr, nullptr, /*ema_into_weights=*/!sb.raw_weights);
    sample_and_write(*model, sb, sample_out.empty() ? fs::path(ckpt).parent_path() / "sample" : fs::path(sample_out),
                     opts.unet.num_classes);
    return 0;
  };
  try {
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
    if (comm->size() == 1) throw;
    std::fprintf(stderr, "mnist: rank %d: error: %s\n", comm->rank(), e.what());
    comm->abort(1, "mnist: stopping every rank");
  }
} catch (const std::exception& e) {
  std::fprintf(stderr, "mnist: error: %s\n", e.what());
  return 1;
}
