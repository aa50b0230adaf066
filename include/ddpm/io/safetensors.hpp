// SPDX-License-Identifier: MIT
// ddpm/io/safetensors.hpp — the safetensors format (https://github.com/huggingface/safetensors),
// used for checkpoints: weights, EMA, optimiser moments, with the config in __metadata__.
//
// Layout: an 8-byte little-endian header length N, N bytes of JSON, then the data buffer.
// The JSON maps each tensor name to {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}
// (offsets relative to the data buffer) and may hold "__metadata__": {string: string}.
// The writer produces what the Python `safetensors` package writes: tensors laid out
// contiguously, sorted by element size (largest first) then name, so every tensor is aligned to
// its element size; the header is padded with spaces to a multiple of 8 bytes.
//
// The reader validates everything before use (it is fuzzed): header length within the file and
// at most max_safetensors_header_bytes, well-formed UTF-8 JSON with no duplicate keys, known
// dtypes, shapes whose element count does not overflow, offsets inside the data buffer, matching
// dtype size x element count, and no two tensors overlapping. Bytes of the buffer not covered by
// any tensor are allowed. Any violation throws ddpm::IoError naming the file and the problem.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ddpm/core/assert.hpp"
#include "ddpm/io/atomic_file.hpp"
#include "ddpm/io/types.hpp"

namespace ddpm::io {

static_assert(std::endian::native == std::endian::little,
              "ddpm::io safetensors support assumes a little-endian host");
static_assert(sizeof(std::size_t) >= sizeof(std::uint64_t), "ddpm::io assumes a 64-bit size_t");

/// Largest JSON header accepted (the Python reference implementation's limit, 100 MB).
inline constexpr std::size_t max_safetensors_header_bytes = 100'000'000;

/// Bytes per element of a safetensors dtype ("F64", "F32", "F16", "BF16", "I64", "I32", "I16",
/// "I8", "U64", "U32", "U16", "U8", "BOOL", "F8_E4M3", "F8_E5M2"), or 0 if unknown.
[[nodiscard]] inline std::size_t safetensors_dtype_size(std::string_view dtype) noexcept;

/// One tensor to write; `bytes` is its data, little-endian, row-major.
struct TensorEntry {
  std::string name{};
  std::string dtype{};
  std::vector<std::size_t> shape{};
  std::span<const std::byte> bytes{};
};

/// Serialises tensors and metadata into the bytes of a safetensors file.
/// @pre names are unique, non-empty and not "__metadata__"; dtypes are known;
///      bytes.size() == product(shape) * dtype size; all strings are valid UTF-8
///      (std::invalid_argument naming the tensor otherwise).
[[nodiscard]] inline std::vector<std::byte> encode_safetensors(
    std::span<const TensorEntry> tensors, const std::map<std::string, std::string>& metadata = {});

/// Writes a safetensors file atomically (temp file, fsync, rename: see atomic_file.hpp).
/// @pre as encode_safetensors. @throws IoError(path, ...) if the file cannot be written.
inline void write_safetensors(const std::filesystem::path& path,
                              std::span<const TensorEntry> tensors,
                              const std::map<std::string, std::string>& metadata = {});

/// A safetensors file read into memory and validated.
class SafeTensorsFile {
 public:
  struct Info {
    std::string dtype{};
    std::vector<std::size_t> shape{};
    std::size_t begin = 0, end = 0;  // byte range in the data buffer
    [[nodiscard]] std::size_t numel() const noexcept {
      return std::accumulate(shape.begin(), shape.end(), std::size_t{1}, std::multiplies<>{});
    }
  };

  /// Reads and validates a file. @throws IoError(path, problem) on any malformed input.
  [[nodiscard]] static SafeTensorsFile load(const std::filesystem::path& path,
                                            std::size_t max_bytes = default_max_read_bytes);
  /// Validates the bytes of a file already in memory; `name` is used in errors (fuzzing).
  [[nodiscard]] static SafeTensorsFile parse(std::vector<std::byte> file_bytes, std::string name);

