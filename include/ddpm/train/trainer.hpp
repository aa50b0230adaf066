// SPDX-License-Identifier: MIT
// ddpm/train/trainer.hpp — the training loop: seeded shuffling, batches, Adam with warm-up and
// gradient clipping, EMA, non-finite step guard, progress, loss CSV and plot, periodic sample
// grids, atomic checkpoints (every N steps, at the end, and on Ctrl-C), bit-identical resume.
//
// Needs ddpm::io (link the ddpm::io CMake target) for PNG, plots and checkpoints.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

#include "ddpm/core/assert.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/diffusion/diffusion.hpp"
#include "ddpm/io/plot.hpp"
#include "ddpm/io/png.hpp"
#include "ddpm/io/types.hpp"
#include "ddpm/optim/adam.hpp"
#include "ddpm/optim/ema.hpp"
#include "ddpm/optim/param_list.hpp"
#include "ddpm/train/checkpoint.hpp"

namespace ddpm {

/// How a data-parallel trainer (ddpm/train/distributed.hpp) joins Trainer::fit. Without one
/// (TrainConfig::parallel empty) fit() is one process, exactly as before. fit() calls every
/// member on every rank at the same point of the same step, so they may be collective.
class ParallelSync {
 public:
  virtual ~ParallelSync() = default;
  /// This process's index and the number of processes. Rank r trains on the items
  /// [r, r + 1) * batch_size / world of every global batch.
  [[nodiscard]] virtual std::size_t rank() const = 0;
  [[nodiscard]] virtual std::size_t world() const = 0;
  /// Called before micro-batch m of `count` of a step (the last one may start reducing
  /// gradients while its backward pass runs).
  virtual void begin_micro_batch(std::size_t m, std::size_t count) = 0;
  /// After the step's last backward pass: replaces every gradient by its sum over the ranks and
  /// returns the sum of `loss` over the ranks.
  [[nodiscard]] virtual double reduce(double loss) = 0;
  /// The bitwise OR of `flags` over the ranks (budgets and Ctrl-C stop every rank at one step).
  [[nodiscard]] virtual unsigned agree(unsigned flags) = 0;
};

/// Training settings. Budgets combine: training stops at the first one reached (0 = unlimited,
/// but at least one must be set).
struct TrainConfig {
  std::size_t batch_size = 64;  ///< global batch: ranks x micro_batches x micro-batch size
  /// Gradient accumulation: each step runs this many forward/backward passes of
  /// batch_size / (ranks x micro_batches) images and averages their gradients.
  std::size_t micro_batches = 1;
  /// Data-parallel hooks (see ParallelSync; DistributedTrainer sets them). Empty: one process.
  std::shared_ptr<ParallelSync> parallel{};
  optim::Adam adam{.lr = 2e-4};
  std::uint64_t lr_warmup = 0;  ///< linear warm-up steps (0 = off)
  double grad_clip = 1.0;       ///< max gradient norm (0 = off)
  bool use_ema = true;
  optim::EmaConfig ema{};
  double p_uncond = 0.1;        ///< label drop probability (class-conditional models)
  bool hflip = false;           ///< random horizontal flips (Philox, keyed by step and sample)

  std::uint64_t max_steps = 0;  ///< total steps, counting those before a resume
  double epochs = 0;            ///< total epochs over the data set
  double minutes = 0;           ///< wall-clock budget of this run

  std::filesystem::path out_dir{};  ///< loss.csv, loss.png, checkpoint.safetensors, samples/
  std::uint64_t log_every = 10;
  std::uint64_t checkpoint_every = 0;  ///< 0: only at the end (and on Ctrl-C)
  std::uint64_t sample_every = 0;      ///< sample grids during training (0 = off)
  std::size_t sample_count = 0;        ///< images per grid (0: 10 per class, or 36)
  SamplerSpec sample_sampler = sampler::Ddim{.steps = 50};
  double sample_guidance = 1.0;
  std::uint64_t sample_seed = 1234;
  /// Stop with ddpm::NumericalError after this many non-finite steps in a row.
  std::size_t max_nonfinite_in_a_row = 10;
  bool progress = true;        ///< progress on stderr (a bar on a terminal, log lines otherwise)
  bool handle_sigint = true;   ///< Ctrl-C: save a checkpoint and stop after the current step
  /// Called after every step (step number, loss) — for metrics, tests, custom logging.
  std::function<void(std::uint64_t, double)> on_step{};
  /// Stored in every checkpoint's metadata (e.g. the command-line choices of an application).
  std::map<std::string, std::string> checkpoint_metadata{};

