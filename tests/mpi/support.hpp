// SPDX-License-Identifier: MIT
// tests/mpi/support.hpp — shared pieces of the data-parallel tests and of dist_train: a tiny
// U-Net and data set, training configs, state snapshots and their comparison.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "ddpm/ddpm.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/train/distributed.hpp"
#include "ddpm/train/trainer.hpp"
#include "../helpers/tiny_unet.hpp"

namespace ddpm::test {

/// The mnist configuration of DESIGN.md (1,624,577 parameters).
inline nn::UNetConfig mnist_unet() { return nn::UNetConfig::mnist(); }

/// n synthetic images of size s x s (lines and a blob per class) with labels i % classes.
inline io::ImageDataset synthetic_data(std::size_t n, std::size_t s, std::size_t classes = 3) {
  io::ImageDataset d;
  d.n = n;
  d.c = 1;
  d.h = d.w = s;
  d.pixels.resize(n * s * s);
  d.labels.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    d.labels[i] = std::int32_t(classes ? i % classes : 0);
    for (std::size_t p = 0; p < s * s; ++p) {
      const std::size_t y = p / s, x = p % s;
      d.pixels[i * s * s + p] = std::uint8_t((x == i % s || y == (i * 3) % s) ? 255 : (x * y + i) % 64);
    }
  }
  return d;
}

inline TrainConfig quiet_config(std::size_t batch, std::uint64_t steps) {
  TrainConfig c;
  c.batch_size = batch;
  c.adam.lr = 1e-3;
  c.lr_warmup = 3;
  c.max_steps = steps;
  c.progress = false;
  c.handle_sigint = false;
  c.ema = {.decay = 0.99};
  return c;
}

/// Everything a step changes: weights, Adam moments, EMA weights (flattened per group).
struct Snapshot {
  std::map<std::string, std::vector<double>> groups;  // "weights", "adam_m", "adam_v", "ema"
  std::uint64_t step = 0, adam_steps = 0;
};

template <class T, class B>
Snapshot snapshot(Model<T, B>& model, Trainer<T, B>& tr) {
  Snapshot s;
  auto add = [&](const std::string& g, const auto& t) {
    const auto v = t.to_vector();
    auto& dst = s.groups[g];
    dst.insert(dst.end(), v.begin(), v.end());
  };
  model.net().visit_parameters([&](std::string_view, auto& p) { add("weights", p.value); });
  tr.adam().visit_state([&](const std::string& name, auto& t) {
    add(name.rfind("adam_m.", 0) == 0 ? "adam_m" : "adam_v", t);
  });
  if (tr.ema()) tr.ema()->visit_state([&](const std::string&, auto& t) { add("ema", t); });
  s.step = tr.counters().step;
  s.adam_steps = tr.adam().steps();
  return s;
}

/// The same groups from a checkpoint file.
inline Snapshot snapshot(const std::filesystem::path& checkpoint) {
  const auto f = io::SafeTensorsFile::load(checkpoint);
  Snapshot s;
  for (const auto& name : f.names()) {
    std::string g = "weights";
    for (const char* p : {"adam_m", "adam_v", "ema"})
      if (name.rfind(std::string(p) + ".", 0) == 0) g = p;
    const auto v = f.f32(name);
    auto& dst = s.groups[g];
    dst.insert(dst.end(), v.begin(), v.end());
  }
  return s;
}

/// Largest |a - b| per group, and whether the groups and sizes agree.
struct Difference {
  std::map<std::string, double> max_abs;
  bool same_layout = true;
  [[nodiscard]] double worst() const {
    double w = 0;
    for (const auto& [g, d] : max_abs) w = std::max(w, d);
    return same_layout ? w : INFINITY;
  }
  [[nodiscard]] std::string str() const {
    std::string out = same_layout ? "" : "layout differs; ";
    for (const auto& [g, d] : max_abs) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%s %.3g  ", g.c_str(), d);
      out += buf;
    }
    return out;
  }
};

inline Difference compare(const Snapshot& a, const Snapshot& b) {
  Difference d;
  if (a.groups.size() != b.groups.size()) d.same_layout = false;
  for (const auto& [g, va] : a.groups) {
    const auto it = b.groups.find(g);
    if (it == b.groups.end() || it->second.size() != va.size()) {
      d.same_layout = false;
      continue;
    }
    double m = 0;
    for (std::size_t i = 0; i < va.size(); ++i) {
      const double e = std::abs(va[i] - it->second[i]);
      m = std::isnan(e) ? INFINITY : std::max(m, e);
    }
    d.max_abs[g] = m;
  }
  return d;
}

}  // namespace ddpm::test
