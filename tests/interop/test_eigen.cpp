// Tests for ddpm/interop/eigen.hpp: tensors and sample results as N x rest Eigen maps over the
// same memory, Eigen matrices in as views, tensors and data sets (any storage order), and bad
// input refused naming the parameter.
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

#include <Eigen/Core>

#include "ddpm/backend/tags.hpp"
#include "ddpm/interop/eigen.hpp"

using namespace ddpm;
using Ref = backend::Reference;

namespace {

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

template <class A>
concept matrix_viewable = requires(A&& a) { interop::as_matrix(std::forward<A>(a)); };
static_assert(matrix_viewable<const SampleResult<float>&>);
static_assert(!matrix_viewable<SampleResult<float>&&>);
static_assert(matrix_viewable<Tensor<float, Ref>&>);
static_assert(!matrix_viewable<Tensor<float, Ref>&&>);

}  // namespace

TEST_CASE("interop eigen: as_matrix maps a tensor as N x (C*H*W) without copying") {
  Tensor<float, Ref> t(Shape{3, 2, 2, 2});
  for (std::size_t i = 0; i < t.size(); ++i) t.data()[i] = float(i);
  auto m = interop::as_matrix(t);
  CHECK(m.rows() == 3);
  CHECK(m.cols() == 8);
  CHECK(m.data() == t.data());
  CHECK(m(2, 5) == 21.0f);
  m(1, 0) = -3.0f;
  CHECK(t.data()[8] == -3.0f);
  const Eigen::VectorXf mean = m.rowwise().mean();
  CHECK(mean(0) == doctest::Approx(3.5));
  CHECK(mean(2) == doctest::Approx(19.5));

  const Tensor<float, Ref>& ct = t;
  auto cm = interop::as_matrix(ct);
  static_assert(std::is_const_v<std::remove_reference_t<decltype(*cm.data())>>);
  auto v = interop::as_vector(t);
  CHECK(v.size() == 24);
  CHECK(v.data() == t.data());
  CHECK(v.sum() == doctest::Approx(276.0 - 8.0 - 3.0));

  // rank 1: one column; empty: 0 x 0
  Tensor<float, Ref> r1(Shape{5});
  CHECK(interop::as_matrix(r1).rows() == 5);
  CHECK(interop::as_matrix(r1).cols() == 1);
  CHECK(interop::as_matrix(View<float>{}).size() == 0);
}

TEST_CASE("interop eigen: sample results as a read-only N x (C*H*W) map") {
  SampleResult<float> r;
  r.shape = Shape{4, 1, 2, 3};
  r.images.resize(24);
  for (std::size_t i = 0; i < 24; ++i) r.images[i] = float(i % 6) - 2.5f;
  auto m = interop::as_matrix(r);
  static_assert(std::is_const_v<std::remove_reference_t<decltype(*m.data())>>);
  CHECK(m.data() == r.images.data());
  CHECK(m.rows() == 4);
  CHECK(m.cols() == 6);
  CHECK(m.rowwise().mean().cwiseAbs().maxCoeff() == doctest::Approx(0.0));
  r.images.resize(23);
  CHECK(error_of([&] { (void)interop::as_matrix(r); }).find("as_matrix: sample result") != std::string::npos);
}