  /// The path (or name) the file was loaded from.
  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  /// The "__metadata__" map (empty if absent).
  [[nodiscard]] const std::map<std::string, std::string>& metadata() const noexcept {
    return metadata_;
  }
  [[nodiscard]] bool contains(std::string_view name) const { return tensors_.count(name) != 0; }
  /// Tensor names in sorted order.
  [[nodiscard]] std::vector<std::string> names() const;
  [[nodiscard]] std::size_t size() const noexcept { return tensors_.size(); }
  /// dtype, shape and offsets. @throws IoError(path, "no tensor named '...'").
  [[nodiscard]] const Info& info(std::string_view name) const;
  /// The raw little-endian bytes of a tensor (valid while this object lives).
  [[nodiscard]] std::span<const std::byte> bytes(std::string_view name) const;
  /// A copy of the tensor's elements. @throws IoError(path, "tensor '...' has dtype X, expected
  /// F32") if the dtype differs; likewise for f64 (F64), i64 (I64), i32 (I32), u8 (U8).
  [[nodiscard]] std::vector<float> f32(std::string_view name) const {
    return values<float>(name, "F32");
  }
  [[nodiscard]] std::vector<double> f64(std::string_view name) const {
    return values<double>(name, "F64");
  }
  [[nodiscard]] std::vector<std::int64_t> i64(std::string_view name) const {
    return values<std::int64_t>(name, "I64");
  }
  [[nodiscard]] std::vector<std::int32_t> i32(std::string_view name) const {
    return values<std::int32_t>(name, "I32");
  }
  [[nodiscard]] std::vector<std::uint8_t> u8(std::string_view name) const {
    return values<std::uint8_t>(name, "U8");
  }

 private:
  template <class T>
  std::vector<T> values(std::string_view name, std::string_view dtype) const;

