// SPDX-License-Identifier: MIT
// Tests for ddpm/io/safetensors.hpp: round trips, the standard layout, and every corruption case.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "ddpm/io/safetensors.hpp"
#include "io/io_test_util.hpp"

using ddpm::io::SafeTensorsFile;
using ddpm::io::TensorEntry;
using ddpm::io::test::TempDir;

namespace {

template <class T>
std::span<const std::byte> raw(const std::vector<T>& v) {
  return std::as_bytes(std::span<const T>(v));
}

/// A file from a literal header and data buffer; `n` overrides the header length field.
std::vector<std::uint8_t> craft(const std::string& header, const std::vector<std::uint8_t>& data,
                                std::optional<std::uint64_t> n = std::nullopt) {
  const std::uint64_t len = n.value_or(header.size());
  std::vector<std::uint8_t> f;
  f.reserve(8 + header.size() + data.size());
  for (int i = 0; i < 8; ++i) f.push_back(std::uint8_t(len >> (8 * i)));
  for (const char ch : header) f.push_back(std::uint8_t(ch));
  for (const std::uint8_t b : data) f.push_back(b);
  return f;
}

std::uint64_t header_length(const std::vector<std::uint8_t>& f) {
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= std::uint64_t(f[std::size_t(i)]) << (8 * i);
  return n;
}

}  // namespace

TEST_CASE("safetensors: round trip of several dtypes, shapes and metadata") {
  TempDir dir;
  const std::vector<float> w{1.5f, -2.0f, 3.25f, 0.0f, 1e-30f, -7.0f};
  const std::vector<double> d{3.141592653589793, -1e300};
  const std::vector<std::int64_t> step{123456789012345};
  const std::vector<std::uint8_t> bytes{1, 2, 3};
  const std::vector<float> none;
  const std::vector<TensorEntry> entries{
      {"model.conv.weight", "F32", {2, 3}, raw(w)},
      {"double", "F64", {2}, raw(d)},
      {"step", "I64", {}, raw(step)},  // a scalar: shape []
      {"u8", "U8", {3}, raw(bytes)},
      {"empty", "F32", {0, 4}, raw(none)},
  };
  const std::map<std::string, std::string> meta{
      {"schedule", "cosine"}, {"T", "1000"}, {"json", "{\"a\": [1]}"}};
  const auto p = dir / "ckpt.safetensors";
  ddpm::io::write_safetensors(p, entries, meta);

  const SafeTensorsFile f = SafeTensorsFile::load(p);
  CHECK(f.path() == p.string());
  CHECK(f.metadata() == meta);
  CHECK(f.size() == 5);
  CHECK(f.names() ==
        std::vector<std::string>{"double", "empty", "model.conv.weight", "step", "u8"});
  CHECK(f.contains("step"));
  CHECK_FALSE(f.contains("nope"));
  CHECK(f.info("model.conv.weight").dtype == "F32");
  CHECK(f.info("model.conv.weight").shape == std::vector<std::size_t>{2, 3});
  CHECK(f.info("step").shape.empty());
  CHECK(f.info("step").numel() == 1);
  CHECK(f.info("empty").numel() == 0);
  CHECK(f.f32("model.conv.weight") == w);
  CHECK(f.f64("double") == d);
  CHECK(f.i64("step") == step);
  CHECK(f.u8("u8") == bytes);
  CHECK(f.f32("empty").empty());
  CHECK(f.bytes("u8").size() == 3);
  CHECK(dir.entries() == std::vector<std::string>{"ckpt.safetensors"});
}

TEST_CASE("safetensors: the layout is the standard one (padded header, contiguous sorted data)") {
  const std::vector<std::uint8_t> a{9};
  const std::vector<float> b{1, 2};
  const std::vector<double> c{3};
  const std::vector<TensorEntry> entries{
      {"a", "U8", {1}, raw(a)}, {"b", "F32", {2}, raw(b)}, {"c", "F64", {1}, raw(c)}};
  const std::vector<std::byte> bytes = ddpm::io::encode_safetensors(entries);
  std::vector<std::uint8_t> u(bytes.size());
  std::memcpy(u.data(), bytes.data(), bytes.size());
  const std::uint64_t n = header_length(u);
  CHECK(n % 8 == 0);
  CHECK(u.size() == 8 + n + 8 + 8 + 1);  // data buffer fully covered, no gaps
  const std::string header(u.begin() + 8, u.begin() + 8 + std::ptrdiff_t(n));
  CHECK(header.front() == '{');
  CHECK(header.find("\"c\":{\"data_offsets\":[0,8]") != std::string::npos);    // F64 first
  CHECK(header.find("\"b\":{\"data_offsets\":[8,16]") != std::string::npos);   // then F32
  CHECK(header.find("\"a\":{\"data_offsets\":[16,17]") != std::string::npos);  // then U8
  CHECK(header.find("__metadata__") == std::string::npos);                     // none given
  // Parsing the encoded bytes gives the same tensors.
  const SafeTensorsFile f = SafeTensorsFile::parse(bytes, "mem");
  CHECK(f.f32("b") == b);
  CHECK(f.f64("c") == c);
}

