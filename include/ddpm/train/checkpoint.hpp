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
// replaces <path>), so at every instant both names hold a complete checkpoint. Temporary files
// left behind by a process that was killed mid-save are removed by the next save to the same
// path. A CRC-32 over the metadata and every tensor (metadata "checksum") catches a file damaged
// after it was written; load_checkpoint verifies it and every tensor before it changes the
// model, so a failed load leaves the model, Adam and EMA as they were. load_latest_checkpoint
// falls back to <path>.prev when <path> is missing or damaged.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zlib.h>

#include "ddpm/core/assert.hpp"
#include "ddpm/diffusion/diffusion.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/optim/adam.hpp"
#include "ddpm/optim/ema.hpp"

namespace ddpm {

/// A checkpoint written for another configuration than the model it is loaded into.
/// field() is the signature field, refined to the differing part of a structured value where
/// there is one (e.g. "unet.num_classes", "schedule.s", "loss.delta").
class CheckpointMismatch : public std::runtime_error {
 public:
  CheckpointMismatch(const std::string& path, const std::string& field, const std::string& file_value,
                     const std::string& model_value, const std::string& note = {})
      : std::runtime_error(path + ": checkpoint was written for " + field + " = " + file_value +
                           ", but this model has " + field + " = " + model_value +
                           (note.empty() ? std::string() : " (" + note + ")")),
        field_(field) {}
  [[nodiscard]] const std::string& field() const noexcept { return field_; }

 private:
  std::string field_;
};

/// Format tag written into every checkpoint ("format" metadata). Version 2 adds the checksum
/// and requires it; version 1 files (no checksum) are still read.
inline constexpr const char* checkpoint_format = "ddpm-checkpoint-2";
inline constexpr const char* checkpoint_format_v1 = "ddpm-checkpoint-1";

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

/// Splits a self-description "name{k=v, k2=[a, b]}" or "name(k=v,k2=w)" into its name and
/// (key, value) items; false if `s` has no such structure.
inline bool split_description(std::string_view s, std::string_view& name,
                              std::vector<std::pair<std::string_view, std::string_view>>& items) {
  const std::size_t open = s.find_first_of("{(");
  if (open == std::string_view::npos || open == 0 || s.size() < open + 2) return false;
  const char close = s[open] == '{' ? '}' : ')';
  if (s.back() != close) return false;
  name = s.substr(0, open);
  items.clear();
  const std::string_view body = s.substr(open + 1, s.size() - open - 2);
  int depth = 0;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= body.size(); ++i) {
    const char c = i < body.size() ? body[i] : ',';
    if (c == '[' || c == '{' || c == '(') ++depth;
    if (c == ']' || c == '}' || c == ')') --depth;
    if (c != ',' || depth != 0) continue;
    std::string_view item = body.substr(start, i - start);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0) return false;
    items.emplace_back(item.substr(0, eq), item.substr(eq + 1));
    start = i + 1;
  }
  return true;
}

/// The CheckpointMismatch for signature field `field`: when both values are descriptions of
/// the same kind ("UNetConfig{...}", "cosine(...)"), it names the first differing item.
[[nodiscard]] inline CheckpointMismatch signature_mismatch(const std::string& path,
                                                           const std::string& field,
                                                           const std::string& file_value,
                                                           const std::string& model_value) {
  std::string_view na, nb;
  std::vector<std::pair<std::string_view, std::string_view>> a, b;
  if (split_description(file_value, na, a) && split_description(model_value, nb, b) && na == nb) {
    // (keys copied out of the structured bindings: clang before 16 cannot capture those)
    for (const auto& [k, v] : a) {
      const std::string_view key = k;
      const auto it = std::find_if(b.begin(), b.end(), [&](const auto& x) { return x.first == key; });
      const std::string mv = it == b.end() ? "(missing)" : std::string(it->second);
      if (mv != v)
        return CheckpointMismatch(path, field + "." + std::string(k), std::string(v), mv,
                                  "file: " + file_value + "; model: " + model_value);
    }
    for (const auto& [k, v] : b)
      if (const std::string_view key = k;
          std::none_of(a.begin(), a.end(), [&](const auto& x) { return x.first == key; }))
        return CheckpointMismatch(path, field + "." + std::string(k), "(missing)", std::string(v),
                                  "file: " + file_value + "; model: " + model_value);
  }
  return CheckpointMismatch(path, field, file_value, model_value);
}

/// Key of the checksum in a checkpoint's metadata; the value is "crc32:" and 8 hex digits.
inline constexpr const char* checksum_key = "checksum";