  std::string path_;
  std::vector<std::byte> file_;
  std::size_t data_start_ = 0;
  std::map<std::string, Info, std::less<>> tensors_;
  std::map<std::string, std::string> metadata_;
};

// ---------------------------------------------------------------- implementation

inline std::size_t safetensors_dtype_size(std::string_view dtype) noexcept {
  struct Entry {
    std::string_view name;
    std::size_t size;
  };
  static constexpr Entry table[] = {{"F64", 8},  {"F32", 4},     {"F16", 2},    {"BF16", 2},
                                    {"I64", 8},  {"I32", 4},     {"I16", 2},    {"I8", 1},
                                    {"U64", 8},  {"U32", 4},     {"U16", 2},    {"U8", 1},
                                    {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  for (const Entry& e : table)
    if (e.name == dtype) return e.size;
  return 0;
}

namespace detail {

/// Header JSON and the data order of a safetensors file about to be written.
struct SafetensorsPlan {
  std::string header;              // padded to a multiple of 8
  std::vector<std::size_t> order;  // indices into the entries, in data order
  std::uint64_t data_size = 0;
};

inline SafetensorsPlan plan_safetensors(std::span<const TensorEntry> tensors,
                                        const std::map<std::string, std::string>& metadata) {
  std::set<std::string_view> seen;
  for (const TensorEntry& t : tensors) {
    require(!t.name.empty(), "TensorEntry::name", "must not be empty");
    require(t.name != "__metadata__", "TensorEntry::name", "\"__metadata__\" is reserved");
    require(seen.insert(t.name).second, "TensorEntry::name", "duplicate tensor name '", t.name,
            "'");
    const std::size_t es = safetensors_dtype_size(t.dtype);
    require(es != 0, "TensorEntry::dtype", "unknown dtype '", t.dtype, "' for tensor '", t.name,
            "'");
    std::size_t n = es;
    for (const std::size_t d : t.shape)
      require(checked_mul(n, d, n), "TensorEntry::shape", "size overflows for tensor '", t.name,
              "'");
    require(n == t.bytes.size(), "TensorEntry::bytes", "tensor '", t.name, "' has ", t.bytes.size(),
            " bytes, but dtype ", t.dtype, " and its shape need ", n);
  }
  SafetensorsPlan plan;
  plan.order.resize(tensors.size());
  std::iota(plan.order.begin(), plan.order.end(), std::size_t{0});
  std::sort(plan.order.begin(), plan.order.end(), [&](std::size_t a, std::size_t b) {
    const std::size_t sa = safetensors_dtype_size(tensors[a].dtype);
    const std::size_t sb = safetensors_dtype_size(tensors[b].dtype);
    return sa != sb ? sa > sb : tensors[a].name < tensors[b].name;
  });
  nlohmann::json j = nlohmann::json::object();
  if (!metadata.empty()) j["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const std::size_t i : plan.order) {
    const TensorEntry& t = tensors[i];
    const std::uint64_t end = offset + t.bytes.size();
    j[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, end}}};
    offset = end;
  }
  plan.data_size = offset;
  try {
    plan.header = j.dump();
  } catch (const nlohmann::json::exception& e) {
    require(false, "tensors, metadata", "names and metadata must be valid UTF-8 (", e.what(), ")");
  }
  plan.header.append((8 - plan.header.size() % 8) % 8, ' ');
  return plan;
}

inline void store_le64(unsigned char* p, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

inline std::uint64_t load_le64(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= std::uint64_t(p[i]) << (8 * i);
  return v;
}

/// Nesting depth beyond which a header is rejected (a valid one needs 3).
inline constexpr int max_safetensors_json_depth = 16;

/// An unsigned integer JSON value, or throws IoError with `what`.
inline std::uint64_t json_uint(const nlohmann::json& v, const std::string& file,
                               const std::string& what) {
  if (!v.is_number_unsigned()) throw IoError(file, what + " must be a non-negative integer");
  return v.get<std::uint64_t>();
}

}  // namespace detail

inline std::vector<std::byte> encode_safetensors(
    std::span<const TensorEntry> tensors, const std::map<std::string, std::string>& metadata) {
  const detail::SafetensorsPlan plan = detail::plan_safetensors(tensors, metadata);
  std::vector<std::byte> out(8 + plan.header.size());
  detail::store_le64(reinterpret_cast<unsigned char*>(out.data()), plan.header.size());
  std::memcpy(out.data() + 8, plan.header.data(), plan.header.size());
  out.reserve(out.size() + plan.data_size);
  for (const std::size_t i : plan.order)
    out.insert(out.end(), tensors[i].bytes.begin(), tensors[i].bytes.end());
  return out;
}

inline void write_safetensors(const std::filesystem::path& path,
                              std::span<const TensorEntry> tensors,
                              const std::map<std::string, std::string>& metadata) {
  const detail::SafetensorsPlan plan = detail::plan_safetensors(tensors, metadata);
  write_file_atomic(path, [&](FileSink& sink) {
    unsigned char len[8];
    detail::store_le64(len, plan.header.size());
    sink.write(len, 8);
    sink.write(plan.header.data(), plan.header.size());
    for (const std::size_t i : plan.order) sink.write(tensors[i].bytes);
  });
}

inline SafeTensorsFile SafeTensorsFile::load(const std::filesystem::path& path,
                                             std::size_t max_bytes) {
  return parse(read_file(path, max_bytes), path.string());
}

inline SafeTensorsFile SafeTensorsFile::parse(std::vector<std::byte> file_bytes, std::string name) {
  using nlohmann::json;
  SafeTensorsFile f;
  f.path_ = std::move(name);
  f.file_ = std::move(file_bytes);
  const std::string& file = f.path_;
  const std::size_t size = f.file_.size();
  if (size < 8)
    throw IoError(file,
                  detail::cat("truncated: file is ", size,
                              " bytes, a safetensors file starts with an 8-byte header length"));
  const std::uint64_t n = detail::load_le64(f.file_.data());
  if (n > max_safetensors_header_bytes)
    throw IoError(file,
                  detail::cat("header length ", n, " exceeds the limit of ",
                              max_safetensors_header_bytes, " bytes (not a safetensors file?)"));
  if (n > size - 8)
    throw IoError(file, detail::cat("header length ", n, " is larger than the rest of the file (",
                                    size - 8, " bytes): truncated or not a safetensors file"));
  f.data_start_ = 8 + std::size_t(n);
  const std::size_t data_size = size - f.data_start_;
  const auto* hb = reinterpret_cast<const char*>(f.file_.data() + 8);

  // nlohmann's lexer takes a NUL byte for the end of input, which would accept "{}\0junk";
  // raw NULs are never valid JSON, so reject them first.
  if (const void* nul = std::memchr(hb, 0, std::size_t(n)); nul != nullptr)
    throw IoError(file, detail::cat("malformed header JSON: NUL byte at offset ",
                                    static_cast<const char*>(nul) - hb, " of the header"));
  // Parse, rejecting duplicate keys at any level (nlohmann keeps the last one silently) and
  // absurd nesting.
  std::vector<std::set<std::string>> keys;
  std::string duplicate;
  json j;
  try {
    j = json::parse(hb, hb + n, [&](int depth, json::parse_event_t ev, json& parsed) {
      if (depth > detail::max_safetensors_json_depth)
        throw IoError(file, "malformed header: JSON nested too deeply");
      if (ev == json::parse_event_t::object_start) {
        keys.emplace_back();
      } else if (ev == json::parse_event_t::object_end) {
        if (!keys.empty()) keys.pop_back();
      } else if (ev == json::parse_event_t::key && !keys.empty()) {
        const auto& k = parsed.get_ref<const std::string&>();
        if (!keys.back().insert(k).second && duplicate.empty()) duplicate = k;
      }
      return true;
    });
  } catch (const json::exception& e) {
    throw IoError(file, std::string("malformed header JSON: ") + e.what());
  }
  if (!duplicate.empty())
    throw IoError(file, "malformed header: duplicate key '" + duplicate + "'");
  if (!j.is_object()) throw IoError(file, "malformed header: the JSON must be an object");

  struct Range {
    std::size_t begin, end;
    const std::string* name;
  };
  std::vector<Range> ranges;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (key == "__metadata__") {
      if (!v.is_object()) throw IoError(file, "malformed header: __metadata__ must be an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          throw IoError(
              file, "malformed header: __metadata__ value of '" + m.key() + "' must be a string");
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string what = "tensor '" + key + "'";
    if (!v.is_object()) throw IoError(file, "malformed header: " + what + " must be an object");
    for (auto m = v.begin(); m != v.end(); ++m)
      if (m.key() != "dtype" && m.key() != "shape" && m.key() != "data_offsets")
        throw IoError(file, "malformed header: " + what + " has unknown field '" + m.key() + "'");
    if (!v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      throw IoError(file, "malformed header: " + what + " needs dtype, shape and data_offsets");
    Info info;
    if (!v.at("dtype").is_string())
      throw IoError(file, "malformed header: " + what + " dtype must be a string");
    info.dtype = v.at("dtype").get<std::string>();
    const std::size_t es = safetensors_dtype_size(info.dtype);
    if (es == 0) throw IoError(file, "unknown dtype '" + info.dtype + "' for " + what);
    const json& shape = v.at("shape");
    if (!shape.is_array())
      throw IoError(file, "malformed header: " + what + " shape must be an array");
    std::size_t bytes = es;
    bool overflow = false;
    for (const json& d : shape) {
      const std::uint64_t dim =
          detail::json_uint(d, file, "malformed header: " + what + " shape entries");
      info.shape.push_back(std::size_t(dim));
      if (!overflow && !detail::checked_mul(bytes, std::size_t(dim), bytes)) overflow = true;
    }
    if (overflow) throw IoError(file, "malformed header: " + what + " shape's size overflows");
    const json& off = v.at("data_offsets");
    if (!off.is_array() || off.size() != 2)
      throw IoError(file, "malformed header: " + what + " data_offsets must be [begin, end]");
    const std::uint64_t b =
        detail::json_uint(off[0], file, "malformed header: " + what + " data_offsets");
    const std::uint64_t e =
        detail::json_uint(off[1], file, "malformed header: " + what + " data_offsets");
    if (b > e)
      throw IoError(file, detail::cat("malformed header: ", what, " data_offsets [", b, ", ", e,
                                      "] end before they begin"));
    if (e > data_size)
      throw IoError(file, detail::cat("offsets out of range: ", what, " data_offsets [", b, ", ", e,
                                      "] reach past the data buffer (", data_size,
                                      " bytes): truncated file?"));
    if (e - b != bytes)
      throw IoError(file, detail::cat("malformed header: ", what, " data_offsets [", b, ", ", e,
                                      "] hold ", e - b, " bytes, but dtype ", info.dtype,
                                      " and its shape need ", bytes));
    info.begin = std::size_t(b);
    info.end = std::size_t(e);
    const auto [pos, inserted] = f.tensors_.emplace(key, std::move(info));
    if (!inserted) throw IoError(file, "malformed header: duplicate tensor '" + key + "'");
    if (pos->second.end > pos->second.begin)
      ranges.push_back({pos->second.begin, pos->second.end, &pos->first});
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (std::size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].begin < ranges[i - 1].end)
      throw IoError(file, "malformed header: tensors '" + *ranges[i - 1].name + "' and '" +
                              *ranges[i].name + "' overlap in the data buffer");
  return f;
}

inline std::vector<std::string> SafeTensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, info] : tensors_) out.push_back(name);
  return out;
}

inline const SafeTensorsFile::Info& SafeTensorsFile::info(std::string_view name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end())
    throw IoError(path_, detail::cat("no tensor named '", name, "' (the file has ", tensors_.size(),
                                     " tensors)"));
  return it->second;
}

inline std::span<const std::byte> SafeTensorsFile::bytes(std::string_view name) const {
  const Info& i = info(name);
  return std::span<const std::byte>(file_).subspan(data_start_ + i.begin, i.end - i.begin);
}

template <class T>
std::vector<T> SafeTensorsFile::values(std::string_view name, std::string_view dtype) const {
  const Info& i = info(name);
  if (i.dtype != dtype)
    throw IoError(path_,
                  detail::cat("tensor '", name, "' has dtype ", i.dtype, ", expected ", dtype));
  const std::span<const std::byte> b = bytes(name);
  std::vector<T> out(b.size() / sizeof(T));
  if (!b.empty()) std::memcpy(out.data(), b.data(), b.size());  // may be unaligned in the file
  return out;
}

}  // namespace ddpm::io
