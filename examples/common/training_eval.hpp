// examples/common/training_eval.hpp — `--eval-every N`: score EMA samples during training with
// the ddpm-eval classifier (fixed seed, fixed labels, a few DDIM steps) and log the figures next
// to the loss (<out>/eval.csv, eval_fd.png, eval_classes.png). Used by examples/mnist.
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ddpm/backend/cpu.hpp>
#include <ddpm/eval/all.hpp>
#include <ddpm/eval/training.hpp>
#include <ddpm/io/idx.hpp>
#include <ddpm/train/trainer.hpp>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace examples {

/// The command-line options of the evaluation during training.
struct TrainingEvalArgs {
  std::uint64_t every = 0;
  std::string classifier;  // empty: <data dir>/../classifiers/mnist_classifier.safetensors
  std::size_t per_class = 10;
  std::size_t steps = 20;
  std::uint64_t seed = 4321;

  void add_options(CLI::App& app) {
    app.add_option(
           "--eval-every", every,
           "every N steps, sample the EMA model (fixed seed, DDIM) and score the samples with "
           "the ddpm-eval classifier; logs <out>/eval.csv (0 = off)")
        ->capture_default_str();
    app.add_option("--classifier", classifier,
                   "classifier for --eval-every (default: the committed MNIST classifier, "
                   "data/classifiers/mnist_classifier.safetensors)");
    app.add_option("--eval-per-class", per_class, "samples per class for --eval-every")
        ->capture_default_str();
    app.add_option("--eval-steps", steps, "DDIM steps of the --eval-every samples")
        ->capture_default_str();
  }
};

/// Holds the classifier, the reference statistics and the log. Create it before the Trainer
/// (its hook() goes into TrainConfig::on_step), then call start() once the Trainer exists and
/// has resumed (if it does).
template <class B>
class TrainingEval {
 public:
  /// Loads the classifier and the held-out split (<data_dir>/t10k) that is the reference.
  /// @throws IoError / std::invalid_argument when the data has no held-out split, or when the
  ///         classifier does not recognise it (held-out accuracy below 80%: trained on other data).
  TrainingEval(const TrainingEvalArgs& args, ddpm::Model<float, B>& model,
               const std::filesystem::path& data_dir, const ddpm::io::ImageDataset& train,
               double guidance, const ddpm::backend::Cpu& cpu,
               const std::filesystem::path& default_classifier)
      : args_(args), model_(model) {
    const std::filesystem::path file =
        args.classifier.empty() ? default_classifier : std::filesystem::path(args.classifier);
    clf_.emplace(ddpm::eval::load_classifier<float, ddpm::backend::Cpu>(file, cpu));
    const auto held_out = ddpm::io::load_mnist_dir(data_dir, "t10k", /*require_labels=*/false);
    ev_.emplace(clf_->net, held_out, &train);
    const double acc = ev_->real_figures().accuracy;
    if (acc >= 0 && acc < 0.8)
      throw ddpm::IoError(
          file.string(),
          ddpm::detail::cat(
              "this classifier recognises only ", 100 * acc, "% of ", data_dir.string(),
              "/t10k: it was trained on other data (",
              clf_->metadata.count("data.name") ? clf_->metadata.at("data.name") : "?",
              "). Train one on this data with `ddpm-eval train-classifier --data ",
              data_dir.string(), "` and pass it with --classifier"));
    std::printf(
        "eval every %llu steps: %zu samples per class, DDIM %zu steps, classifier %s (held-out "
        "accuracy %.4f)\n",
        (unsigned long long)args.every, args.per_class, args.steps, file.string().c_str(), acc);
    sc_.per_class = args.per_class;
    sc_.num_samples = 10 * args.per_class;
    sc_.sampler = ddpm::sampler::Ddim{.steps = args.steps};
    sc_.guidance = guidance;
    sc_.seed = args.seed;
  }

  TrainingEval(const TrainingEval&) = delete;  // the evaluator refers to the classifier member
  TrainingEval& operator=(const TrainingEval&) = delete;

  /// The TrainConfig::on_step hook (does nothing before start()).
  [[nodiscard]] std::function<void(std::uint64_t, double)> hook() {
    return [this](std::uint64_t step, double loss) {
      if (!trainer_ || !log_ || (step + 1) % args_.every != 0) return;
      const auto t0 = std::chrono::steady_clock::now();
      const auto r = ddpm::eval::score_samples(model_, trainer_->ema(), *ev_, sc_);
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      log_->add(step + 1, loss, r, secs);
    };
  }

  /// Starts the log in `out_dir` (keeping the rows up to the trainer's current step on resume).
  void start(ddpm::Trainer<float, B>& trainer, const std::filesystem::path& out_dir) {
    trainer_ = &trainer;
    log_.emplace(out_dir, trainer.counters().step);
  }

 private:
  TrainingEvalArgs args_;
  ddpm::Model<float, B>& model_;
  std::optional<ddpm::eval::LoadedClassifier<float, ddpm::backend::Cpu>> clf_;
  std::optional<ddpm::eval::Evaluator<float, ddpm::backend::Cpu>> ev_;
  ddpm::eval::SampleEvalConfig sc_;
  ddpm::Trainer<float, B>* trainer_ = nullptr;
  std::optional<ddpm::eval::TrainingEvalLog> log_;
};

}  // namespace examples