/// Incremental CRC-32 (zlib's) over the checkpoint content that the checksum covers: every
/// metadata pair but the checksum itself, then every tensor in name order (name, dtype, shape,
/// bytes), each part length-prefixed so that no two contents share an encoding.
class ChecksumBuilder {
 public:
  void metadata(const std::map<std::string, std::string>& m) {
    for (const auto& [k, v] : m) {
      if (k == checksum_key) continue;
      text(k);
      text(v);
    }
  }
  void tensor(std::string_view name, std::string_view dtype, std::span<const std::size_t> shape,
              std::span<const std::byte> bytes) {
    text(name);
    text(dtype);
    number(shape.size());
    for (const std::size_t d : shape) number(d);
    number(bytes.size());
    raw(bytes.data(), bytes.size());
  }
  [[nodiscard]] std::string value() const {
    static const char* hex = "0123456789abcdef";
    std::string s = "crc32:00000000";
    std::uint32_t c = static_cast<std::uint32_t>(crc_);
    for (std::size_t i = 0; i < 8; ++i, c >>= 4) s[s.size() - 1 - i] = hex[c & 15u];
    return s;
  }

 private:
  void raw(const void* p, std::size_t n) {
    if (n == 0) return;  // zlib treats a null buffer as "return the initial value"
    crc_ = ::crc32_z(crc_, static_cast<const Bytef*>(p), static_cast<z_size_t>(n));
  }
  void number(std::uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
    raw(b, 8);
  }
  void text(std::string_view s) {
    number(s.size());
    raw(s.data(), s.size());
  }
  unsigned long crc_ = ::crc32_z(0L, Z_NULL, 0);
};

inline std::uint64_t parse_u64(const std::map<std::string, std::string>& m, const std::string& key,
                               const std::string& path) {
  const auto it = m.find(key);
  if (it == m.end()) throw IoError(path, "checkpoint metadata lacks '" + key + "'");
  try {
    // stoull would accept leading blanks and a sign ("-1" wraps around): digits only.
    if (it->second.empty() || it->second.front() < '0' || it->second.front() > '9')
      throw std::invalid_argument("not a number");
    std::size_t pos = 0;
    const unsigned long long v = std::stoull(it->second, &pos);
    if (pos != it->second.size()) throw std::invalid_argument("trailing characters");
    return v;
  } catch (const std::exception&) {
    throw IoError(path, "checkpoint metadata '" + key + "' is not an unsigned integer: '" +
                            it->second + "'");
  }
}

/// Checks that the file has tensor `name` with the shape of `t` and the dtype of T.
template <class T, class B>
void check_tensor(const io::SafeTensorsFile& f, const std::string& name, const Tensor<T, B>& t) {
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
  const char* dtype = sizeof(T) == 4 ? "F32" : "F64";
  if (info.dtype != dtype)
    throw IoError(f.path(), "tensor '" + name + "' has dtype " + info.dtype + ", expected " + dtype);
}

/// Copies tensor `name` of the file into `t` (after check_tensor).
template <class T, class B>
void load_tensor(const io::SafeTensorsFile& f, const std::string& name, Tensor<T, B>& t) {
  if constexpr (sizeof(T) == 4)
    t.copy_from(f.f32(name));
  else
    t.copy_from(f.f64(name));
}

/// Replaces `prev` by a hard link to `path` (atomically, through a temporary name).
inline void keep_previous(const std::filesystem::path& path, const std::filesystem::path& prev) {
  struct ::stat sp {}, sv {};
  if (::stat(path.c_str(), &sp) != 0) return;  // first save: nothing to keep
  // Already the same file (a save failed after keeping it): nothing to do. Checked because
  // rename() between two links of one file succeeds without removing the source.
  if (::stat(prev.c_str(), &sv) == 0 && sp.st_dev == sv.st_dev && sp.st_ino == sv.st_ino) return;
  std::error_code ec;
  const std::filesystem::path tmp = prev.string() + ".link." + std::to_string(::getpid());
  std::filesystem::remove(tmp, ec);
  if (::link(path.c_str(), tmp.c_str()) != 0) {
    // File systems without hard links: fall back to a copy (still written before the rename).
    std::filesystem::copy_file(path, tmp, std::filesystem::copy_options::overwrite_existing, ec);
    if (ec) {
      const std::string why = ec.message();
      std::filesystem::remove(tmp, ec);
      throw IoError(path.string(), "cannot keep the previous checkpoint as '" +
                                       prev.filename().string() + "': " + why);
    }
  }
  if (std::rename(tmp.c_str(), prev.c_str()) != 0) {
    const int err = errno;
    std::filesystem::remove(tmp, ec);
    throw IoError(path.string(), "cannot keep the previous checkpoint as '" +
                                     prev.filename().string() + "': " + io::detail::errno_text(err));
  }
}

