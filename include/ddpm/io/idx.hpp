// SPDX-License-Identifier: MIT
// ddpm/io/idx.hpp — IDX files (MNIST, Fashion-MNIST, the 4-d RGB "idx4" variant), raw or gzip.
//
// Format (http://yann.lecun.com/exdb/mnist/): bytes 00 00 <type> <ndim>, then ndim big-endian
// uint32 dimensions, then the elements in row-major order. Only unsigned bytes (type 0x08) and
// 1..4 dimensions are supported: idx1 labels (N), idx3 images (N, H, W), idx4 images (N, H, W, C).
// A file whose first two bytes are the gzip magic 1f 8b is decompressed first, whatever its name.
//
// Readers are written for hostile input (they are fuzzed): every size is checked before memory
// is allocated, and any problem throws ddpm::IoError naming the file and the problem — missing
// file, bad magic, unsupported type or rank, truncated data, trailing bytes, dimensions whose
// product overflows or exceeds max_idx_elements or what the file can hold, corrupt gzip.
#pragma once

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "ddpm/core/assert.hpp"
#include "ddpm/io/atomic_file.hpp"
#include "ddpm/io/types.hpp"

namespace ddpm::io {

/// The elements of an IDX file: dims (outermost first) and the row-major bytes.
/// @post data.size() == product of dims.
struct IdxArray {
  std::vector<std::size_t> dims{};
  std::vector<std::uint8_t> data{};
};

/// Largest element count an IDX file may declare (2^31), a sane bound for any image data set.
inline constexpr std::size_t max_idx_elements = std::size_t{1} << 31;

/// Reads an IDX file (raw, or gzip detected by its magic bytes).
/// @throws IoError(path, problem) on any malformed, truncated or oversized input.
[[nodiscard]] inline IdxArray read_idx(const std::filesystem::path& path);

/// Parses the bytes of an IDX file already in memory (raw or gzip); `name` is used in errors.
/// This is read_idx without the file system, e.g. for fuzzing.
[[nodiscard]] inline IdxArray parse_idx(std::span<const std::byte> bytes, const std::string& name);

/// Writes `array` as an unsigned-byte IDX file, gzip-compressed if `gzip`, atomically.
/// @pre 1 <= dims.size() <= 4, every dim < 2^32, data.size() == product of dims <= max_idx_elements
///      (else std::invalid_argument).
/// @throws IoError(path, ...) if the file cannot be written.
inline void write_idx(const std::filesystem::path& path, const IdxArray& array, bool gzip = false);

/// Loads images from an idx3 (N, H, W) file, as c = 1, or an idx4 (N, H, W, C) file, as NCHW;
/// labels (idx1, N entries) come from `labels_path` unless it is empty.
/// @throws IoError naming the file: wrong rank, no images, zero-sized images, more than 4
///         channels, labels that are not 1-d, or a label count different from the image count.
[[nodiscard]] inline ImageDataset load_idx_images(const std::filesystem::path& images_path,
                                                  const std::filesystem::path& labels_path = {});

/// Loads an MNIST-style folder: `<split>-images-idx3-ubyte[.gz]` (also accepted: the idx4 name
/// and the `<split>-images.idx3-ubyte` spelling) and `<split>-labels-idx1-ubyte[.gz]` (or
/// `<split>-labels.idx1-ubyte`). `split` is "train" or "t10k" for MNIST and Fashion-MNIST.
/// @pre split is non-empty and has no '/' (std::invalid_argument otherwise).
/// @throws IoError(dir, ...) if the folder is missing, or the images (or, when require_labels,
///         the labels) are not found; the message lists every name that was tried.
[[nodiscard]] inline ImageDataset load_mnist_dir(const std::filesystem::path& dir,
                                                 std::string_view split = "train",
                                                 bool require_labels = true);

// ---------------------------------------------------------------- implementation

namespace detail {

inline std::uint32_t load_be32(const std::byte* p) noexcept {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) |
         std::uint32_t(p[3]);
}

inline void store_be32(std::uint8_t* p, std::uint32_t v) noexcept {
  p[0] = std::uint8_t(v >> 24);
  p[1] = std::uint8_t(v >> 16);
  p[2] = std::uint8_t(v >> 8);
  p[3] = std::uint8_t(v);
}

inline std::string idx_type_name(unsigned type) {
  switch (type) {
    case 0x08:
      return "unsigned byte";
    case 0x09:
      return "signed byte";
    case 0x0B:
      return "int16";
    case 0x0C:
      return "int32";
    case 0x0D:
      return "float32";
    case 0x0E:
      return "float64";
    default:
      return "unknown";
  }
}

inline std::string hex_bytes(std::span<const std::byte> b) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (i) s += ' ';
    s += digits[unsigned(b[i]) >> 4];
    s += digits[unsigned(b[i]) & 15];
  }
  return s;
}

