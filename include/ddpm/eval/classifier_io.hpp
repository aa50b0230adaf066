// SPDX-License-Identifier: MIT
// ddpm/eval/classifier_io.hpp — classifier weights as safetensors (F32), with the configuration
// and the provenance of the training data in the metadata. Needs ddpm::io (link ddpm::io).
//
// Metadata written (all strings):
//   format = "ddpm.eval.classifier", format_version = "1",
//   config.in_channels, config.image_size, config.num_classes, config.channels ("32,64,96"),
//   config.depth, config.groups,
//   and whatever the caller adds (train_classifier's tool records data.name, data.train_images,
//   data.train_sha256, data.test_images, data.test_sha256, test_accuracy, train.seconds, ...).
#pragma once

#include <cstddef>
#include <cstring>
#include <filesystem>
#include <map>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "ddpm/core/assert.hpp"
#include "ddpm/eval/classifier.hpp"
#include "ddpm/io/safetensors.hpp"

namespace ddpm::eval {

/// Value of the "format" metadata key of a classifier file.
inline constexpr std::string_view classifier_format = "ddpm.eval.classifier";

/// The metadata keys "config.*" of a configuration.
[[nodiscard]] inline std::map<std::string, std::string> config_to_metadata(
    const ClassifierConfig& c);

/// The configuration recorded in a classifier file's metadata.
/// @throws IoError(path, ...) naming a missing or malformed key, or a file that is not a
///         classifier (no format = "ddpm.eval.classifier", e.g. a diffusion checkpoint).
[[nodiscard]] inline ClassifierConfig config_from_metadata(
    const std::map<std::string, std::string>& m, const std::string& path);

/// Writes the classifier's parameters (F32) and metadata (config plus `extra`) atomically.
/// @throws IoError(path, ...) if the file cannot be written.
template <std::floating_point T, class B>
void save_classifier(const std::filesystem::path& path, Classifier<T, B>& net,
                     const std::map<std::string, std::string>& extra = {});

/// A classifier read from a file, with the file's metadata.
template <std::floating_point T, class B>
struct LoadedClassifier {
  Classifier<T, B> net;
  std::map<std::string, std::string> metadata;
};

/// Reads a classifier saved by save_classifier (configuration from its metadata).
/// If `expected` is given, the file's configuration must equal it.
/// @throws IoError(path, ...) naming the problem: not a classifier file, a configuration that
///         differs from `expected` (naming the field and both values), a missing tensor, a
///         tensor of the wrong shape or dtype.
template <std::floating_point T, class B>
[[nodiscard]] LoadedClassifier<T, B> load_classifier(const std::filesystem::path& path,
                                                     const B& backend = {},
                                                     const ClassifierConfig* expected = nullptr);

// ---------------------------------------------------------------- implementation

namespace detail {
inline std::string join_sizes(const std::vector<std::size_t>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(v[i]);
  }
  return s;
}
inline std::string shape_text(const std::vector<std::size_t>& v) {
  std::string s(1, '(');
  s += join_sizes(v);
  s += ')';
  return s;
}
}  // namespace detail

inline std::map<std::string, std::string> config_to_metadata(const ClassifierConfig& c) {
  return {{"format", std::string(classifier_format)},
          {"format_version", "1"},
          {"config.in_channels", std::to_string(c.in_channels)},
          {"config.image_size", std::to_string(c.image_size)},
          {"config.num_classes", std::to_string(c.num_classes)},
          {"config.channels", detail::join_sizes(c.channels)},
          {"config.depth", std::to_string(c.depth)},
          {"config.groups", std::to_string(c.groups)}};
}