/// Removes the temporary files of earlier saves to `path` ("<name>.tmp.<pid>.<n>" from
/// write_file_atomic, "<name>.prev.link.<pid>" from keep_previous) whose process no longer
/// exists: what a process killed mid-save leaves behind. Files of live processes (including
/// this one) are left alone. Best effort: errors are ignored.
inline void remove_stale_temporaries(const std::filesystem::path& path) {
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  const std::string base = path.filename().string();
  const std::string prefixes[] = {base + ".tmp.", base + ".prev.link."};
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec), end;
  std::vector<std::filesystem::path> stale;
  for (; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    for (const std::string& pre : prefixes) {
      if (name.size() <= pre.size() || name.compare(0, pre.size(), pre) != 0) continue;
      // The pid: the digits after the prefix, up to the next '.' or the end.
      const std::size_t stop = std::min(name.find('.', pre.size()), name.size());
      const std::string digits = name.substr(pre.size(), stop - pre.size());
      if (digits.empty() || digits.size() > 9 ||
          !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
        continue;
      const auto pid = static_cast<::pid_t>(std::stol(digits));
      if (pid <= 0 || pid == ::getpid()) continue;
      if (::kill(pid, 0) != 0 && errno == ESRCH) stale.push_back(it->path());
    }
  }
  for (const auto& p : stale) std::filesystem::remove(p, ec);
}

}  // namespace detail

/// Writes a checkpoint of `model` (and, if given, Adam and EMA state) to `path` atomically,
/// keeping the previous file as <path>.prev when `keep_prev`. `extra` metadata is stored as is.
/// @post on success, <path> holds the new checkpoint durably; on failure (IoError naming the
///       path and the OS error, e.g. "No space left on device") <path> still holds the previous
///       checkpoint, unchanged. Either way no temporary file of this call remains, and the
///       temporaries of earlier, killed saves to `path` are removed.
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
  {
    detail::ChecksumBuilder crc;
    crc.metadata(meta);
    std::vector<std::size_t> order(entries.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return entries[a].name < entries[b].name; });
    for (const std::size_t i : order)
      crc.tensor(entries[i].name, entries[i].dtype, entries[i].shape, entries[i].bytes);
    meta[detail::checksum_key] = crc.value();
  }
  detail::remove_stale_temporaries(path);
  if (keep_prev) detail::keep_previous(path, path.string() + ".prev");
  io::write_safetensors(path, entries, meta);
}

/// What load_checkpoint read besides the tensors.
struct LoadedCheckpoint {
  std::string path;
  std::map<std::string, std::string> metadata;
  TrainCounters counters;
  bool has_ema = false, has_adam = false;
  /// load_latest_checkpoint only: why <path> was not used when it fell back to <path>.prev.
  std::string fallback_reason;
};

namespace detail {

/// Checks everything of a checkpoint file that does not depend on the model's tensors: format
/// tag, checksum, signature, seed, counters. Returns what load_checkpoint reports.
template <class T, class B>
LoadedCheckpoint check_checkpoint(const io::SafeTensorsFile& f, const Model<T, B>& model) {
  LoadedCheckpoint out;
  out.path = f.path();
  out.metadata = f.metadata();
  const auto& m = out.metadata;
  const auto fmt = m.find("format");
  const bool v1 = fmt != m.end() && fmt->second == checkpoint_format_v1;
  if (fmt == m.end() || (fmt->second != checkpoint_format && !v1))
    throw IoError(out.path, std::string("not a ddpm checkpoint (metadata 'format' is ") +
                                (fmt == m.end() ? "missing" : "'" + fmt->second + "'") +
                                ", expected '" + checkpoint_format + "')");
  // Version 1 files were written before the checksum existed; later ones must carry it (so
  // that damage to its own entry is caught too) and match it.
  const auto it = m.find(checksum_key);
  if (it == m.end() && !v1)
    throw IoError(out.path, std::string("the file is damaged: metadata '") + checksum_key +
                                "' is missing");
  if (it != m.end()) {
    ChecksumBuilder crc;
    crc.metadata(m);
    for (const std::string& name : f.names()) {
      const auto& info = f.info(name);
      crc.tensor(name, info.dtype, info.shape, f.bytes(name));
    }
    if (crc.value() != it->second)
      throw IoError(out.path, "checksum mismatch: the file is damaged (metadata says " +
                                  it->second + ", the content gives " + crc.value() + ")");
  }
  for (const auto& [k, v] : model.signature()) {
    const auto it = m.find("sig." + k);
    if (it == m.end()) throw CheckpointMismatch(out.path, k, "(missing)", v);
    if (it->second != v) throw signature_mismatch(out.path, k, it->second, v);
  }
  const std::string sd = std::to_string(model.seed());
  if (m.count("seed") && m.at("seed") != sd) throw CheckpointMismatch(out.path, "seed", m.at("seed"), sd);
  out.counters.step = parse_u64(m, "step", out.path);
  out.counters.adam_steps = parse_u64(m, "adam_steps", out.path);
  out.counters.ema_updates = parse_u64(m, "ema_updates", out.path);
  out.counters.nonfinite_steps = parse_u64(m, "nonfinite_steps", out.path);
  out.counters.samples_seen = parse_u64(m, "samples_seen", out.path);
  out.has_ema = m.count("has_ema") && m.at("has_ema") == "1";
  out.has_adam = m.count("has_adam") && m.at("has_adam") == "1";
  return out;
}

/// A tensor of the model or its optimiser state and the file entry it is loaded from.
template <class T, class B>
struct LoadTarget {
  std::string name;
  Tensor<T, B>* tensor;
};

}  // namespace detail