TEST_CASE("interop eigen: as_view of a row-major matrix or a vector shares memory, column-major refused") {
  interop::RowMatrix<float> rows(2, 16);
  rows.setZero();
  View<float> v = interop::as_view(rows, Shape{2, 1, 4, 4}, "x0");
  CHECK(v.data() == rows.data());
  v[17] = 5.0f;
  CHECK(rows(1, 1) == 5.0f);

  Eigen::VectorXf col = Eigen::VectorXf::LinSpaced(8, 0.0f, 7.0f);
  const Eigen::VectorXf& ccol = col;
  auto cv = interop::as_view(ccol, Shape{2, 4});
  static_assert(std::is_same_v<decltype(cv), ConstView<float>>);
  CHECK(cv[7] == 7.0f);

  const std::span<const float> sp = interop::as_span(rows, "images");
  CHECK(sp.data() == rows.data());
  CHECK(sp.size() == 32);
  CHECK(sp[17] == 5.0f);

  Eigen::MatrixXf colmajor = Eigen::MatrixXf::Zero(2, 16);
  std::string e = error_of([&] { (void)interop::as_view(colmajor, Shape{2, 1, 4, 4}, "x0"); });
  CHECK(e.find("ddpm: x0") != std::string::npos);
  CHECK(e.find("row-major") != std::string::npos);
  CHECK(error_of([&] { (void)interop::as_span(colmajor, "mask"); }).find("ddpm: mask") != std::string::npos);
  e = error_of([&] { (void)interop::as_view(rows, Shape{2, 1, 4, 5}, "x0"); });
  CHECK(e.find("has 32 values") != std::string::npos);
  // the left half of each row: rows are 16 apart, not 8
  auto blk = rows.leftCols(8);
  CHECK(error_of([&] { (void)interop::as_view(blk, Shape{16}); }).find("row-major") != std::string::npos);
}

TEST_CASE("interop eigen: to_tensor copies one image per row in any storage order") {
  Eigen::MatrixXd m(2, 6);  // column-major
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 6; ++j) m(i, j) = 10.0 * i + j;
  auto t = interop::to_tensor<Ref>(m, 1, 2, 3);
  CHECK(t.shape() == Shape{2, 1, 2, 3});
  const std::vector<float> expect{0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15};
  CHECK(t.to_vector() == expect);
  // an expression
  auto t2 = interop::to_tensor<Ref>(m.array() * 0.5, 1, 2, 3);
  CHECK(t2.data()[7] == 5.5f);

  std::string e = error_of([&] { (void)interop::to_tensor<Ref>(m, 3, 2, 2, "images"); });
  CHECK(e.find("ddpm: images") != std::string::npos);
  CHECK(e.find("6 columns") != std::string::npos);
  m(1, 2) = std::numeric_limits<double>::quiet_NaN();
  e = error_of([&] { (void)interop::to_tensor<Ref>(m, 1, 2, 3, "x_T"); });
  CHECK(e.find("x_T") != std::string::npos);
  CHECK(e.find("not finite") != std::string::npos);
  CHECK(e.find("flat index 8") != std::string::npos);

  Eigen::MatrixXf mask = Eigen::MatrixXf::Constant(1, 4, 0.5f);
  CHECK(interop::to_mask<Ref>(mask, 1, 2, 2).data()[3] == 0.5f);
  mask(0, 3) = 2.0f;
  CHECK(error_of([&] { (void)interop::to_mask<Ref>(mask, 1, 2, 2); }).find("outside [0, 1]") !=
        std::string::npos);
}

TEST_CASE("interop eigen: to_dataset from rows of [-1, 1] images with labels") {
  Eigen::MatrixXf m(3, 4);
  std::vector<std::uint8_t> expect;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) {
      const auto p = std::uint8_t(i * 80 + j * 20);
      m(i, j) = float(p) / 127.5f - 1.0f;
      expect.push_back(p);
    }
  const std::vector<std::int32_t> labels{2, 0, 1};
  io::ImageDataset d = interop::to_dataset(m, 1, 2, 2, labels);
  CHECK(d.n == 3);
  CHECK(d.pixels == expect);
  CHECK(d.labels == labels);
  CHECK(error_of([&] { (void)interop::to_dataset(m, 1, 2, 2, std::vector<std::int32_t>{1, 2}); })
            .find("to_dataset: labels") != std::string::npos);
  CHECK(error_of([&] { (void)interop::to_dataset(m, 1, 3, 2); }).find("to_dataset: images") !=
        std::string::npos);
}
