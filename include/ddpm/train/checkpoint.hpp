// SPDX-License-Identifier: MIT
// ddpm/train/checkpoint.hpp — training checkpoints as safetensors with a JSON __metadata__ config.
//
// Contents: the weights ("model.<param>"), the EMA weights ("ema.<param>"), the Adam moments
// ("adam_m.<param>", "adam_v.<param>"), and metadata: the format tag, the model signature (one
// key "sig.<field>" per field: schedule, T, target, loss, U-Net config, ...), the step, the Adam
// step count, the EMA update count, the seed and the data cursor. Everything a resumed run needs
// to continue bit-identically (all random draws are functions of (seed, step)).
//
// Writes are atomic (temporary file, fsync, rename, fsync of the folder). save_checkpoint keeps
// the previous good file as "<path>.prev" (hard link swapped in atomically before the new file
// replaces <path>), so at every instant both names hold a complete checkpoint.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <unistd.h>

#include "ddpm/core/assert.hpp"
#include "ddpm/diffusion/diffusion.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/optim/adam.hpp"
#include "ddpm/optim/ema.hpp"

namespace ddpm {

/// A checkpoint written for another configuration than the model it is loaded into.
class CheckpointMismatch : public std::runtime_error {
 public:
  CheckpointMismatch(const std::string& path, const std::string& field, const std::string& file_value,
                     const std::string& model_value)
      : std::runtime_error(path + ": checkpoint was written for " + field + " = " + file_value +
                           ", but this model has " + field + " = " + model_value),
        field_(field) {}
  [[nodiscard]] const std::string& field() const noexcept { return field_; }

 private:
  std::string field_;
};

inline constexpr const char* checkpoint_format = "ddpm-checkpoint-1";

/// Counters saved with a checkpoint.
struct TrainCounters {
  std::uint64_t step = 0;         ///< training steps done (the next step has this number)
  std::uint64_t adam_steps = 0;   ///< Adam updates done (fewer than step if steps were skipped)
  std::uint64_t ema_updates = 0;
  std::uint64_t nonfinite_steps = 0;
  std::uint64_t samples_seen = 0; ///< data cursor: samples consumed (step * global batch)
};

namespace detail {

template <class T, class B>
void add_entries(std::vector<io::TensorEntry>& entries, std::vector<std::vector<T>>& store,
                 const std::string& name, const Tensor<T, B>& t) {
  store.push_back(t.to_vector());
  io::TensorEntry e;
  e.name = name;
  e.dtype = sizeof(T) == 4 ? "F32" : "F64";
  for (std::size_t i = 0; i < t.shape().rank; ++i) e.shape.push_back(t.shape()[i]);
  e.bytes = std::as_bytes(std::span<const T>(store.back()));
  entries.push_back(std::move(e));
}

inline std::string meta_u64(std::uint64_t v) { return std::to_string(v); }

inline std::uint64_t parse_u64(const std::map<std::string, std::string>& m, const std::string& key,
                               const std::string& path) {
  const auto it = m.find(key);
  if (it == m.end()) throw IoError(path, "checkpoint metadata lacks '" + key + "'");
  try {
    std::size_t pos = 0;
    const unsigned long long v = std::stoull(it->second, &pos);
    if (pos != it->second.size()) throw std::invalid_argument("trailing characters");
    return v;
  } catch (const std::exception&) {
    throw IoError(path, "checkpoint metadata '" + key + "' is not an unsigned integer: '" +
                            it->second + "'");
  }
}

template <class T, class B>
void load_tensor(const io::SafeTensorsFile& f, const std::string& name, Tensor<T, B>& t) {
  if (!f.contains(name)) throw IoError(f.path(), "checkpoint lacks tensor '" + name + "'");
  const auto& info = f.info(name);
  Shape s;
  for (std::size_t d : info.shape) {
    if (s.rank == Shape::max_rank) break;
    s.dims[s.rank++] = d;
  }
  if (!(s == t.shape()) || info.shape.size() != t.shape().rank)
    throw IoError(f.path(), "tensor '" + name + "' has shape " + s.str() + ", the model expects " +
                                t.shape().str());
  std::vector<T> v;
  if constexpr (sizeof(T) == 4)
    v = f.f32(name);
  else
    v = f.f64(name);
  t.copy_from(v);
}

/// Replaces `prev` by a hard link to `path` (atomically, through a temporary name).
inline void keep_previous(const std::filesystem::path& path, const std::filesystem::path& prev) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return;
  const std::filesystem::path tmp = prev.string() + ".link." + std::to_string(::getpid());
  std::filesystem::remove(tmp, ec);
  if (::link(path.c_str(), tmp.c_str()) != 0) {
    // File systems without hard links: fall back to a copy (still written before the rename).
    std::filesystem::copy_file(path, tmp, std::filesystem::copy_options::overwrite_existing, ec);
    if (ec) throw IoError(prev.string(), "cannot keep the previous checkpoint: " + ec.message());
  }
  if (std::rename(tmp.c_str(), prev.c_str()) != 0) {
    const std::string err = std::strerror(errno);
    std::filesystem::remove(tmp, ec);
    throw IoError(prev.string(), "cannot keep the previous checkpoint: " + err);
  }
}

}  // namespace detail