/// Loads a checkpoint into `model` (weights), and into `adam` and `ema` when given and present.
/// @throws CheckpointMismatch naming the first differing signature field (schedule, T, target,
///         loss, U-Net config, ...); IoError for a missing, corrupt or incomplete file, a file
///         of another program or a damaged one (checksum).
/// Everything (signature, checksum, every tensor's presence, dtype and shape) is checked before
/// anything is copied: when it throws, `model`, `adam` and `ema` are unchanged.
/// With `ema_into_weights`, the EMA weights (if present) are loaded as the model weights: what
/// sampling from a checkpoint uses by default.
template <class T, class B>
LoadedCheckpoint load_checkpoint(const std::filesystem::path& path, Model<T, B>& model,
                                 std::type_identity_t<optim::AdamOptimizer<T, B>>* adam = nullptr,
                                 std::type_identity_t<optim::Ema<T, B>>* ema = nullptr,
                                 bool ema_into_weights = false) {
  const io::SafeTensorsFile f = io::SafeTensorsFile::load(path);
  LoadedCheckpoint out = detail::check_checkpoint(f, model);
  std::vector<detail::LoadTarget<T, B>> targets;
  const std::string wprefix = (ema_into_weights && out.has_ema) ? "ema." : "model.";
  model.net().visit_parameters([&](std::string_view name, auto& p) {
    targets.push_back({wprefix + std::string(name), &p.value});
  });
  if (ema && out.has_ema)
    ema->visit_state([&](const std::string& name, auto& t) { targets.push_back({name, &t}); });
  if (adam && out.has_adam)
    adam->visit_state([&](const std::string& name, auto& t) { targets.push_back({name, &t}); });
  // Check every tensor first, then copy: a bad file leaves the model untouched.
  for (const auto& t : targets) detail::check_tensor(f, t.name, *t.tensor);
  for (const auto& t : targets) detail::load_tensor(f, t.name, *t.tensor);
  if (ema && out.has_ema) ema->set_updates(out.counters.ema_updates);
  if (adam && out.has_adam) adam->set_steps(out.counters.adam_steps);
  return out;
}

/// Loads the newest complete checkpoint of a save_checkpoint series: `path`, or "<path>.prev"
/// when `path` is missing, truncated, damaged or not a checkpoint (an IoError). A
/// CheckpointMismatch of `path` is rethrown (the files belong to another configuration; the
/// older one would not fit either). LoadedCheckpoint::path tells which file was used and
/// LoadedCheckpoint::fallback_reason why `path` was not.
/// @throws IoError naming both files when neither loads. Same strong guarantee as
///         load_checkpoint: on failure nothing was changed.
template <class T, class B>
LoadedCheckpoint load_latest_checkpoint(const std::filesystem::path& path, Model<T, B>& model,
                                        std::type_identity_t<optim::AdamOptimizer<T, B>>* adam = nullptr,
                                        std::type_identity_t<optim::Ema<T, B>>* ema = nullptr,
                                        bool ema_into_weights = false) {
  std::string first;
  try {
    return load_checkpoint(path, model, adam, ema, ema_into_weights);
  } catch (const IoError& e) {
    first = e.what();
  }
  const std::filesystem::path prev = path.string() + ".prev";
  try {
    LoadedCheckpoint out = load_checkpoint(prev, model, adam, ema, ema_into_weights);
    out.fallback_reason = first;
    return out;
  } catch (const IoError& e) {
    throw IoError(path.string(), "no usable checkpoint: " + first + "; and the previous one, " +
                                     e.what());
  }
}

}  // namespace ddpm
