// examples/eval — ddpm-eval: trains the small evaluation classifier and scores generated images
// (accuracy, confidence, class entropy, an Inception-Score-like figure, a Fréchet distance with
// its real-data baseline, nearest-training-image distances). SIMD CPU backend.
//
//   ddpm-eval train-classifier --data data/mnist10k --out mnist_classifier.safetensors
//   ddpm-eval score --samples runs/mnist/grid.png --grid-rows-are-classes      (JSON on stdout)
//   ddpm-eval score --classifier c.safetensors --samples samples/ --real DIR    (a folder of PNGs)
//   ddpm-eval info --classifier c.safetensors
//
// Unconditional colour images of any size (anime faces, ...), scored with a feature encoder
// trained on the user's own training images (include/ddpm/eval/rgb_score.hpp):
//   ddpm-eval train-encoder --data DIR --image-size 32 --out runs/anime/encoder.safetensors
//   ddpm-eval score-rgb --encoder runs/anime/encoder.safetensors --samples runs/anime/grid.png --real DIR
#include <oneapi/tbb/global_control.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <ddpm/backend/cpu.hpp>
#include <ddpm/eval/all.hpp>
#include <ddpm/io/idx.hpp>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "../anime_faces/train_data.hpp"

#ifndef DDPM_EXAMPLE_DATA_DIR
#define DDPM_EXAMPLE_DATA_DIR "data/mnist10k"
#endif
#ifndef DDPM_EXAMPLE_CLASSIFIER
#define DDPM_EXAMPLE_CLASSIFIER "data/classifiers/mnist_classifier.safetensors"
#endif

namespace fs = std::filesystem;
using Backend = ddpm::backend::Cpu;

namespace {

/// The folder's own name, also for "." or a trailing slash ("data/mnist10k/" -> "mnist10k").
std::string folder_name(const fs::path& dir) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(dir, ec);
  if (ec) p = dir;
  std::string s = p.filename().string();
  if (s.empty()) s = p.parent_path().filename().string();
  return s;
}

bool has_split(const fs::path& dir, const std::string& split) {
  for (const char* stem : {"-images-idx3-ubyte", "-images-idx4-ubyte", "-images.idx3-ubyte"})
    for (const char* ext : {"", ".gz"})
      if (fs::is_regular_file(dir / (split + stem + ext))) return true;
  return false;
}