inline std::string dims_text(std::span<const std::size_t> dims) {
  std::string s;
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? " x " : "") + std::to_string(dims[i]);
  return s;
}

/// Upper bound on the output of a deflate stream of `n` compressed bytes. Deflate cannot beat
/// about 1032:1, so anything above this is a lie and is rejected before allocating.
inline constexpr std::size_t max_inflate_ratio = 1100;

/// Incremental gzip decoder over an in-memory buffer; accepts concatenated gzip members and
/// rejects anything after the last one.
class GzipReader {
 public:
  GzipReader(std::span<const std::byte> in, const std::string& name) : in_(in), name_(name) {
    if (inflateInit2(&zs_, 16 + MAX_WBITS) != Z_OK) throw IoError(name_, "cannot initialise zlib");
  }
  GzipReader(const GzipReader&) = delete;
  GzipReader& operator=(const GzipReader&) = delete;
  ~GzipReader() { inflateEnd(&zs_); }

  /// Decompresses up to `n` bytes into dst; returns how many were produced (< n only at the end
  /// of the last gzip member).
  std::size_t read(std::uint8_t* dst, std::size_t n) {
    std::size_t produced = 0;
    while (produced < n && !done_) {
      if (zs_.avail_in == 0) refill();
      const std::size_t chunk = std::min<std::size_t>(n - produced, 1u << 30);
      zs_.next_out = reinterpret_cast<Bytef*>(dst + produced);
      zs_.avail_out = static_cast<uInt>(chunk);
      const int rc = inflate(&zs_, Z_NO_FLUSH);
      produced += chunk - zs_.avail_out;
      if (rc == Z_STREAM_END) {
        member_end();
      } else if (rc == Z_BUF_ERROR) {
        if (zs_.avail_in == 0 && pos_ == in_.size())
          throw IoError(name_, "truncated gzip stream (compressed data ends early)");
      } else if (rc != Z_OK) {
        throw IoError(name_, std::string("corrupt gzip data: ") +
                                 (zs_.msg ? zs_.msg : "zlib error " + std::to_string(rc)));
      }
      if (rc == Z_OK && zs_.avail_in == 0 && pos_ == in_.size() && zs_.avail_out != 0)
        throw IoError(name_, "truncated gzip stream (compressed data ends early)");
    }
    return produced;
  }

  /// Decompresses until the end of the last member, requiring that no output remains.
  void expect_end() {
    std::uint8_t extra = 0;
    if (read(&extra, 1) != 0)
      throw IoError(name_,
                    "trailing garbage: the decompressed data is longer than the header declares");
  }

 private:
  void refill() {
    const std::size_t chunk = std::min<std::size_t>(in_.size() - pos_, 1u << 30);
    zs_.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in_.data() + pos_));
    zs_.avail_in = static_cast<uInt>(chunk);
    pos_ += chunk;
  }

  void member_end() {
    const std::size_t left = zs_.avail_in + (in_.size() - pos_);
    if (left == 0) {
      done_ = true;
      return;
    }
    const std::byte* next = in_.data() + (in_.size() - left);
    if (left >= 2 && next[0] == std::byte{0x1f} && next[1] == std::byte{0x8b}) {
      inflateReset(&zs_);  // another gzip member follows (as written by `cat a.gz b.gz`)
      return;
    }
    throw IoError(name_, detail::cat("trailing garbage: ", left, " bytes after the gzip stream"));
  }

  std::span<const std::byte> in_;
  const std::string& name_;
  z_stream zs_{};
  std::size_t pos_ = 0;
  bool done_ = false;
};

/// The parsed prefix of an IDX file: dims and element count, validated.
struct IdxHeader {
  std::vector<std::size_t> dims;
  std::size_t count = 0;
};

