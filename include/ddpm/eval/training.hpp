// SPDX-License-Identifier: MIT
// ddpm/eval/training.hpp — sample quality during training: sample a fixed set (fixed seed,
// fixed labels, a few DDIM steps) from the EMA weights, score it with an Evaluator, and keep a
// log (eval.csv next to loss.csv, plots eval_fd.png and eval_classes.png). Wire it into a
// Trainer through TrainConfig::on_step:
//
//   eval::SampleEvalConfig sc{.per_class = 10, .sampler = sampler::Ddim{.steps = 20}};
//   eval::TrainingEvalLog log(out_dir);
//   Trainer<float, B>* trainer = nullptr;
//   cfg.on_step = [&](std::uint64_t step, double loss) {
//     if ((step + 1) % every) return;
//     log.add(step + 1, loss, eval::score_samples(model, trainer->ema(), evaluator, sc));
//   };
//   Trainer<float, B> t(model, cfg);
//   trainer = &t;
//
// Needs ddpm::io.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/diffusion/diffusion.hpp"
#include "ddpm/eval/score.hpp"
#include "ddpm/io/plot.hpp"
#include "ddpm/optim/ema.hpp"

namespace ddpm::eval {

/// What to sample for an evaluation during training.
struct SampleEvalConfig {
  std::size_t per_class = 10;     ///< class-conditional models: this many samples of each class
  std::size_t num_samples = 100;  ///< unconditional models
  SamplerSpec sampler = sampler::Ddim{.steps = 20};
  double guidance = 1.0;      ///< classifier-free guidance weight (conditional models)
  std::uint64_t seed = 4321;  ///< the same noise every time, so runs and steps compare
  std::size_t batch = 0;      ///< samples per network call (0 = all at once)
};

/// Samples with `cfg` (EMA weights swapped in while sampling when `ema` is not null) and scores
/// the samples against the evaluator's reference; the requested classes are the labels.
/// @post the model's weights are as before, also when sampling throws.
template <std::floating_point T, class B, std::floating_point CT, class CB>
[[nodiscard]] EvalReport score_samples(Model<T, B>& model, optim::Ema<T, B>* ema,
                                       Evaluator<CT, CB>& evaluator, const SampleEvalConfig& cfg);

/// eval.csv (step, loss, seconds spent on evaluation, and EvalReport::metrics()) plus two plots
/// in a folder: eval_fd.png (Fréchet distance and the real baseline against the step) and
/// eval_classes.png (accuracy, confident fraction, class entropy).
class TrainingEvalLog {
 public:
  /// Starts eval.csv in `dir` afresh, or, when `resume_step` > 0, keeps its rows with
  /// step <= resume_step (a resumed run re-logs the steps after the checkpoint).
  explicit TrainingEvalLog(std::filesystem::path dir, std::uint64_t resume_step = 0);

  /// Appends a row, rewrites the plots, and prints the summary on stderr if `print`.
  void add(std::uint64_t step, double loss, const EvalReport& r, double seconds = 0,
           bool print = true);

  [[nodiscard]] const std::filesystem::path& csv_path() const noexcept { return csv_; }

 private:
  void write_plots() const;