/// Writes a checkpoint of `model` (and, if given, Adam and EMA state) to `path` atomically,
/// keeping the previous file as <path>.prev when `keep_prev`. `extra` metadata is stored as is.
template <class T, class B>
void save_checkpoint(const std::filesystem::path& path, Model<T, B>& model,
                     std::type_identity_t<optim::AdamOptimizer<T, B>>* adam,
                     std::type_identity_t<optim::Ema<T, B>>* ema,
                     const TrainCounters& counters,
                     const std::map<std::string, std::string>& extra = {}, bool keep_prev = true) {
  std::vector<io::TensorEntry> entries;
  std::vector<std::vector<T>> store;
  store.reserve(4096);  // spans into store must stay valid
  model.net().visit_parameters([&](std::string_view name, auto& p) {
    detail::add_entries(entries, store, "model." + std::string(name), p.value);
  });
  if (ema) ema->visit_state([&](const std::string& name, auto& t) { detail::add_entries(entries, store, name, t); });
  if (adam) adam->visit_state([&](const std::string& name, auto& t) { detail::add_entries(entries, store, name, t); });
  DDPM_ASSERT(store.size() <= 4096, "too many tensors for the reserved store");
  std::map<std::string, std::string> meta = extra;
  meta["format"] = checkpoint_format;
  for (const auto& [k, v] : model.signature()) meta["sig." + k] = v;
  meta["seed"] = detail::meta_u64(model.seed());
  meta["step"] = detail::meta_u64(counters.step);
  meta["adam_steps"] = detail::meta_u64(adam ? adam->steps() : counters.adam_steps);
  meta["ema_updates"] = detail::meta_u64(ema ? ema->updates() : counters.ema_updates);
  meta["nonfinite_steps"] = detail::meta_u64(counters.nonfinite_steps);
  meta["samples_seen"] = detail::meta_u64(counters.samples_seen);
  meta["has_ema"] = ema ? "1" : "0";
  meta["has_adam"] = adam ? "1" : "0";
  if (keep_prev) detail::keep_previous(path, path.string() + ".prev");
  io::write_safetensors(path, entries, meta);
}

/// What load_checkpoint read besides the tensors.
struct LoadedCheckpoint {
  std::string path;
  std::map<std::string, std::string> metadata;
  TrainCounters counters;
  bool has_ema = false, has_adam = false;
};

/// Loads a checkpoint into `model` (weights), and into `adam` and `ema` when given and present.
/// @throws CheckpointMismatch naming the first differing signature field (schedule, T, target,
///         loss, U-Net config, ...); IoError for a missing, corrupt or incomplete file.
/// With `ema_into_weights`, the EMA weights (if present) are loaded as the model weights: what
/// sampling from a checkpoint uses by default.
template <class T, class B>
LoadedCheckpoint load_checkpoint(const std::filesystem::path& path, Model<T, B>& model,
                                 std::type_identity_t<optim::AdamOptimizer<T, B>>* adam = nullptr,
                                 std::type_identity_t<optim::Ema<T, B>>* ema = nullptr,
                                 bool ema_into_weights = false) {
  const io::SafeTensorsFile f = io::SafeTensorsFile::load(path);
  LoadedCheckpoint out;
  out.path = path.string();
  out.metadata = f.metadata();
  const auto& m = out.metadata;
  const auto fmt = m.find("format");
  if (fmt == m.end() || fmt->second != checkpoint_format)
    throw IoError(out.path, std::string("not a ddpm checkpoint (metadata 'format' is ") +
                                (fmt == m.end() ? "missing" : "'" + fmt->second + "'") +
                                ", expected '" + checkpoint_format + "')");
  for (const auto& [k, v] : model.signature()) {
    const auto it = m.find("sig." + k);
    if (it == m.end()) throw CheckpointMismatch(out.path, k, "(missing)", v);
    if (it->second != v) throw CheckpointMismatch(out.path, k, it->second, v);
  }
  const std::string sd = std::to_string(model.seed());
  if (m.count("seed") && m.at("seed") != sd) throw CheckpointMismatch(out.path, "seed", m.at("seed"), sd);
  out.counters.step = detail::parse_u64(m, "step", out.path);
  out.counters.adam_steps = detail::parse_u64(m, "adam_steps", out.path);
  out.counters.ema_updates = detail::parse_u64(m, "ema_updates", out.path);
  out.counters.nonfinite_steps = detail::parse_u64(m, "nonfinite_steps", out.path);
  out.counters.samples_seen = detail::parse_u64(m, "samples_seen", out.path);
  out.has_ema = m.count("has_ema") && m.at("has_ema") == "1";
  out.has_adam = m.count("has_adam") && m.at("has_adam") == "1";
  const std::string wprefix = (ema_into_weights && out.has_ema) ? "ema." : "model.";
  model.net().visit_parameters([&](std::string_view name, auto& p) {
    detail::load_tensor(f, wprefix + std::string(name), p.value);
  });
  if (ema && out.has_ema) {
    ema->visit_state([&](const std::string& name, auto& t) { detail::load_tensor(f, name, t); });
    ema->set_updates(out.counters.ema_updates);
  }
  if (adam && out.has_adam) {
    adam->visit_state([&](const std::string& name, auto& t) { detail::load_tensor(f, name, t); });
    adam->set_steps(out.counters.adam_steps);
  }
  return out;
}

}  // namespace ddpm