/// Validates the 4 magic bytes; returns ndim.
inline std::size_t check_idx_magic(std::span<const std::byte> magic, const std::string& name) {
  if (magic.size() < 4)
    throw IoError(name, cat("truncated: ", magic.size(), " bytes, an IDX header needs at least 4"));
  if (magic[0] != std::byte{0} || magic[1] != std::byte{0})
    throw IoError(name, "not an IDX file: bad magic " + hex_bytes(magic.first(4)) +
                            " (expected 00 00 <type> <ndim>)");
  const unsigned type = unsigned(magic[2]);
  if (type != 0x08)
    throw IoError(name, cat("unsupported IDX data type 0x", hex_bytes(magic.subspan(2, 1)), " (",
                            idx_type_name(type), "); only unsigned byte (0x08) is supported"));
  const std::size_t ndim = std::size_t(magic[3]);
  if (ndim < 1 || ndim > 4)
    throw IoError(name, cat("unsupported IDX rank ", ndim, "; 1 to 4 dimensions are supported"));
  return ndim;
}

/// Parses the dims; `available` is an upper bound on the data bytes that can follow.
inline IdxHeader parse_idx_dims(std::span<const std::byte> raw_dims, std::size_t available,
                                const std::string& name) {
  IdxHeader h;
  h.count = 1;
  bool overflow = false;
  for (std::size_t i = 0; i < raw_dims.size() / 4; ++i) {
    h.dims.push_back(load_be32(raw_dims.data() + 4 * i));
    if (!overflow && !checked_mul(h.count, h.dims.back(), h.count)) overflow = true;
  }
  if (overflow)
    throw IoError(name, "dimensions " + dims_text(h.dims) + " overflow the element count");
  if (h.count > max_idx_elements)
    throw IoError(name, cat("dimensions ", dims_text(h.dims), " declare ", h.count,
                            " elements, more than the limit of ", max_idx_elements));
  if (h.count > available)
    throw IoError(name, cat("truncated: dimensions ", dims_text(h.dims), " declare ", h.count,
                            " bytes of data, but the file can hold at most ", available));
  return h;
}

inline IdxArray parse_idx_gzip(std::span<const std::byte> bytes, const std::string& name) {
  GzipReader gz(bytes, name);
  std::array<std::byte, 4 + 4 * 4> header{};
  auto* hp = reinterpret_cast<std::uint8_t*>(header.data());
  const std::size_t got = gz.read(hp, 4);
  const std::size_t ndim = check_idx_magic(std::span(header).first(got), name);
  if (gz.read(hp + 4, 4 * ndim) != 4 * ndim)
    throw IoError(name, cat("truncated: the header declares ", ndim, " dimensions but ends early"));
  std::size_t bound = 0;
  if (!checked_mul(bytes.size(), max_inflate_ratio, bound)) bound = SIZE_MAX;
  IdxHeader h = parse_idx_dims(std::span(header).subspan(4, 4 * ndim), bound, name);

  IdxArray out;
  out.dims = std::move(h.dims);
  // Grow as data arrives, so a small file that lies about its size costs little memory.
  std::size_t filled = 0;
  while (filled < h.count) {
    const std::size_t step = std::max<std::size_t>(filled, std::size_t{1} << 20);
    out.data.resize(std::min(h.count, filled + step));
    const std::size_t want = out.data.size() - filled;
    const std::size_t n = gz.read(out.data.data() + filled, want);
    filled += n;
    if (n < want)
      throw IoError(name, cat("truncated: dimensions ", dims_text(out.dims), " declare ", h.count,
                              " bytes of data, but only ", filled, " follow"));
  }
  gz.expect_end();
  return out;
}