  std::filesystem::path dir_, csv_;  // csv_ = dir_ / "eval.csv"
  std::vector<double> steps_, fd_, fd_real_, acc_, conf_, ent_;
};

// ---------------------------------------------------------------- implementation

template <std::floating_point T, class B, std::floating_point CT, class CB>
EvalReport score_samples(Model<T, B>& model, optim::Ema<T, B>* ema, Evaluator<CT, CB>& evaluator,
                         const SampleEvalConfig& cfg) {
  const auto& net = model.net().config();
  detail::require(net.in_channels == evaluator.classifier().config().in_channels &&
                      net.image_size == evaluator.classifier().config().image_size,
                  "eval::score_samples", "the model makes ", net.in_channels, "x", net.image_size,
                  "x", net.image_size, " images, the classifier takes ",
                  evaluator.classifier().config().in_channels, "x",
                  evaluator.classifier().config().image_size, "x",
                  evaluator.classifier().config().image_size);
  SampleOptions o;
  o.seed = cfg.seed;
  o.batch = cfg.batch;
  if (net.num_classes > 0) {
    detail::require(net.num_classes <= evaluator.classifier().config().num_classes,
                    "eval::score_samples", "the model has ", net.num_classes,
                    " classes, the classifier ", evaluator.classifier().config().num_classes);
    for (std::size_t c = 0; c < net.num_classes; ++c)
      for (std::size_t j = 0; j < cfg.per_class; ++j) o.labels.push_back(std::int32_t(c));
    o.num_samples = o.labels.size();
    o.guidance = cfg.guidance;
  } else {
    o.num_samples = cfg.num_samples;
  }
  if (ema) ema->swap();
  SampleResult<T> r;
  try {
    r = model.sample(cfg.sampler, o);
  } catch (...) {
    if (ema) ema->swap();
    throw;
  }
  if (ema) ema->swap();
  const std::vector<float> images(r.images.begin(), r.images.end());
  return evaluator.score(images, o.num_samples, o.labels);
}

inline TrainingEvalLog::TrainingEvalLog(std::filesystem::path dir, std::uint64_t resume_step)
    : dir_(std::move(dir)), csv_(dir_ / "eval.csv") {
  std::filesystem::create_directories(dir_);
  std::string kept;
  if (resume_step > 0) {
    std::ifstream in(csv_);
    std::string line;
    std::vector<std::string> names;
    auto split = [](const std::string& l) {
      std::vector<std::string> f;
      std::size_t i = 0;
      while (true) {
        const std::size_t j = l.find(',', i);
        f.push_back(l.substr(i, j == std::string::npos ? std::string::npos : j - i));
        if (j == std::string::npos) return f;
        i = j + 1;
      }
    };
    auto col = [&](const std::vector<std::string>& f, const char* name) {
      for (std::size_t k = 0; k < names.size() && k < f.size(); ++k)
        if (names[k] == name && !f[k].empty()) return std::stod(f[k]);
      return std::numeric_limits<double>::quiet_NaN();
    };
    while (std::getline(in, line)) {
      if (names.empty()) {
        names = split(line);
        kept = line + '\n';
        continue;
      }
      try {
        const auto f = split(line);
        if (std::stoull(f[0]) > resume_step) continue;
        steps_.push_back(std::stod(f[0]));
        fd_.push_back(col(f, "fd"));
        fd_real_.push_back(col(f, "fd_real"));
        acc_.push_back(col(f, "accuracy"));
        conf_.push_back(col(f, "confident"));
        ent_.push_back(col(f, "class_entropy"));
        kept += line + '\n';
      } catch (const std::exception&) {
      }
    }
  }
  std::ofstream out(csv_, std::ios::trunc);
  out << (steps_.empty() ? std::string() : kept);
  if (!out) throw IoError(csv_.string(), "cannot open for writing");
}

inline void TrainingEvalLog::add(std::uint64_t step, double loss, const EvalReport& r,
                                 double seconds, bool print) {
  append_metrics_csv(csv_, step, r, {{"loss", loss}, {"eval_seconds", seconds}});
  steps_.push_back(double(step));
  fd_.push_back(r.fd);
  fd_real_.push_back(r.fd_real_mean);
  acc_.push_back(r.accuracy);
  conf_.push_back(r.confident_fraction);
  ent_.push_back(r.class_entropy);
  write_plots();
  if (print)
    std::fprintf(stderr, "%seval @ step %llu: %s\n", ::isatty(2) ? "\r\033[K" : "",
                 (unsigned long long)step, r.summary().c_str());
}

inline void TrainingEvalLog::write_plots() const {
  if (steps_.size() < 2) return;
  // Only finite points are drawn (accuracy is NaN for unconditional models).
  auto series = [&](const char* label, const std::vector<double>& y) {
    io::Series s;
    s.label = label;
    for (std::size_t i = 0; i < y.size(); ++i)
      if (std::isfinite(y[i])) {
        s.x.push_back(steps_[i]);
        s.y.push_back(y[i]);
      }
    return s;
  };
  std::vector<io::Series> fd{series("FD (samples)", fd_), series("FD (real, same n)", fd_real_)};
  std::erase_if(fd, [](const io::Series& s) { return s.y.size() < 2; });
  bool positive = true;
  for (const auto& s : fd)
    for (double v : s.y) positive = positive && v > 0;
  if (!fd.empty())
    io::write_line_plot(
        dir_ / "eval_fd.png", fd,
        io::PlotOptions{.title = "Frechet distance to held-out digits (classifier features)",
                        .xlabel = "step",
                        .ylabel = "FD",
                        .log_y = positive});
  std::vector<io::Series> cls{series("accuracy", acc_), series("confident (p >= 0.9)", conf_),
                              series("class entropy", ent_)};
  std::erase_if(cls, [](const io::Series& s) { return s.y.size() < 2; });
  if (!cls.empty())
    io::write_line_plot(
        dir_ / "eval_classes.png", cls,
        io::PlotOptions{
            .title = "samples as seen by the classifier", .xlabel = "step", .ylabel = "fraction"});
}

}  // namespace ddpm::eval