TEST_CASE("safetensors: a golden file in the format written by Python's safetensors is read") {
  // Bytes of safetensors.numpy.save({"x": np.array([1, 2], np.float32)}, metadata={"k": "v"}):
  // Python puts __metadata__ first and orders fields dtype, shape, data_offsets.
  const std::string header =
      R"({"__metadata__":{"k":"v"},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::string padded = header + std::string((8 - header.size() % 8) % 8, ' ');
  const float vals[2] = {1.0f, 2.0f};
  std::vector<std::uint8_t> data(8);
  std::memcpy(data.data(), vals, 8);
  const auto f = SafeTensorsFile::parse(ddpm::io::test::as_bytes(craft(padded, data)), "golden");
  CHECK(f.metadata().at("k") == "v");
  CHECK(f.f32("x") == std::vector<float>{1.0f, 2.0f});
}

TEST_CASE("safetensors: gaps in the data buffer are allowed, offsets only need to be in bounds") {
  const auto f = SafeTensorsFile::parse(
      ddpm::io::test::as_bytes(
          craft(R"({"x":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}})", {0, 0, 0, 7, 8, 0, 0})),
      "gaps");
  CHECK(f.u8("x") == std::vector<std::uint8_t>{7, 8});
}

TEST_CASE("safetensors: every kind of corruption is rejected naming the file and the problem") {
  TempDir dir;
  auto check = [&](const std::string& name, const std::vector<std::uint8_t>& bytes,
                   const std::string& problem) {
    const auto p = dir / name;
    ddpm::io::test::write_bytes(p, bytes);
    CAPTURE(name);
    DDPM_CHECK_IO_ERROR(SafeTensorsFile::load(p), p.string(), problem);
  };
  const std::string ok_entry = R"("x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::vector<std::uint8_t> eight(8, 0);
  auto one = [&](const std::string& entry) { return craft("{" + entry + "}", eight); };

  check("empty", {}, "truncated: file is 0 bytes");
  check("short", {1, 0, 0}, "truncated: file is 3 bytes");
  check("huge_header", craft("{}", {}, 200'000'000), "header length 200000000 exceeds the limit");
  check("header_past_end", craft("{}", {}, 64),
        "header length 64 is larger than the rest of the file (2 bytes)");
  check("max_u64", craft("{}", {}, ~std::uint64_t{0}), "exceeds the limit");
  check("zero_header", craft("", eight, 0), "malformed header JSON");
  check("bad_json", craft("{\"x\": ", eight), "malformed header JSON");
  check("trailing_junk", craft("{} x", eight), "malformed header JSON");
  check("nul_padding", craft(std::string("{}\0\0\0\0\0\0", 8), eight), "malformed header JSON");
  check("bad_utf8", craft("{\"\xff\xfe\":{}}", eight), "malformed header JSON");
  check("array", craft("[1, 2]", eight), "the JSON must be an object");
  check("duplicate", one(ok_entry + "," + ok_entry), "duplicate key 'x'");
  check("dup_field", one(R"("x":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]})"),
        "duplicate key 'dtype'");
  check("deep",
        craft("{\"__metadata__\":" + std::string(40, '[') + std::string(40, ']') + "}", eight),
        "nested too deeply");
  check("not_object", one(R"("x":[1,2])"), "tensor 'x' must be an object");
  check("missing_field", one(R"("x":{"dtype":"F32","shape":[2]})"),
        "needs dtype, shape and data_offsets");
  check("unknown_field", one(R"("x":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1})"),
        "tensor 'x' has unknown field 'extra'");
  check("unknown_dtype", one(R"("x":{"dtype":"F128","shape":[2],"data_offsets":[0,8]})"),
        "unknown dtype 'F128' for tensor 'x'");
  check("dtype_number", one(R"("x":{"dtype":4,"shape":[2],"data_offsets":[0,8]})"),
        "dtype must be a string");
  check("shape_object", one(R"("x":{"dtype":"F32","shape":{},"data_offsets":[0,8]})"),
        "shape must be an array");
  check("shape_negative", one(R"("x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"),
        "shape entries must be a non-negative integer");
  check("shape_float", one(R"("x":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})"),
        "shape entries must be a non-negative integer");
  check("shape_overflow",
        one(R"("x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]})"),
        "size overflows");
  check("offsets_short", one(R"("x":{"dtype":"F32","shape":[2],"data_offsets":[0]})"),
        "data_offsets must be [begin, end]");
  check("offsets_reversed", one(R"("x":{"dtype":"F32","shape":[0],"data_offsets":[8,0]})"),
        "end before they begin");
  check(
      "offsets_out_of_range", one(R"("x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]})"),
      "offsets out of range: tensor 'x' data_offsets [0, 16] reach past the data buffer (8 bytes)");
  check(
      "offsets_huge",
      one(R"("x":{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551608,18446744073709551615]})"),
      "offsets out of range");
  check("offsets_mismatch", one(R"("x":{"dtype":"F32","shape":[1],"data_offsets":[0,8]})"),
        "hold 8 bytes, but dtype F32 and its shape need 4");
  check("overlap",
        one(R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
            R"("b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]})"),
        "tensors 'a' and 'b' overlap");
  check("metadata_array", one(R"("__metadata__":[1])"), "__metadata__ must be an object");
  check("metadata_number", one(R"("__metadata__":{"step":5})"),
        "__metadata__ value of 'step' must be a string");
  // A valid file with its data cut short.
  const std::vector<float> v{1, 2, 3, 4};
  auto good = ddpm::io::encode_safetensors(std::vector<TensorEntry>{{"w", "F32", {4}, raw(v)}});
  std::vector<std::uint8_t> cut(good.size() - 4);
  std::memcpy(cut.data(), good.data(), cut.size());
  check("truncated_data", cut, "offsets out of range: tensor 'w'");
  const auto missing = dir / "missing.safetensors";
  DDPM_CHECK_IO_ERROR(SafeTensorsFile::load(missing), missing.string(),
                      "No such file or directory");
}