  void validate() const {
    detail::require(batch_size >= 1, "TrainConfig::batch_size", "must be >= 1");
    const std::size_t shards = micro_batches * (parallel ? parallel->world() : 1);
    detail::require(micro_batches >= 1 && batch_size % shards == 0, "TrainConfig::batch_size",
                    batch_size, " must be a multiple of ranks x micro_batches = ",
                    parallel ? parallel->world() : 1, " x ", micro_batches);
    detail::require(grad_clip >= 0 && std::isfinite(grad_clip), "TrainConfig::grad_clip",
                    "must be >= 0, got ", grad_clip);
    detail::require(p_uncond >= 0 && p_uncond <= 1, "TrainConfig::p_uncond",
                    "must be in [0, 1], got ", p_uncond);
    detail::require(max_steps > 0 || epochs > 0 || minutes > 0, "TrainConfig",
                    "set a budget: max_steps, epochs or minutes");
    detail::require(epochs >= 0 && minutes >= 0, "TrainConfig", "budgets must be >= 0");
    detail::require(max_nonfinite_in_a_row >= 1, "TrainConfig::max_nonfinite_in_a_row",
                    "must be >= 1");
    adam.validate();
    if (use_ema) ema.validate();
  }
};

/// What fit() did.
struct TrainSummary {
  std::uint64_t first_step = 0, last_step = 0;  ///< steps [first, last) ran in this call
  double seconds = 0;
  double final_loss = 0, loss_avg100 = 0;
  double images_per_second = 0;
  std::uint64_t nonfinite_steps = 0;
  bool interrupted = false;
};

namespace detail {
inline std::atomic<bool>& sigint_flag() {
  static std::atomic<bool> f{false};
  return f;
}
extern "C" inline void ddpm_sigint_handler(int) { sigint_flag().store(true); }
}  // namespace detail

/// Trains a Model<T, B> on an 8-bit image data set (io::ImageDataset: NCHW pixels in [0, 255],
/// mapped to [-1, 1]; labels for class-conditional models).
template <std::floating_point T, class B>
class Trainer {
 public:
  Trainer(Model<T, B>& model, TrainConfig cfg)
      : model_(model), cfg_(std::move(cfg)),
        params_(optim::collect_parameters<T, B>(model.net())),
        adam_(model.net(), cfg_.adam, model.backend()) {
    cfg_.validate();
    if (cfg_.use_ema) ema_.emplace(model.net(), cfg_.ema, model.backend());
  }

  [[nodiscard]] const TrainCounters& counters() const noexcept { return counters_; }
  [[nodiscard]] optim::AdamOptimizer<T, B>& adam() noexcept { return adam_; }
  [[nodiscard]] optim::Ema<T, B>* ema() noexcept { return ema_ ? &*ema_ : nullptr; }
  [[nodiscard]] const TrainConfig& config() const noexcept { return cfg_; }

  /// Restores weights, EMA, Adam state and counters from a checkpoint written by this trainer
  /// (or save()). @throws CheckpointMismatch naming the differing field, IoError.
  LoadedCheckpoint resume(const std::filesystem::path& path) {
    return finish_resume(load_checkpoint(path, model_, &adam_, ema(), false), path);
  }

  /// resume() from the newest complete checkpoint of a series written by save(): `path`, or
  /// "<path>.prev" when `path` is missing or damaged (see load_latest_checkpoint; the result's
  /// path and fallback_reason tell which was used and why).
  LoadedCheckpoint resume_latest(const std::filesystem::path& path) {
    LoadedCheckpoint ck = load_latest_checkpoint(path, model_, &adam_, ema(), false);
    const std::filesystem::path used = ck.path;
    return finish_resume(std::move(ck), used);
  }

  /// Writes a checkpoint (atomic; the previous one kept as <path>.prev).
  void save(const std::filesystem::path& path) {
    counters_.adam_steps = adam_.steps();
    counters_.ema_updates = ema_ ? ema_->updates() : 0;
    auto meta = cfg_.checkpoint_metadata;
    meta["batch_size"] = std::to_string(cfg_.batch_size);
    meta["p_uncond"] = detail::cat(cfg_.p_uncond);
    meta["lr"] = detail::cat(cfg_.adam.lr);
    save_checkpoint(path, model_, &adam_, ema(), counters_, meta);
  }