inline ClassifierConfig config_from_metadata(const std::map<std::string, std::string>& m,
                                             const std::string& path) {
  const auto fmt = m.find("format");
  if (fmt == m.end() || fmt->second != classifier_format)
    throw IoError(path,
                  detail::cat("not a ddpm-eval classifier: metadata 'format' is ",
                              fmt == m.end() ? std::string("missing") : "'" + fmt->second + "'",
                              ", expected '", classifier_format,
                              "' (train one with `ddpm-eval train-classifier`)"));
  const auto ver = m.find("format_version");
  if (ver == m.end() || ver->second != "1")
    throw IoError(path, "unsupported classifier format_version '" +
                            (ver == m.end() ? std::string("missing") : ver->second) +
                            "' (this build reads version 1)");
  auto get = [&](const std::string& k) -> const std::string& {
    const auto it = m.find(k);
    if (it == m.end()) throw IoError(path, "classifier metadata lacks '" + k + "'");
    return it->second;
  };
  auto number = [&](const std::string& k) -> std::size_t {
    const std::string& v = get(k);
    std::size_t pos = 0;
    unsigned long long x = 0;
    try {
      x = std::stoull(v, &pos);
    } catch (const std::exception&) {
      pos = 0;
    }
    if (pos == 0 || pos != v.size() || v[0] == '-')
      throw IoError(path, "classifier metadata '" + k + "' = '" + v + "' is not a count");
    return std::size_t(x);
  };
  ClassifierConfig c;
  c.in_channels = number("config.in_channels");
  c.image_size = number("config.image_size");
  c.num_classes = number("config.num_classes");
  c.depth = number("config.depth");
  c.groups = number("config.groups");
  c.channels.clear();
  std::stringstream ss(get("config.channels"));
  std::string item;
  while (std::getline(ss, item, ',')) {
    std::size_t pos = 0;
    unsigned long long x = 0;
    try {
      x = std::stoull(item, &pos);
    } catch (const std::exception&) {
      pos = 0;
    }
    if (pos == 0 || pos != item.size())
      throw IoError(path, "classifier metadata 'config.channels' = '" + get("config.channels") +
                              "' is not a comma-separated list of counts");
    c.channels.push_back(std::size_t(x));
  }
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    throw IoError(path, std::string("invalid classifier configuration in metadata: ") + e.what());
  }
  return c;
}

template <std::floating_point T, class B>
void save_classifier(const std::filesystem::path& path, Classifier<T, B>& net,
                     const std::map<std::string, std::string>& extra) {
  std::vector<std::vector<float>> store;
  std::vector<std::string> names;
  std::vector<std::vector<std::size_t>> shapes;
  net.visit_parameters([&](std::string_view name, nn::Parameter<T, B>& p) {
    const auto v = p.value.to_vector();
    store.emplace_back(v.begin(), v.end());
    names.emplace_back(name);
    const Shape& s = p.shape();
    shapes.emplace_back(s.dims.begin(), s.dims.begin() + s.rank);
  });
  std::vector<io::TensorEntry> entries;
  for (std::size_t i = 0; i < store.size(); ++i)
    entries.push_back(io::TensorEntry{
        names[i], "F32", shapes[i],
        std::span<const std::byte>(reinterpret_cast<const std::byte*>(store[i].data()),
                                   store[i].size() * sizeof(float))});
  auto meta = extra;
  for (auto& [k, v] : config_to_metadata(net.config())) meta[k] = v;
  io::write_safetensors(path, entries, meta);
}

template <std::floating_point T, class B>
LoadedClassifier<T, B> load_classifier(const std::filesystem::path& path, const B& backend,
                                       const ClassifierConfig* expected) {
  const std::string file = path.string();
  const io::SafeTensorsFile f = io::SafeTensorsFile::load(path);
  const ClassifierConfig cfg = config_from_metadata(f.metadata(), file);
  if (expected) {
    auto differ = [&](const char* field, const std::string& have, const std::string& want) {
      if (have != want)
        throw IoError(file, detail::cat("classifier of another configuration: ", field, " is ",
                                        have, " in the file, expected ", want));
    };
    differ("in_channels", std::to_string(cfg.in_channels), std::to_string(expected->in_channels));
    differ("image_size", std::to_string(cfg.image_size), std::to_string(expected->image_size));
    differ("num_classes", std::to_string(cfg.num_classes), std::to_string(expected->num_classes));
    differ("channels", detail::join_sizes(cfg.channels), detail::join_sizes(expected->channels));
    differ("depth", std::to_string(cfg.depth), std::to_string(expected->depth));
    differ("groups", std::to_string(cfg.groups), std::to_string(expected->groups));
  }
  LoadedClassifier<T, B> out{Classifier<T, B>(cfg, backend), f.metadata()};
  std::size_t visited = 0;
  out.net.visit_parameters([&](std::string_view name, nn::Parameter<T, B>& p) {
    ++visited;
    if (!f.contains(name))
      throw IoError(file, detail::cat("classifier file lacks tensor '", name, "'"));
    const auto& info = f.info(name);
    const Shape& s = p.shape();
    const std::vector<std::size_t> want(s.dims.begin(), s.dims.begin() + s.rank);
    if (info.shape != want)
      throw IoError(file,
                    detail::cat("tensor '", name, "' has shape ", detail::shape_text(info.shape),
                                ", the configuration needs ", detail::shape_text(want)));
    const std::vector<float> v = f.f32(name);
    const std::vector<T> t(v.begin(), v.end());
    p.value.copy_from(t);
  });
  if (f.size() != visited)
    throw IoError(file, detail::cat("classifier file holds ", f.size(),
                                    " tensors, the configuration has ", visited, " parameters"));
  return out;
}

}  // namespace ddpm::eval