inline IdxArray parse_idx_raw(std::span<const std::byte> bytes, const std::string& name) {
  const std::size_t ndim =
      check_idx_magic(bytes.first(std::min<std::size_t>(bytes.size(), 4)), name);
  const std::size_t header = 4 + 4 * ndim;
  if (bytes.size() < header)
    throw IoError(name, cat("truncated: the header declares ", ndim, " dimensions but the file is ",
                            bytes.size(), " bytes"));
  const std::size_t available = bytes.size() - header;
  IdxHeader h = parse_idx_dims(bytes.subspan(4, 4 * ndim), SIZE_MAX, name);
  if (h.count > available)
    throw IoError(name, cat("truncated: dimensions ", dims_text(h.dims), " declare ", h.count,
                            " bytes of data, but only ", available, " follow"));
  if (h.count < available)
    throw IoError(name, cat("trailing garbage: ", available - h.count,
                            " bytes after the data declared by dimensions ", dims_text(h.dims)));
  IdxArray out;
  out.dims = std::move(h.dims);
  const auto* p = reinterpret_cast<const std::uint8_t*>(bytes.data() + header);
  out.data.assign(p, p + h.count);
  return out;
}

/// Folder checks with messages; no std::filesystem exceptions escape.
inline void require_folder(const std::filesystem::path& dir) {
  std::error_code ec;
  const auto st = std::filesystem::status(dir, ec);
  if (!std::filesystem::exists(st)) throw IoError(dir.string(), "folder does not exist");
  if (!std::filesystem::is_directory(st)) throw IoError(dir.string(), "is not a folder");
}

inline bool is_file(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::is_regular_file(p, ec);
}

}  // namespace detail

inline IdxArray parse_idx(std::span<const std::byte> bytes, const std::string& name) {
  if (bytes.size() >= 2 && bytes[0] == std::byte{0x1f} && bytes[1] == std::byte{0x8b})
    return detail::parse_idx_gzip(bytes, name);
  return detail::parse_idx_raw(bytes, name);
}

inline IdxArray read_idx(const std::filesystem::path& path) {
  // A raw file is at most header + max_idx_elements bytes; a gzip file is smaller still.
  const std::vector<std::byte> bytes = read_file(path, 4 + 4 * 4 + max_idx_elements);
  return parse_idx(bytes, path.string());
}