  /// Trains until a budget is reached (or Ctrl-C). Continues from the current counters (after
  /// resume(), the next step is the checkpoint's step).
  TrainSummary fit(const io::ImageDataset& data) {
    check_data(data);
    const auto& be = model_.backend();
    const std::size_t Bsz = cfg_.batch_size, item = data.c * data.h * data.w;
    const bool cond = model_.net().config().num_classes > 0;
    const std::uint64_t steps_per_epoch_x1000 = 0;
    (void)steps_per_epoch_x1000;
    std::uint64_t end_step = UINT64_MAX;
    if (cfg_.max_steps) end_step = cfg_.max_steps;
    if (cfg_.epochs > 0)
      end_step = std::min<std::uint64_t>(
          end_step, std::uint64_t(std::ceil(cfg_.epochs * double(data.n) / double(Bsz))));
    const bool files = !cfg_.out_dir.empty();
    if (files) open_outputs();
    struct sigaction old_sa {};
    if (cfg_.handle_sigint) {
      detail::sigint_flag().store(false);
      struct sigaction sa {};
      sa.sa_handler = detail::ddpm_sigint_handler;
      sigemptyset(&sa.sa_mask);
      sigaction(SIGINT, &sa, &old_sa);
    }
    TrainSummary sum;
    sum.first_step = counters_.step;
    const auto t0 = std::chrono::steady_clock::now();
    auto elapsed = [&] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    std::deque<double> recent;
    double recent_sum = 0, last_loss = 0;
    std::size_t nonfinite_run = 0;
    // Data parallelism and gradient accumulation: this rank runs `micro` passes of `local`
    // images per step; gradients and loss are sums over the `shards` passes of all ranks.
    ParallelSync* const par = cfg_.parallel.get();
    const std::size_t micro = cfg_.micro_batches, rank = par ? par->rank() : 0;
    const std::size_t shards = micro * (par ? par->world() : 1), local = Bsz / shards;
    const double shard_scale = shards > 1 ? 1.0 / double(shards) : 1.0;
    Tensor<T, B> x0(Shape{local, data.c, data.h, data.w});
    std::vector<T> host(local * item);
    std::vector<std::int32_t> labels(cond ? local : 0);
    const bool tty = ::isatty(2) != 0;
    std::uint64_t done_this_run = 0;
    try {
      while (counters_.step < end_step) {
        unsigned stop = (cfg_.minutes > 0 && elapsed() >= cfg_.minutes * 60.0 ? 1u : 0u) |
                        (cfg_.handle_sigint && detail::sigint_flag().load() ? 2u : 0u);
        if (par) stop = par->agree(stop);
        if (stop & 1u) break;
        if (stop & 2u) {
          sum.interrupted = true;
          break;
        }
        const std::uint64_t step = counters_.step;
        optim::zero_grads(params_, be);
        double loss = 0;
        for (std::size_t m = 0; m < micro; ++m) {
          const std::size_t first = (rank * micro + m) * local;  // within the global batch
          if (par) par->begin_micro_batch(m, micro);
          make_batch(data, step, first, host, labels);
          x0.copy_from(host);
          loss += model_.forward_backward(
              x0.cview(), labels, step,
              TrainStepOptions{.p_uncond = cond ? cfg_.p_uncond : 0.0, .sample_offset = first});
        }
        if (par) loss = par->reduce(loss);
        loss *= shard_scale;
        const double norm = optim::grad_norm(params_, be) * shard_scale;
        double lr = optim::warmup_lr(cfg_.adam.lr, adam_.steps(), cfg_.lr_warmup);
        if (!std::isfinite(loss) || !std::isfinite(norm)) {
          // Skip: weights, Adam state and EMA stay untouched.
          ++counters_.nonfinite_steps;
          ++nonfinite_run;
          log_line(detail::cat("step ", step, ": non-finite ", std::isfinite(loss) ? "gradient" : "loss",
                               " (loss ", loss, ", grad norm ", norm, "); step skipped (", nonfinite_run,
                               " in a row)"));
          if (nonfinite_run >= cfg_.max_nonfinite_in_a_row) {
            if (files) save(cfg_.out_dir / "checkpoint.safetensors");
            throw NumericalError(detail::cat(
                "ddpm: training stopped at step ", step, ": ", nonfinite_run,
                " steps in a row had a non-finite loss or gradient. The weights were last updated "
                "at a finite step and are saved in the checkpoint; lower the learning rate (now ",
                cfg_.adam.lr, "), enable gradient clipping (now ", cfg_.grad_clip,
                "), or check the data for NaN/Inf."));
          }
        } else {
          nonfinite_run = 0;
          adam_.step(lr, optim::clip_factor(norm, cfg_.grad_clip) * shard_scale);
          if (ema_) ema_->update();
          last_loss = loss;
          recent.push_back(loss);
          recent_sum += loss;
          if (recent.size() > 100) {
            recent_sum -= recent.front();
            recent.pop_front();
          }
        }
        ++counters_.step;
        counters_.samples_seen = counters_.step * Bsz;
        ++done_this_run;
        const double secs = elapsed();
        const double ips = double(done_this_run * Bsz) / std::max(secs, 1e-9);
        const double avg = recent.empty() ? last_loss : recent_sum / double(recent.size());
        if (files) {
          csv_ << step << ',' << double(step * Bsz) / double(data.n) << ',' << secs << ',' << loss
               << ',' << avg << ',' << lr << ',' << ips << ',' << norm << '\n';
          loss_steps_.push_back(double(step));
          loss_values_.push_back(loss);
        }
        if (cfg_.on_step) cfg_.on_step(step, loss);
        if (cfg_.progress) progress(step, end_step, loss, avg, ips, secs, tty);
        if (files && cfg_.checkpoint_every && counters_.step % cfg_.checkpoint_every == 0)
          save(cfg_.out_dir / "checkpoint.safetensors");
        if (files && cfg_.sample_every && counters_.step % cfg_.sample_every == 0) {
          csv_.flush();
          write_sample_grid(cfg_.out_dir / "samples" /
                            (detail::cat("step_", std::string(8 - std::min<std::size_t>(8, std::to_string(counters_.step).size()), '0'),
                                         counters_.step, ".png")));
          write_loss_plot();
        }
      }
    } catch (...) {
      if (cfg_.handle_sigint) sigaction(SIGINT, &old_sa, nullptr);
      if (cfg_.progress && tty) std::fputc('\n', stderr);
      throw;
    }
    if (cfg_.handle_sigint) {
      sum.interrupted = sum.interrupted || detail::sigint_flag().load();
      sigaction(SIGINT, &old_sa, nullptr);
    }
    if (cfg_.progress && tty) std::fputc('\n', stderr);
    sum.last_step = counters_.step;
    sum.seconds = elapsed();
    sum.final_loss = last_loss;
    sum.loss_avg100 = recent.empty() ? last_loss : recent_sum / double(recent.size());
    sum.images_per_second = double(done_this_run * Bsz) / std::max(sum.seconds, 1e-9);
    sum.nonfinite_steps = counters_.nonfinite_steps;
    if (files) {
      csv_.flush();
      save(cfg_.out_dir / "checkpoint.safetensors");
      write_loss_plot();
      if (sum.interrupted) log_line("interrupted: checkpoint saved");
    }
    return sum;
  }

