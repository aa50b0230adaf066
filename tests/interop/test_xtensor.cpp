// Tests for ddpm/interop/xtensor.hpp: views share memory with the library's tensors and sample
// results (shape, pointer, writes seen both ways), xtensor arrays come in as views, tensors and
// 8-bit data sets with the right values and order, and bad input is refused naming the parameter.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <xtensor/xarray.hpp>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include "ddpm/backend/tags.hpp"
#include "ddpm/interop/xtensor.hpp"

using namespace ddpm;
using Ref = backend::Reference;

namespace {

/// The message of the std::invalid_argument that f throws ("" if none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

SampleResult<float> fake_result(std::size_t n, std::size_t c, std::size_t h, std::size_t w) {
  SampleResult<float> r;
  r.shape = Shape{n, c, h, w};
  r.images.resize(r.shape.numel());
  for (std::size_t i = 0; i < r.images.size(); ++i) r.images[i] = float(i) * 0.25f;
  r.frames.push_back(std::vector<float>(r.images.size(), 0.5f));
  r.frame_t.push_back(3);
  return r;
}

// Views of temporaries do not compile (they would dangle).
template <class A>
concept xtensor_viewable = requires(A&& a) { interop::as_xtensor(std::forward<A>(a)); };
static_assert(xtensor_viewable<const SampleResult<float>&>);
static_assert(!xtensor_viewable<SampleResult<float>&&>);
template <class A>
concept xarray_viewable = requires(A&& a) { interop::as_xarray(std::forward<A>(a)); };
static_assert(xarray_viewable<Tensor<float, Ref>&>);
static_assert(!xarray_viewable<Tensor<float, Ref>&&>);

}  // namespace

TEST_CASE("interop xtensor: as_xarray views a tensor without copying, writes go both ways") {
  Tensor<float, Ref> t(Shape{2, 3, 4, 5});
  for (std::size_t i = 0; i < t.size(); ++i) t.data()[i] = float(i);
  auto x = interop::as_xarray(t);
  REQUIRE(x.dimension() == 4);
  CHECK(x.shape()[0] == 2);
  CHECK(x.shape()[1] == 3);
  CHECK(x.shape()[2] == 4);
  CHECK(x.shape()[3] == 5);
  CHECK(x.data() == t.data());
  CHECK(x(1, 2, 3, 4) == float(((1 * 3 + 2) * 4 + 3) * 5 + 4));
  x(0, 1, 2, 3) = -7.0f;
  CHECK(t.data()[(1 * 4 + 2) * 5 + 3] == -7.0f);
  t.data()[0] = 42.0f;
  CHECK(x(0, 0, 0, 0) == 42.0f);
  // an xtensor reduction over the view: the mean of image 1
  const float m = xt::mean(xt::view(x, 1))();
  double expect = 0;
  for (std::size_t i = 60; i < 120; ++i) expect += t.data()[i];
  CHECK(m == doctest::Approx(expect / 60.0));

  Tensor<float, Ref> none;  // rank 0: xtensor would read it as a scalar
  CHECK(error_of([&] { (void)interop::as_xarray(none); }).find("rank 0") != std::string::npos);

  const Tensor<float, Ref>& ct = t;
  auto cx = interop::as_xarray(ct);
  static_assert(std::is_const_v<std::remove_reference_t<decltype(*cx.data())>>);
  CHECK(cx.data() == t.data());
}

TEST_CASE("interop xtensor: as_xtensor<R> has a fixed rank and refuses another") {
  Tensor<float, Ref> t(Shape{6, 7});
  t.zero();
  auto x = interop::as_xtensor<2>(t);
  static_assert(std::is_same_v<std::decay_t<decltype(x.shape())>, std::array<std::size_t, 2>>);
  CHECK(x.shape()[1] == 7);
  x(5, 6) = 1.0f;
  CHECK(t.data()[41] == 1.0f);
  const std::string e = error_of([&] { (void)interop::as_xtensor<4>(t); });
  CHECK(e.find("as_xtensor") != std::string::npos);
  CHECK(e.find("rank 2") != std::string::npos);
  // a slice of a view keeps pointing into the same memory
  auto s = interop::as_xtensor<2>(t.view().slice(2, 3));
  CHECK(s.shape()[0] == 3);
  CHECK(s.data() == t.data() + 14);
}