inline void write_idx(const std::filesystem::path& path, const IdxArray& array, bool gzip) {
  const std::size_t ndim = array.dims.size();
  detail::require(ndim >= 1 && ndim <= 4, "IdxArray::dims", "must have 1 to 4 entries, got ", ndim);
  std::size_t count = 1;
  for (const std::size_t d : array.dims) {
    detail::require(d <= 0xFFFFFFFFu, "IdxArray::dims", "each dimension must be < 2^32, got ", d);
    detail::require(detail::checked_mul(count, d, count), "IdxArray::dims", "product overflows");
  }
  detail::require(count <= max_idx_elements, "IdxArray::dims", "more than ", max_idx_elements,
                  " elements");
  detail::require(array.data.size() == count, "IdxArray::data", "has ", array.data.size(),
                  " bytes but the dims ", detail::dims_text(array.dims), " need ", count);

  std::array<std::uint8_t, 4 + 4 * 4> header{0, 0, 0x08, std::uint8_t(ndim)};
  for (std::size_t i = 0; i < ndim; ++i)
    detail::store_be32(header.data() + 4 + 4 * i, std::uint32_t(array.dims[i]));
  const std::size_t header_size = 4 + 4 * ndim;

  if (!gzip) {
    write_file_atomic(path, [&](FileSink& sink) {
      sink.write(header.data(), header_size);
      sink.write(array.data.data(), array.data.size());
    });
    return;
  }
  const std::string name = path.string();
  write_file_atomic(path, [&](FileSink& sink) {
    z_stream zs{};
    // windowBits 16 + 15: a gzip wrapper with a fixed header (mtime 0), so output is reproducible.
    if (deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
      throw IoError(name, "cannot initialise zlib");
    struct End {
      z_stream* zs;
      ~End() { deflateEnd(zs); }
    } end{&zs};
    std::vector<unsigned char> out(std::size_t{1} << 16);
    auto pump = [&](const std::uint8_t* data, std::size_t size, bool last) {
      do {
        const std::size_t chunk = std::min<std::size_t>(size, 1u << 30);
        zs.next_in = const_cast<Bytef*>(data);
        zs.avail_in = static_cast<uInt>(chunk);
        data += chunk;
        size -= chunk;
        const int flush = (last && size == 0) ? Z_FINISH : Z_NO_FLUSH;
        int rc = Z_OK;
        do {
          zs.next_out = out.data();
          zs.avail_out = static_cast<uInt>(out.size());
          rc = deflate(&zs, flush);
          if (rc == Z_STREAM_ERROR) throw IoError(name, "zlib deflate failed");
          sink.write(out.data(), out.size() - zs.avail_out);
        } while (zs.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
      } while (size > 0);
    };
    pump(header.data(), header_size, false);
    pump(array.data.data(), array.data.size(), true);
  });
}

inline ImageDataset load_idx_images(const std::filesystem::path& images_path,
                                    const std::filesystem::path& labels_path) {
  const std::string iname = images_path.string();
  IdxArray img = read_idx(images_path);
  const std::size_t ndim = img.dims.size();
  if (ndim != 3 && ndim != 4)
    throw IoError(iname, detail::cat("expected images as a 3-d (N, H, W) or 4-d (N, H, W, C) IDX "
                                     "array, got ",
                                     ndim, "-d (", detail::dims_text(img.dims), ")"));
  ImageDataset ds;
  ds.n = img.dims[0];
  ds.h = img.dims[1];
  ds.w = img.dims[2];
  ds.c = ndim == 4 ? img.dims[3] : 1;
  if (ds.n == 0) throw IoError(iname, "holds no images (N = 0)");
  if (ds.h == 0 || ds.w == 0 || ds.c == 0)
    throw IoError(iname, "zero-sized images (" + detail::dims_text(img.dims) + ")");
  if (ds.c > 4)
    throw IoError(iname, detail::cat("images with ", ds.c, " channels; 1 to 4 are supported"));
  if (ds.c == 1) {
    ds.pixels = std::move(img.data);  // (N, H, W) is already (N, 1, H, W)
  } else {
    ds.pixels.resize(img.data.size());
    const std::size_t hw = ds.h * ds.w;
    for (std::size_t i = 0; i < ds.n; ++i) {
      const std::uint8_t* src = img.data.data() + i * hw * ds.c;  // (H, W, C)
      std::uint8_t* dst = ds.pixels.data() + i * hw * ds.c;       // (C, H, W)
      for (std::size_t p = 0; p < hw; ++p)
        for (std::size_t ch = 0; ch < ds.c; ++ch) dst[ch * hw + p] = src[p * ds.c + ch];
    }
  }
  if (!labels_path.empty()) {
    const std::string lname = labels_path.string();
    IdxArray lab = read_idx(labels_path);
    if (lab.dims.size() != 1)
      throw IoError(lname, detail::cat("expected labels as a 1-d IDX array, got ", lab.dims.size(),
                                       "-d (", detail::dims_text(lab.dims), ")"));
    if (lab.dims[0] != ds.n)
      throw IoError(lname, detail::cat("holds ", lab.dims[0], " labels but ", iname, " holds ",
                                       ds.n, " images"));
    ds.labels.assign(lab.data.begin(), lab.data.end());
  }
  return ds;
}

inline ImageDataset load_mnist_dir(const std::filesystem::path& dir, std::string_view split,
                                   bool require_labels) {
  detail::require(!split.empty() && split.find('/') == std::string_view::npos, "split",
                  "must be a file prefix such as \"train\" or \"t10k\", got \"", split, "\"");
  detail::require_folder(dir);
  const std::string s(split);
  auto find = [&](std::initializer_list<std::string> stems, std::string& tried) {
    for (const std::string& stem : stems) {
      for (const char* ext : {"", ".gz"}) {
        const std::filesystem::path p = dir / (stem + ext);
        if (detail::is_file(p)) return p;
      }
      tried += (tried.empty() ? "" : ", ") + stem + "[.gz]";
    }
    return std::filesystem::path{};
  };
  std::string tried_images, tried_labels;
  const auto images = find(
      {s + "-images-idx3-ubyte", s + "-images-idx4-ubyte", s + "-images.idx3-ubyte"}, tried_images);
  if (images.empty())
    throw IoError(dir.string(), "no images for split '" + s + "': looked for " + tried_images);
  const auto labels = find({s + "-labels-idx1-ubyte", s + "-labels.idx1-ubyte"}, tried_labels);
  if (labels.empty() && require_labels)
    throw IoError(dir.string(), "no labels for split '" + s + "': looked for " + tried_labels);
  return load_idx_images(images, labels);
}

}  // namespace ddpm::io