  /// Samples a grid with the EMA weights (if any) and writes it as PNG: for class-conditional
  /// models one row per class.
  void write_sample_grid(const std::filesystem::path& path) {
    const auto& cfg = model_.net().config();
    SampleOptions o;
    o.seed = cfg_.sample_seed;
    std::size_t cols = 6;
    if (cfg.num_classes > 0) {
      const std::size_t per = cfg_.sample_count ? std::max<std::size_t>(1, cfg_.sample_count / cfg.num_classes) : 10;
      for (std::size_t c = 0; c < cfg.num_classes; ++c)
        for (std::size_t j = 0; j < per; ++j) o.labels.push_back(std::int32_t(c));
      o.num_samples = o.labels.size();
      o.guidance = cfg_.sample_guidance;
      cols = per;
    } else {
      o.num_samples = cfg_.sample_count ? cfg_.sample_count : 36;
      cols = std::size_t(std::ceil(std::sqrt(double(o.num_samples))));
    }
    if (ema_) ema_->swap();
    SampleResult<T> r;
    try {
      r = model_.sample(cfg_.sample_sampler, o);
    } catch (...) {
      if (ema_) ema_->swap();
      throw;
    }
    if (ema_) ema_->swap();
    std::filesystem::create_directories(path.parent_path());
    std::vector<float> f(r.images.begin(), r.images.end());
    io::write_png_grid(path, f, r.shape.n(), r.shape.c(), r.shape.h(), r.shape.w(), cols, 2, 1.0f,
                       cfg.image_size <= 32 ? 2 : 1);
  }