TEST_CASE("interop xtensor: sample results as views, frames, and moved out without a copy") {
  SampleResult<float> r = fake_result(3, 2, 4, 4);
  auto v = interop::as_xtensor(r);
  CHECK(v.data() == r.images.data());
  CHECK(v.shape()[0] == 3);
  CHECK(v.shape()[1] == 2);
  CHECK(v(2, 1, 3, 3) == r.images.back());
  auto f = interop::frame_as_xtensor(r, 0);
  CHECK(f.data() == r.frames[0].data());
  CHECK(error_of([&] { (void)interop::frame_as_xtensor(r, 1); }).find("frame_as_xtensor: i") !=
        std::string::npos);

  const float* p = r.images.data();
  const float last = r.images.back();
  auto owned = interop::to_xtensor(std::move(r));
  CHECK(owned.data() == p);  // moved, not copied
  CHECK(owned.shape()[3] == 4);
  CHECK(owned(2, 1, 3, 3) == last);
  xt::xtensor<float, 4> copy = owned * 2.0f;  // a usable xtensor expression
  CHECK(copy(2, 1, 3, 3) == 2.0f * last);

  SampleResult<float> broken = fake_result(1, 1, 2, 2);
  broken.images.pop_back();
  CHECK(error_of([&] { (void)interop::as_xtensor(broken); }).find("sample result") != std::string::npos);
}

TEST_CASE("interop xtensor: as_view of an xtensor container shares memory, strided input refused") {
  xt::xarray<float> a = xt::arange<float>(0.0f, 24.0f).reshape({2, 3, 4});
  View<float> v = interop::as_view(a, "a");
  CHECK(v.data() == a.data());
  CHECK(v.shape() == Shape{2, 3, 4});
  v[5] = 100.0f;
  CHECK(a(0, 1, 1) == 100.0f);

  const xt::xtensor<float, 4> b = xt::zeros<float>({1, 1, 2, 2});
  auto cv = interop::as_view(b);
  static_assert(std::is_same_v<decltype(cv), ConstView<float>>);
  CHECK(cv.shape() == Shape{1, 1, 2, 2});

  xt::xarray<float> tr = xt::zeros<float>({3, 4});
  auto strided = xt::view(tr, xt::all(), xt::range(0, 4, 2));  // every other column
  const std::string e = error_of([&] { (void)interop::as_view(strided, "x0"); });
  CHECK(e.find("x0") != std::string::npos);
  CHECK(e.find("contiguous") != std::string::npos);

  const std::span<const float> sp = interop::as_span(a, "images");
  CHECK(sp.data() == a.data());
  CHECK(sp.size() == 24);
  CHECK(error_of([&] { (void)interop::as_span(strided, "mask"); }).find("ddpm: mask") != std::string::npos);

  xt::xarray<float> r5 = xt::zeros<float>({1, 1, 1, 1, 2});
  CHECK(error_of([&] { (void)interop::as_view(r5, "r5"); }).find("rank 5") != std::string::npos);
}

TEST_CASE("interop xtensor: to_tensor reads (N,C,H,W) and (N,H,W), evaluates expressions in order") {
  xt::xtensor<double, 3> a = xt::arange<double>(0.0, 24.0).reshape({2, 3, 4});
  auto t = interop::to_tensor<Ref>(a);
  CHECK(t.shape() == Shape{2, 1, 3, 4});
  for (std::size_t i = 0; i < 24; ++i) CHECK(t.data()[i] == float(i));

  // a transposed (non-contiguous) expression is evaluated in row-major order of its own shape
  xt::xarray<float> m = xt::arange<float>(0.0f, 6.0f).reshape({1, 1, 2, 3});
  auto tt = interop::to_tensor<Ref>(xt::transpose(m, {0, 1, 3, 2}));
  REQUIRE(tt.shape() == Shape{1, 1, 3, 2});
  const std::vector<float> expect{0, 3, 1, 4, 2, 5};
  CHECK(tt.to_vector() == expect);
  // a lazy arithmetic expression
  auto te = interop::to_tensor<Ref>(m * 2.0f - 1.0f);
  CHECK(te.data()[5] == 9.0f);

  xt::xarray<float> two_d = xt::zeros<float>({4, 4});
  std::string e = error_of([&] { (void)interop::to_tensor<Ref>(two_d, "images"); });
  CHECK(e.find("ddpm: images") != std::string::npos);
  CHECK(e.find("(N, C, H, W) or (N, H, W)") != std::string::npos);

  xt::xarray<float> bad = xt::zeros<float>({1, 1, 2, 2});
  bad(0, 0, 1, 0) = std::numeric_limits<float>::quiet_NaN();
  e = error_of([&] { (void)interop::to_tensor<Ref>(bad, "x_T"); });
  CHECK(e.find("x_T") != std::string::npos);
  CHECK(e.find("not finite") != std::string::npos);
  CHECK(e.find("flat index 2") != std::string::npos);

  xt::xarray<float> img = xt::zeros<float>({1, 1, 2, 2});
  img(0, 0, 0, 1) = 1.5f;
  e = error_of([&] { (void)interop::to_tensor<Ref>(img, "image", interop::image_range); });
  CHECK(e.find("outside [-1, 1]") != std::string::npos);
}

