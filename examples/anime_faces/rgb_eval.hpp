// examples/anime_faces/rgb_eval.hpp — `anime_faces train --eval-every N --encoder FILE`: every N
// steps, sample a fixed set from the EMA weights (fixed seed, DDIM) and score it with the RGB score
// of ddpm-eval (include/ddpm/eval/rgb_score.hpp) against the training images; log the figures in
// <out>/eval.csv and plot FD against its real-vs-real baseline in <out>/eval_fd.png.
#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <ddpm/backend/cpu.hpp>
#include <ddpm/eval/rgb_score.hpp>
#include <ddpm/io/plot.hpp>
#include <ddpm/train/trainer.hpp>

namespace anime {

struct RgbEvalArgs {
  std::uint64_t every = 0;
  std::string encoder;
  std::size_t count = 50, steps = 20;
  std::uint64_t seed = 4321;

  void add_options(CLI::App& app) {
    app.add_option("--eval-every", every,
                   "every N steps, sample the EMA model (fixed seed, DDIM) and score the samples with "
                   "the RGB score of ddpm-eval (needs --encoder); logs <out>/eval.csv (0 = off)")
        ->capture_default_str();
    app.add_option("--encoder", encoder,
                   "feature encoder for --eval-every, trained on the same images at the same size: "
                   "ddpm-eval train-encoder --data DIR --image-size S --out <out>/encoder.safetensors");
    app.add_option("--eval-count", count, "samples per evaluation")->capture_default_str();
    app.add_option("--eval-steps", steps, "DDIM steps of the evaluation samples")->capture_default_str();
  }
};

/// Create it before the Trainer (hook() goes into TrainConfig::on_step), then start() it.
template <class B>
class RgbTrainingEval {
 public:
  /// @throws IoError naming the encoder file if it is not an encoder for these images' size.
  RgbTrainingEval(const RgbEvalArgs& args, ddpm::Model<float, B>& model,
                  const ddpm::io::ImageDataset& train, const ddpm::backend::Cpu& cpu)
      : args_(args), model_(model) {
    if (args.encoder.empty())
      throw std::invalid_argument(
          "--eval-every needs --encoder FILE, a feature encoder for these images: train one with "
          "`ddpm-eval train-encoder --data DIR --image-size " + std::to_string(train.h) +
          " --out <out>/encoder.safetensors`");
    ddpm::detail::require(args.count >= 2, "--eval-count", "must be at least 2, got ", args.count);
    enc_.emplace(ddpm::eval::load_feature_encoder<float, ddpm::backend::Cpu>(args.encoder, train.c,
                                                                             train.h, cpu));
    ev_.emplace(enc_->net, train);
    std::printf("eval every %llu steps: %zu samples, DDIM %zu steps, encoder %s\n",
                (unsigned long long)args.every, args.count, args.steps, args.encoder.c_str());
  }
  RgbTrainingEval(const RgbTrainingEval&) = delete;
  RgbTrainingEval& operator=(const RgbTrainingEval&) = delete;

  [[nodiscard]] std::function<void(std::uint64_t, double)> hook() {
    return [this](std::uint64_t step, double loss) {
      if (!trainer_ || (step + 1) % args_.every != 0) return;
      const auto t0 = std::chrono::steady_clock::now();
      ddpm::SampleOptions o;
      o.num_samples = args_.count;
      o.seed = args_.seed;
      auto* ema = trainer_->ema();
      if (ema) ema->swap();
      ddpm::SampleResult<float> r;
      try {
        r = model_.sample(ddpm::sampler::Ddim{.steps = args_.steps}, o);
      } catch (...) {
        if (ema) ema->swap();
        throw;
      }
      if (ema) ema->swap();
      const std::vector<float> images(r.images.begin(), r.images.end());
      const auto rep = ev_->score(images, args_.count);
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      add(step + 1, loss, rep, secs);
    };
  }

  /// Starts <out>/eval.csv afresh (rows of an earlier run are kept only up to the resume step).
  void start(ddpm::Trainer<float, B>& trainer, const std::filesystem::path& out) {
    trainer_ = &trainer;
    out_ = out;
    std::filesystem::create_directories(out);
    const std::uint64_t from = trainer.counters().step;
    std::string kept;
    {
      std::ifstream in(out / "eval.csv");
      std::string line;
      bool header = true;
      while (std::getline(in, line)) {
        if (header) {
          kept = line + '\n';
          header = false;
          continue;
        }
        try {
          const double s = std::stod(line.substr(0, line.find(',')));
          if (s > double(from) || from == 0) continue;
          const auto f = split(line);
          steps_.push_back(s);
          fd_.push_back(f.size() > 3 ? std::stod(f[3]) : 0.0);
          fd_real_.push_back(f.size() > 4 ? std::stod(f[4]) : 0.0);
          kept += line + '\n';
        } catch (const std::exception&) {
        }
      }
    }
    std::ofstream o(out / "eval.csv", std::ios::trunc);
    o << (steps_.empty() ? std::string("step,loss,eval_seconds,fd,fd_real,fd_real_std,nn_mean,nn_min,copies\n")
                         : kept);
  }

 private:
  static std::vector<std::string> split(const std::string& l) {
    std::vector<std::string> f;
    std::size_t i = 0;
    while (true) {
      const std::size_t j = l.find(',', i);
      f.push_back(l.substr(i, j == std::string::npos ? std::string::npos : j - i));
      if (j == std::string::npos) return f;
      i = j + 1;
    }
  }

  void add(std::uint64_t step, double loss, const ddpm::eval::RgbReport& r, double secs) {
    std::ofstream o(out_ / "eval.csv", std::ios::app);
    o.precision(9);
    o << step << ',' << loss << ',' << secs << ',' << r.fd << ',' << r.fd_real_mean << ','
      << r.fd_real_std << ',' << r.nn_mean << ',' << r.nn_min << ',' << r.copies << '\n';
    if (!o) throw ddpm::IoError((out_ / "eval.csv").string(), "write failed");
    steps_.push_back(double(step));
    fd_.push_back(r.fd);
    fd_real_.push_back(r.fd_real_mean);
    std::fprintf(stderr, "%seval @ step %llu: %s (%.1f s)\n", ::isatty(2) ? "\r\033[K" : "",
                 (unsigned long long)step, r.summary().c_str(), secs);
    if (steps_.size() >= 2) {
      const std::vector<ddpm::io::Series> s{{"FD (samples)", steps_, fd_},
                                            {"FD (real, same n)", steps_, fd_real_}};
      ddpm::io::write_line_plot(out_ / "eval_fd.png", s,
                                ddpm::io::PlotOptions{.title = "Frechet distance to the training images (encoder features)",
                                                      .xlabel = "step", .ylabel = "FD", .log_y = true});
    }
  }

  RgbEvalArgs args_;
  ddpm::Model<float, B>& model_;
  std::optional<ddpm::eval::LoadedClassifier<float, ddpm::backend::Cpu>> enc_;
  std::optional<ddpm::eval::RgbEvaluator<float, ddpm::backend::Cpu>> ev_;
  ddpm::Trainer<float, B>* trainer_ = nullptr;
  std::filesystem::path out_;
  std::vector<double> steps_, fd_, fd_real_;
};

}  // namespace anime