 private:
  LoadedCheckpoint finish_resume(LoadedCheckpoint ck, const std::filesystem::path& path) {
    detail::require(!ema_ || ck.has_ema, "resume", path.string(),
                    " has no EMA weights but this trainer uses EMA");
    detail::require(ck.has_adam, "resume", path.string(), " has no Adam state");
    if (ck.metadata.count("batch_size") && ck.metadata.at("batch_size") != std::to_string(cfg_.batch_size))
      throw CheckpointMismatch(path.string(), "batch_size", ck.metadata.at("batch_size"),
                               std::to_string(cfg_.batch_size));
    counters_ = ck.counters;
    return ck;
  }

  void check_data(const io::ImageDataset& d) const {
    const auto& cfg = model_.net().config();
    detail::require(d.n >= 1, "Trainer::fit: data", "the data set is empty");
    detail::require(d.c == cfg.in_channels && d.h == cfg.image_size && d.w == cfg.image_size,
                    "Trainer::fit: data", "images are ", d.c, "x", d.h, "x", d.w, " but the model expects ",
                    cfg.in_channels, "x", cfg.image_size, "x", cfg.image_size);
    detail::require(d.pixels.size() == d.n * d.c * d.h * d.w, "Trainer::fit: data",
                    "pixel buffer has ", d.pixels.size(), " bytes for ", d.n, " images");
    if (cfg.num_classes > 0) {
      detail::require(d.labels.size() == d.n, "Trainer::fit: data",
                      "a class-conditional model needs one label per image, got ", d.labels.size(),
                      " labels for ", d.n, " images");
      for (std::size_t i = 0; i < d.n; ++i)
        detail::require(d.labels[i] >= 0 && std::size_t(d.labels[i]) < cfg.num_classes,
                        "Trainer::fit: data", "label ", d.labels[i], " of image ", i,
                        " outside [0, ", cfg.num_classes, ")");
    }
  }

  /// Permutation of epoch e (Fisher-Yates with Philox stream shuffle/e), cached.
  const std::vector<std::uint32_t>& permutation(std::size_t n, std::uint64_t epoch) {
    if (perm_epoch_ != epoch || perm_.size() != n) {
      perm_.resize(n);
      std::iota(perm_.begin(), perm_.end(), 0u);
      const Rng rng{model_.seed()};
      const std::uint64_t stream = rng_stream::make(rng_stream::shuffle, epoch);
      for (std::size_t i = n; i > 1; --i) {
        const std::size_t j = std::size_t(rng.below(i, stream, i));
        std::swap(perm_[i - 1], perm_[j]);
      }
      perm_epoch_ = epoch;
    }
    return perm_;
  }

  /// Items [first, first + host.size() / item) of the batch of `step`: global positions
  /// step*B + j, each mapped to (epoch, index) and through the epoch's permutation; so the data
  /// order is a function of the step alone (resume-safe, and the same for any rank count).
  void make_batch(const io::ImageDataset& d, std::uint64_t step, std::size_t first,
                  std::vector<T>& host, std::vector<std::int32_t>& labels) {
    const std::size_t nb = cfg_.batch_size, C = d.c, H = d.h, W = d.w, item = C * H * W;
    const std::size_t count = host.size() / item;
    const Rng rng{model_.seed()};
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t j = first + i;  // index within the global batch
      const std::uint64_t pos = step * nb + j;
      const auto& perm = permutation(d.n, pos / d.n);
      const std::size_t idx = perm[pos % d.n];
      const std::uint8_t* src = d.pixels.data() + idx * item;
      T* dst = host.data() + i * item;
      const bool flip = cfg_.hflip &&
                        rng.uniform(rng_stream::make(rng_stream::augment, step), j) < 0.5;
      for (std::size_t c = 0; c < C; ++c)
        for (std::size_t y = 0; y < H; ++y)
          for (std::size_t x = 0; x < W; ++x)
            dst[(c * H + y) * W + x] =
                T(src[(c * H + y) * W + (flip ? W - 1 - x : x)]) / T(127.5) - T(1);
      if (!labels.empty()) labels[i] = d.labels[idx];
    }
  }