std::string list_text(const std::vector<std::size_t>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(v[i]);
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{
      "ddpm-eval: a small classifier that scores generated images (ddpm, SIMD CPU backend)"};
  app.require_subcommand(1);
  int threads = 0;
  app.add_option("--threads", threads, "worker threads (0 = all cores)")->capture_default_str();

  // ---- train-classifier
  auto* train = app.add_subcommand("train-classifier",
                                   "train the classifier on an MNIST-format folder (train split; "
                                   "t10k for the test accuracy)");
  std::string data_dir = DDPM_EXAMPLE_DATA_DIR, out_file = "classifier.safetensors";
  ddpm::eval::ClassifierConfig cc;
  ddpm::eval::ClassifierTrainConfig tc;
  bool no_augment = false;
  std::size_t train_limit = 0;
  train->add_option("--data", data_dir, "MNIST-format folder (train-images-idx3-ubyte[.gz], ...)")
      ->capture_default_str();
  train->add_option("--out", out_file, "classifier file to write (safetensors)")
      ->capture_default_str();
  train->add_option("--epochs", tc.epochs, "epochs")->capture_default_str();
  train->add_option("--batch", tc.batch_size, "batch size")->capture_default_str();
  train->add_option("--lr", tc.lr, "peak learning rate (AdamW, warm-up then cosine)")
      ->capture_default_str();
  train->add_option("--weight-decay", tc.weight_decay, "AdamW weight decay")->capture_default_str();
  train->add_option("--warmup", tc.warmup_steps, "warm-up steps")->capture_default_str();
  train->add_option("--label-smoothing", tc.label_smoothing, "label smoothing")
      ->capture_default_str();
  train->add_option("--seed", tc.seed, "seed (initialisation, order, augmentation)")
      ->capture_default_str();
  train->add_option("--channels", cc.channels, "channels per stage")
      ->delimiter(',')
      ->capture_default_str();
  train->add_option("--depth", cc.depth, "conv units per stage")->capture_default_str();
  train->add_option("--groups", cc.groups, "GroupNorm groups")->capture_default_str();
  train->add_option("--max-shift", tc.augment.max_shift, "augmentation: max shift (pixels)")
      ->capture_default_str();
  train->add_option("--rotate", tc.augment.max_rotation_deg, "augmentation: max rotation (degrees)")
      ->capture_default_str();
  train->add_option("--scale", tc.augment.max_scale, "augmentation: max relative scale change")
      ->capture_default_str();
  train->add_flag("--hflip", tc.augment.hflip,
                  "augmentation: random left-right flips (not for digits)");
  train->add_flag("--no-augment", no_augment, "no augmentation");
  train->add_option("--train-limit", train_limit, "use only the first N training images (0 = all)")
      ->capture_default_str();

  // ---- score
  auto* score = app.add_subcommand(
      "score", "score generated images; JSON on stdout, a summary line on stderr");
  std::string classifier_file = DDPM_EXAMPLE_CLASSIFIER, samples, labels_text, labels_idx,
              real_dir = DDPM_EXAMPLE_DATA_DIR;
  std::string real_split = "t10k", train_split = "train", json_out;
  bool rows_are_classes = false, cols_are_classes = false, per_sample = false, no_nearest = false;
  std::optional<std::size_t> grid_pad, grid_upscale;
  ddpm::eval::ScoreOptions so;
  score->add_option("--classifier", classifier_file, "classifier file (ddpm-eval train-classifier)")
      ->capture_default_str();
  score->add_option("--samples", samples, "a grid PNG, a folder of images, or an IDX file")
      ->required();
  auto* o_labels =
      score->add_option("--labels", labels_text, "requested class of each image, e.g. 0,0,1,1,...");
  auto* o_labels_idx = score->add_option(
      "--labels-idx", labels_idx, "requested classes as an IDX labels file (with IDX samples)");
  auto* o_rows = score->add_flag("--grid-rows-are-classes", rows_are_classes,
                                 "row r of the grid shows class r");
  auto* o_cols = score->add_flag("--grid-cols-are-classes", cols_are_classes,
                                 "column c of the grid shows class c");
  o_labels->excludes(o_labels_idx)->excludes(o_rows)->excludes(o_cols);
  o_labels_idx->excludes(o_rows)->excludes(o_cols);
  o_rows->excludes(o_cols);
  score->add_option("--grid-pad", grid_pad,
                    "grid padding in pixels before upscaling (default: detect)");
  score->add_option("--grid-upscale", grid_upscale, "grid upscale factor (default: detect)");
  score
      ->add_option("--real", real_dir,
                   "MNIST-format folder of real images: the held-out split is the "
                   "Fréchet reference, the train split the nearest-neighbour base")
      ->capture_default_str();
  score->add_option("--real-split", real_split, "held-out split of --real")->capture_default_str();
  score->add_option("--train-split", train_split, "training split of --real (nearest neighbours)")
      ->capture_default_str();
  score->add_flag("--no-nearest", no_nearest, "skip the nearest-training-image distances");
  score->add_option("--confident", so.confident_threshold, "confidence threshold")
      ->capture_default_str();
  score
      ->add_option(
          "--copy-threshold", so.copy_threshold,
          "nearest-training distance (L2, [0,1] pixels) below which a sample counts as a copy")
      ->capture_default_str();
  score->add_option("--repeats", so.baseline_repeats, "draws of the real Fréchet baseline")
      ->capture_default_str();
  score->add_option("--json", json_out, "also write the JSON report to this file");
  score->add_flag("--per-sample", per_sample,
                  "include per-sample nearest-neighbour distances in the JSON");

  // ---- train-encoder, score-rgb (colour images of any size)
  auto* tenc = app.add_subcommand(
      "train-encoder",
      "train the feature encoder of score-rgb (rotation prediction) on a folder of colour images "
      "or an idx4 file: the training images of the model to score");
  anime::DataArgs enc_data;
  std::string enc_out;
  ddpm::eval::FeatureEncoderConfig fec;
  for (auto* c : {tenc}) {
    c->add_option("--data", enc_data.data_dir, "folder of images (PNG, JPEG, ...)")->check(CLI::ExistingDirectory);
    c->add_option("--idx", enc_data.idx_file, "or: an idx4 file of N x H x W x 3 images")->check(CLI::ExistingFile);
  }
  auto* enc_size = tenc->add_option("--image-size", enc_data.image_size,
                                    "images are centre-cropped and resized to this: the size of the "
                                    "model's samples (with --idx: default the file's size)")
                       ->capture_default_str();
  tenc->add_option("--out", enc_out, "encoder file to write, e.g. next to the model: "
                                     "runs/anime/encoder.safetensors")->required();
  tenc->add_option("--max-images", fec.max_images, "train on at most this many images (0 = all)")
      ->capture_default_str();
  tenc->add_option("--epochs", fec.train.epochs, "epochs (over 4 turns of each image)")->capture_default_str();
  tenc->add_option("--batch", fec.train.batch_size, "batch size")->capture_default_str();
  tenc->add_option("--lr", fec.train.lr, "peak learning rate")->capture_default_str();
  tenc->add_option("--channels", fec.net.channels, "channels per stage")->delimiter(',')->capture_default_str();
  tenc->add_option("--depth", fec.net.depth, "conv units per stage")->capture_default_str();
  tenc->add_option("--seed", fec.train.seed, "seed")->capture_default_str();

  auto* srgb = app.add_subcommand(
      "score-rgb",
      "score unconditional colour samples: Fréchet distance on the encoder's features with the "
      "real-vs-real baseline at the same n, and nearest-training-image copies; JSON on stdout");
  std::string enc_file, rgb_samples, rgb_json;
  anime::DataArgs rgb_real;
  ddpm::eval::RgbScoreOptions rso;
  bool rgb_per_sample = false;
  std::optional<std::size_t> rgb_pad, rgb_up;
  srgb->add_option("--encoder", enc_file, "encoder file (ddpm-eval train-encoder)")->required()->check(CLI::ExistingFile);
  srgb->add_option("--samples", rgb_samples, "a grid PNG, a folder of images, or an idx4 file")->required();
  srgb->add_option("--real", rgb_real.data_dir, "the training images: a folder (resized to the encoder's size)")
      ->check(CLI::ExistingDirectory);
  srgb->add_option("--real-idx", rgb_real.idx_file, "or: the training images as an idx4 file")->check(CLI::ExistingFile);
  srgb->add_option("--max-real", rgb_real.max_images, "use at most this many real images (0 = all)")
      ->capture_default_str();
  srgb->add_option("--grid-pad", rgb_pad, "grid padding in pixels before upscaling (default: detect)");
  srgb->add_option("--grid-upscale", rgb_up, "grid upscale factor (default: detect)");
  srgb->add_option("--copy-threshold", rso.copy_rms,
                   "RMS difference per value ([0, 1] scale) to the nearest training image below which a "
                   "sample counts as a copy")->capture_default_str();
  srgb->add_option("--repeats", rso.baseline_repeats, "draws of the real-vs-real baseline")->capture_default_str();
  srgb->add_option("--json", rgb_json, "also write the JSON report to this file");
  srgb->add_flag("--per-sample", rgb_per_sample, "include per-sample nearest-neighbour distances in the JSON");

  // ---- info
  auto* info = app.add_subcommand("info", "print a classifier file's configuration and metadata");
  std::string info_file = DDPM_EXAMPLE_CLASSIFIER;
  info->add_option("--classifier", info_file, "classifier file")->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  Backend be(threads);
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, std::size_t(be.threads()));

  if (*train) {
    if (no_augment) tc.augment = ddpm::eval::Augment{0, 0, 0, false};
    auto data = ddpm::io::load_mnist_dir(data_dir, "train");
    const bool have_test = has_split(data_dir, "t10k");
    std::optional<ddpm::io::ImageDataset> test;
    if (have_test) test = ddpm::io::load_mnist_dir(data_dir, "t10k");
    const std::string train_sha = ddpm::eval::dataset_sha256(data);
    if (train_limit > 0 && train_limit < data.n) {
      data.n = train_limit;
      data.pixels.resize(train_limit * data.c * data.h * data.w);
      data.labels.resize(train_limit);
    }
    std::size_t classes = 0;
    for (auto y : data.labels) classes = std::max<std::size_t>(classes, std::size_t(y) + 1);
    cc.in_channels = data.c;
    cc.image_size = data.h;
    cc.num_classes = std::max<std::size_t>(classes, 2);
    ddpm::detail::require(data.h == data.w, "--data", data_dir, ": images are ", data.h, "x",
                          data.w, "; the classifier needs square images");
    ddpm::eval::Classifier<float, Backend> net(cc, be, tc.seed);
    std::fprintf(stderr,
                 "data: %zu training images %zux%zux%zu, %zu classes, %s test images, from %s\n",
                 data.n, data.c, data.h, data.w, cc.num_classes,
                 test ? std::to_string(test->n).c_str() : "no", data_dir.c_str());
    std::fprintf(stderr, "classifier: channels %s, depth %zu, %zu parameters, %d threads\n",
                 list_text(cc.channels).c_str(), cc.depth, net.num_parameters(), be.threads());
    const auto rep = ddpm::eval::train_classifier(net, data, test ? &*test : nullptr, tc);
    std::map<std::string, std::string> meta;
    meta["created_by"] = "ddpm-eval train-classifier";
    meta["data.name"] = folder_name(data_dir);
    meta["data.train_images"] = std::to_string(data.n);
    meta["data.train_sha256"] = train_sha;
    meta["data.train_limit"] = std::to_string(train_limit);
    if (test) {
      meta["data.test_images"] = std::to_string(test->n);
      meta["data.test_sha256"] = ddpm::eval::dataset_sha256(*test);
      meta["test_accuracy"] = ddpm::detail::cat(rep.test_accuracy);
    }
    meta["train.epochs"] = std::to_string(tc.epochs);
    meta["train.batch"] = std::to_string(tc.batch_size);
    meta["train.lr"] = ddpm::detail::cat(tc.lr);
    meta["train.seed"] = std::to_string(tc.seed);
    meta["train.augment"] =
        ddpm::detail::cat("shift ", tc.augment.max_shift, " rotate ", tc.augment.max_rotation_deg,
                          " scale ", tc.augment.max_scale, tc.augment.hflip ? " hflip" : "");
    meta["train.seconds"] = ddpm::detail::cat(rep.seconds);
    meta["train.threads"] = std::to_string(be.threads());
    meta["train.final_loss"] = ddpm::detail::cat(rep.epochs.back().train_loss);
    ddpm::eval::save_classifier(out_file, net, meta);
    std::printf("trained in %.1f s (%zu steps); test accuracy %s on %zu images; wrote %s\n",
                rep.seconds, rep.steps, test ? ddpm::detail::cat(rep.test_accuracy).c_str() : "n/a",
                test ? test->n : std::size_t{0}, out_file.c_str());
    return 0;
  }

  if (*tenc) {
    enc_data.image_size_given = enc_size->count() > 0;
    const ddpm::io::ImageDataset data = anime::load_training_images(enc_data);
    const std::string src = enc_data.idx_file.empty() ? enc_data.data_dir : enc_data.idx_file;
    std::fprintf(stderr, "data: %zu images %zux%zux%zu from %s; encoder on %zu of them (x4 turns)\n",
                 data.n, data.c, data.h, data.w, src.c_str(),
                 fec.max_images ? std::min(fec.max_images, data.n) : data.n);
    ddpm::eval::ClassifierTrainReport rep;
    auto net = ddpm::eval::train_feature_encoder<float, Backend>(data, fec, be, &rep);
    std::map<std::string, std::string> meta;
    meta["created_by"] = "ddpm-eval train-encoder";
    meta["data.name"] = folder_name(src);
    meta["data.train_images"] = std::to_string(data.n);
    meta["data.train_sha256"] = ddpm::eval::dataset_sha256(data);
    meta["train.epochs"] = std::to_string(fec.train.epochs);
    meta["train.seconds"] = ddpm::detail::cat(rep.seconds);
    meta["train.final_loss"] = ddpm::detail::cat(rep.epochs.back().train_loss);
    meta["train.final_accuracy"] = ddpm::detail::cat(rep.epochs.back().train_accuracy);
    ddpm::eval::save_feature_encoder(enc_out, net, meta);
    std::printf("trained the %zux%zu encoder in %.1f s (%zu steps, rotation accuracy %.3f on the last "
                "epoch, chance 0.25); wrote %s\n",
                data.h, data.w, rep.seconds, rep.steps, rep.epochs.back().train_accuracy, enc_out.c_str());
    return 0;
  }

  if (*srgb) {
    // The encoder's own size and channels decide how the samples and the real images are read.
    const auto probe = ddpm::eval::load_classifier<float, Backend>(enc_file, be);
    const std::size_t size = probe.net.config().image_size, ch = probe.net.config().in_channels;
    auto enc = ddpm::eval::load_feature_encoder<float, Backend>(enc_file, ch, size, be);
    const ddpm::eval::SampleSet set = ddpm::eval::load_samples(rgb_samples, ch, size, rgb_pad, rgb_up);
    if (set.c != ch)
      throw ddpm::IoError(rgb_samples, ddpm::detail::cat("images have ", set.c, " channels, the encoder takes ", ch));
    rgb_real.image_size = size;
    rgb_real.image_size_given = true;
    if (rgb_real.data_dir.empty() && rgb_real.idx_file.empty())
      throw std::invalid_argument("score-rgb: give the training images with --real DIR or --real-idx FILE");
    const ddpm::io::ImageDataset real = anime::load_training_images(rgb_real);
    ddpm::eval::RgbEvaluator<float, Backend> ev(enc.net, real, rso);
    const auto report = ev.score(set.images, set.n);
    nlohmann::ordered_json head;
    head["samples"] = set.source;
    head["samples_kind"] = set.kind;
    head["encoder"] = enc_file;
    if (enc.metadata.count("data.name")) head["encoder_data"] = enc.metadata.at("data.name");
    head["real"] = rgb_real.data_dir.empty() ? rgb_real.idx_file : rgb_real.data_dir;
    if (enc.metadata.count("data.train_sha256") &&
        enc.metadata.at("data.train_sha256") != ddpm::eval::dataset_sha256(real))
      std::fprintf(stderr, "note: the encoder was trained on other images (%s) than --real\n",
                   enc.metadata.count("data.name") ? enc.metadata.at("data.name").c_str() : "?");
    head.update(report.to_json(rgb_per_sample));
    const std::string text = head.dump(2);
    std::cout << text << '\n';
    if (!rgb_json.empty()) {
      const std::string body = text + "\n";
      ddpm::io::write_file_atomic(rgb_json, std::as_bytes(std::span<const char>(body.data(), body.size())));
    }
    std::fprintf(stderr, "%s\n", report.summary().c_str());
    return 0;
  }

  if (*info) {
    auto loaded = ddpm::eval::load_classifier<float, Backend>(info_file, be);
    nlohmann::ordered_json j;
    j["file"] = info_file;
    j["parameters"] = loaded.net.num_parameters();
    for (const auto& [k, v] : loaded.metadata) j["metadata"][k] = v;
    std::cout << j.dump(2) << '\n';
    return 0;
  }

  // score
  auto loaded = ddpm::eval::load_classifier<float, Backend>(classifier_file, be);
  const auto& cfg = loaded.net.config();
  ddpm::eval::SampleSet set = ddpm::eval::load_samples(samples, cfg.in_channels, cfg.image_size,
                                                       grid_pad, grid_upscale, labels_idx);
  std::vector<std::int32_t> labels = set.labels;
  if (!labels_text.empty()) labels = ddpm::eval::parse_labels(labels_text);
  if (rows_are_classes || cols_are_classes) labels = ddpm::eval::grid_labels(set, cols_are_classes);
  ddpm::detail::require(labels.empty() || labels.size() == set.n, "--labels", labels.size(),
                        " labels for ", set.n, " images in ", set.source);
  if (!has_split(real_dir, real_split))
    throw ddpm::IoError(real_dir,
                        "no held-out split '" + real_split +
                            "' (e.g. t10k-images-idx3-ubyte[.gz]) for the Fréchet reference");
  const auto held_out = ddpm::io::load_mnist_dir(real_dir, real_split, /*require_labels=*/false);
  std::optional<ddpm::io::ImageDataset> train_set;
  if (!no_nearest && has_split(real_dir, train_split))
    train_set = ddpm::io::load_mnist_dir(real_dir, train_split, /*require_labels=*/false);
  else if (!no_nearest)
    std::fprintf(stderr, "note: %s has no '%s' split; nearest-training distances skipped\n",
                 real_dir.c_str(), train_split.c_str());
  if (train_set && loaded.metadata.count("data.train_sha256") &&
      train_set->labels.size() == train_set->n &&
      ddpm::eval::dataset_sha256(*train_set) != loaded.metadata.at("data.train_sha256"))
    std::fprintf(stderr, "note: the classifier was trained on other data (%s) than %s/%s\n",
                 loaded.metadata.count("data.name") ? loaded.metadata.at("data.name").c_str() : "?",
                 real_dir.c_str(), train_split.c_str());
  ddpm::eval::Evaluator<float, Backend> ev(loaded.net, held_out, train_set ? &*train_set : nullptr,
                                           so);
  const auto report = ev.score(set.images, set.n, labels);
  auto j = report.to_json(per_sample);
  nlohmann::ordered_json head;
  head["samples"] = set.source;
  head["samples_kind"] = set.kind;
  if (set.kind == "grid") head["grid"] = {{"rows", set.grid_rows}, {"cols", set.grid_cols}};
  head["classifier"] = classifier_file;
  if (loaded.metadata.count("data.name")) head["classifier_data"] = loaded.metadata.at("data.name");
  if (loaded.metadata.count("test_accuracy"))
    head["classifier_test_accuracy"] = std::stod(loaded.metadata.at("test_accuracy"));
  head["real"] = real_dir;
  head["real_split"] = real_split;
  head.update(j);
  const std::string text = head.dump(2);
  std::cout << text << '\n';
  if (!json_out.empty()) {
    const std::string body = text + "\n";
    ddpm::io::write_file_atomic(json_out,
                                std::as_bytes(std::span<const char>(body.data(), body.size())));
  }
  std::fprintf(stderr, "%s\n", report.summary().c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "ddpm-eval: error: %s\n", e.what());
  return 1;
}