TEST_CASE("interop xtensor: to_mask accepts [0, 1] and refuses values outside") {
  xt::xtensor<float, 3> mask = xt::ones<float>({2, 4, 4});
  mask(1, 2, 2) = 0.0f;
  auto m = interop::to_mask<Ref>(mask);
  CHECK(m.shape() == Shape{2, 1, 4, 4});
  CHECK(m.data()[16 + 10] == 0.0f);
  mask(0, 0, 0) = -0.5f;
  const std::string e = error_of([&] { (void)interop::to_mask<Ref>(mask); });
  CHECK(e.find("ddpm: mask") != std::string::npos);
  CHECK(e.find("outside [0, 1]") != std::string::npos);
}

TEST_CASE("interop xtensor: to_dataset quantises [-1, 1] to the trainer's 8-bit pixels exactly") {
  // pixels p on the 8-bit grid as the trainer maps them: p / 127.5 - 1 (float)
  xt::xtensor<float, 4> x({4, 1, 8, 8});
  std::vector<std::uint8_t> expect(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    expect[i] = std::uint8_t((i * 37) % 256);
    x.data()[i] = float(expect[i]) / 127.5f - 1.0f;
  }
  const std::vector<std::int32_t> labels{0, 1, 2, 1};
  io::ImageDataset d = interop::to_dataset(x, labels);
  CHECK(d.n == 4);
  CHECK(d.c == 1);
  CHECK(d.h == 8);
  CHECK(d.w == 8);
  CHECK(d.pixels == expect);
  CHECK(d.labels == labels);

  // integer images are copied as they are; labels from an xtensor array
  xt::xtensor<std::uint8_t, 3> u8 = xt::zeros<std::uint8_t>({2, 2, 2});
  u8(1, 1, 1) = 255;
  xt::xtensor<int, 1> yl = {3, 4};
  d = interop::to_dataset(u8, yl);
  CHECK(d.c == 1);
  CHECK(d.pixels[7] == 255);
  CHECK(d.labels == std::vector<std::int32_t>{3, 4});

  // other ranges: [0, 1] floats
  xt::xarray<double> unit = {{{0.0, 1.0}, {0.5, 0.25}}};
  d = interop::to_dataset(unit, {}, {.lo = 0.0, .hi = 1.0});
  CHECK(d.pixels == std::vector<std::uint8_t>{0, 255, 128, 64});
}

TEST_CASE("interop xtensor: to_dataset names the parameter and the problem") {
  xt::xtensor<float, 4> x = xt::zeros<float>({2, 1, 2, 2});
  std::string e = error_of([&] { (void)interop::to_dataset(x, std::vector<std::int32_t>{1}); });
  CHECK(e.find("to_dataset: labels") != std::string::npos);
  CHECK(e.find("1 labels for 2 images") != std::string::npos);
  e = error_of([&] { (void)interop::to_dataset(x, std::vector<std::int32_t>{0, -1}); });
  CHECK(e.find("label -1") != std::string::npos);
  xt::xtensor<int, 2> y2 = xt::zeros<int>({2, 1});
  e = error_of([&] { (void)interop::to_dataset(x, y2); });
  CHECK(e.find("must be 1-d") != std::string::npos);

  x(1, 0, 1, 1) = 1.01f;
  e = error_of([&] { (void)interop::to_dataset(x); });
  CHECK(e.find("to_dataset: images") != std::string::npos);
  CHECK(e.find("flat index 7") != std::string::npos);
  x(1, 0, 1, 1) = std::numeric_limits<float>::infinity();
  CHECK(error_of([&] { (void)interop::to_dataset(x); }).find("not finite") != std::string::npos);

  xt::xtensor<int, 3> big = xt::zeros<int>({1, 2, 2});
  big(0, 1, 0) = 300;
  CHECK(error_of([&] { (void)interop::to_dataset(big); }).find("outside [0, 255]") != std::string::npos);

  xt::xtensor<float, 1> flat = xt::zeros<float>({4});
  CHECK(error_of([&] { (void)interop::to_dataset(flat); }).find("rank 1") != std::string::npos);
  xt::xtensor<float, 3> empty = xt::zeros<float>({0, 2, 2});
  CHECK(error_of([&] { (void)interop::to_dataset(empty); }).find("empty") != std::string::npos);
  CHECK(error_of([&] { (void)interop::to_dataset(x, {}, {.lo = 1.0, .hi = 1.0}); })
            .find("DatasetOptions") != std::string::npos);
}