  void open_outputs() {
    std::filesystem::create_directories(cfg_.out_dir);
    const auto path = cfg_.out_dir / "loss.csv";
    const bool fresh = counters_.step == 0 || !std::filesystem::exists(path);
    if (!fresh) {
      // Resuming: keep the rows of steps before the resume point, drop any after it.
      std::ifstream in(path);
      std::string line, kept;
      std::getline(in, line);
      kept = line + '\n';
      while (std::getline(in, line)) {
        const auto comma = line.find(',');
        if (comma == std::string::npos) continue;
        std::uint64_t s = 0;
        try {
          s = std::stoull(line.substr(0, comma));
        } catch (...) {
          continue;
        }
        if (s < counters_.step) {
          kept += line + '\n';
          const auto c3 = line.find(',', line.find(',', comma + 1) + 1);
          const auto c4 = line.find(',', c3 + 1);
          loss_steps_.push_back(double(s));
          loss_values_.push_back(std::atof(line.substr(c3 + 1, c4 - c3 - 1).c_str()));
        }
      }
      in.close();
      csv_.open(path, std::ios::trunc);
      csv_ << kept;
    } else {
      csv_.open(path, std::ios::trunc);
      csv_ << "step,epoch,elapsed_s,loss,loss_avg100,lr,imgs_per_s,grad_norm\n";
    }
    if (!csv_) throw IoError(path.string(), "cannot open for writing");
    csv_.precision(9);
  }

  void write_loss_plot() {
    if (loss_values_.size() < 2) return;
    std::vector<io::Series> s(2);
    s[0].label = "loss";
    s[0].x = loss_steps_;
    s[0].y = loss_values_;
    s[1].label = "smoothed";
    s[1].x = loss_steps_;
    s[1].y = io::smooth_ema(loss_values_, 0.05);
    io::write_line_plot(cfg_.out_dir / "loss.png", s,
                        io::PlotOptions{.title = "training loss", .xlabel = "step",
                                        .ylabel = "loss", .log_y = true});
  }

  void log_line(const std::string& s) const {
    if (cfg_.progress) std::fprintf(stderr, "%s%s\n", ::isatty(2) ? "\r\033[K" : "", s.c_str());
  }

  void progress(std::uint64_t step, std::uint64_t end_step, double loss, double avg, double ips,
                double secs, bool tty) const {
    double frac = -1;
    if (end_step != UINT64_MAX) frac = double(step + 1) / double(end_step);
    if (cfg_.minutes > 0) frac = std::max(frac, secs / (cfg_.minutes * 60.0));
    frac = std::min(frac, 1.0);
    const double eta = frac > 0 ? secs / frac - secs : 0;
    if (tty) {
      const int width = 24, fill = frac >= 0 ? int(frac * width) : 0;
      std::string bar(std::size_t(fill), '#');
      bar.resize(width, '.');
      std::fprintf(stderr, "\r\033[K[%s] step %llu  loss %.4f (avg %.4f)  %.1f img/s  ETA %ds",
                   bar.c_str(), (unsigned long long)(step + 1), loss, avg, ips, int(eta));
      std::fflush(stderr);
    } else if (cfg_.log_every && (step + 1) % cfg_.log_every == 0) {
      std::fprintf(stderr, "step %llu  loss %.5f  avg100 %.5f  %.1f img/s  elapsed %.0fs  ETA %.0fs\n",
                   (unsigned long long)(step + 1), loss, avg, ips, secs, eta);
    }
  }

  Model<T, B>& model_;
  TrainConfig cfg_;
  std::vector<optim::ParamRef<T, B>> params_;
  optim::AdamOptimizer<T, B> adam_;
  std::optional<optim::Ema<T, B>> ema_;
  TrainCounters counters_;
  std::vector<std::uint32_t> perm_;
  std::uint64_t perm_epoch_ = UINT64_MAX;
  std::ofstream csv_;
  std::vector<double> loss_steps_, loss_values_;
};

}  // namespace ddpm