TEST_CASE("safetensors: zero-sized tensors may share offsets without overlapping") {
  const auto f = SafeTensorsFile::parse(
      ddpm::io::test::as_bytes(craft(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},)"
                                     R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                                     std::vector<std::uint8_t>(8, 0))),
      "zeros");
  CHECK(f.f32("a").empty());
  CHECK(f.f32("b").size() == 2);
}

TEST_CASE("safetensors: wrong dtype or name on access names the file and the tensor") {
  const std::vector<double> d{1.0};
  const auto bytes =
      ddpm::io::encode_safetensors(std::vector<TensorEntry>{{"w", "F64", {1}, raw(d)}});
  const auto f = SafeTensorsFile::parse(bytes, "model.safetensors");
  DDPM_CHECK_IO_ERROR(f.f32("w"), "model.safetensors", "tensor 'w' has dtype F64, expected F32");
  DDPM_CHECK_IO_ERROR(f.info("ema.w"), "model.safetensors",
                      "no tensor named 'ema.w' (the file has 1 tensors)");
  DDPM_CHECK_IO_ERROR(f.bytes("ema.w"), "model.safetensors", "no tensor named 'ema.w'");
}

TEST_CASE("safetensors: the writer rejects inconsistent entries as parameter errors") {
  TempDir dir;
  const auto p = dir / "bad.safetensors";
  const std::vector<float> v{1, 2};
  auto write = [&](std::vector<TensorEntry> e, std::map<std::string, std::string> m = {}) {
    ddpm::io::write_safetensors(p, e, m);
  };
  CHECK_THROWS_WITH_AS(write({{"a", "F32", {2}, raw(v)}, {"a", "F32", {2}, raw(v)}}),
                       doctest::Contains("duplicate tensor name 'a'"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(write({{"a", "F33", {2}, raw(v)}}), doctest::Contains("unknown dtype 'F33'"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(write({{"a", "F32", {3}, raw(v)}}),
                       doctest::Contains("tensor 'a' has 8 bytes"), std::invalid_argument);
  CHECK_THROWS_AS(write({{"", "F32", {2}, raw(v)}}), std::invalid_argument);
  CHECK_THROWS_AS(write({{"__metadata__", "F32", {2}, raw(v)}}), std::invalid_argument);
  CHECK_THROWS_AS(write({{"a\xff", "F32", {2}, raw(v)}}), std::invalid_argument);
  CHECK_THROWS_AS(write({}, {{"k", "\xc3"}}), std::invalid_argument);
  CHECK_FALSE(std::filesystem::exists(p));
  // An unwritable path is an IoError, and an existing checkpoint survives a failed overwrite.
  const auto q = dir / "no_dir" / "x.safetensors";
  DDPM_CHECK_IO_ERROR(ddpm::io::write_safetensors(q, std::vector<TensorEntry>{}), q.string(),
                      "No such file or directory");
}

TEST_CASE("safetensors: an empty file (no tensors, no metadata) round-trips") {
  const auto bytes = ddpm::io::encode_safetensors({});
  CHECK(bytes.size() == 16);  // "{}" padded to 8
  const auto f = SafeTensorsFile::parse(bytes, "empty");
  CHECK(f.size() == 0);
  CHECK(f.metadata().empty());
}
