// SPDX-License-Identifier: MIT
// ddpm/interop/eigen.hpp — the library's tensors and samples as Eigen matrices (one row per
// item of the leading dimension), and Eigen matrices as training data, images and masks.
// CMake: ddpm::eigen (find_package(ddpm COMPONENTS eigen)); needs Eigen 3.4.
//
//   auto m = ddpm::interop::as_matrix(result);        // N x (C*H*W) Eigen::Map, no copy
//   Eigen::VectorXf mean = m.rowwise().mean();        // per-image mean
//   trainer.fit(ddpm::interop::to_dataset(rows, 1, 28, 28, labels));  // one image per row
//
// Maps and views share memory with what they view and are valid as long as it lives; the
// overloads for temporaries are deleted. to_* functions copy and check.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "ddpm/interop/common.hpp"

namespace ddpm::interop {

/// A dynamic-size row-major matrix: the layout of the library's tensors seen as (N x rest).
template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Eigen::Map of a (rows x cols) row-major block of T (read-only when T is const).
template <class T>
using MatrixMap = Eigen::Map<std::conditional_t<std::is_const_v<T>, const RowMatrix<std::remove_const_t<T>>,
                                                RowMatrix<T>>>;
/// Eigen::Map of a column vector of T (read-only when T is const).
template <class T>
using VectorMap = Eigen::Map<std::conditional_t<std::is_const_v<T>,
                                                const Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, 1>,
                                                Eigen::Matrix<T, Eigen::Dynamic, 1>>>;

// ------------------------------------------------------------------ library -> Eigen (maps)

/// v as an (N x rest) matrix: row i is item i of the leading dimension (image i of an NCHW
/// tensor, C*H*W columns); a rank-1 view is one column. No copy; host memory only.
template <class T>
[[nodiscard]] MatrixMap<T> as_matrix(View<T> v) {
  const std::size_t rows = v.shape().rank == 0 ? 0 : v.shape()[0];
  const std::size_t cols = rows == 0 ? 0 : v.size() / rows;
  return MatrixMap<T>(v.data(), Eigen::Index(rows), Eigen::Index(cols));
}

/// All elements of v as one column vector. No copy; host memory only.
template <class T>
[[nodiscard]] VectorMap<T> as_vector(View<T> v) {
  return VectorMap<T>(v.data(), Eigen::Index(v.size()));
}

template <class T, class B>
[[nodiscard]] MatrixMap<T> as_matrix(Tensor<T, B>& t) {
  static_assert(detail::host_backend_v<B>,
                "ddpm: as_matrix: the tensor is in device memory; copy it to the host first "
                "(Tensor::to_vector) or use a CPU backend");
  return as_matrix(t.view());
}
template <class T, class B>
[[nodiscard]] MatrixMap<const T> as_matrix(const Tensor<T, B>& t) {
  static_assert(detail::host_backend_v<B>,
                "ddpm: as_matrix: the tensor is in device memory; copy it to the host first "
                "(Tensor::to_vector) or use a CPU backend");
  return as_matrix(t.cview());
}
template <class T, class B>
void as_matrix(Tensor<T, B>&&) = delete;  // the map would outlive the tensor

template <class T, class B>
[[nodiscard]] VectorMap<T> as_vector(Tensor<T, B>& t) {
  static_assert(detail::host_backend_v<B>,
                "ddpm: as_vector: the tensor is in device memory; copy it to the host first "
                "(Tensor::to_vector) or use a CPU backend");
  return as_vector(t.view());
}
template <class T, class B>
[[nodiscard]] VectorMap<const T> as_vector(const Tensor<T, B>& t) {
  static_assert(detail::host_backend_v<B>,
                "ddpm: as_vector: the tensor is in device memory; copy it to the host first "
                "(Tensor::to_vector) or use a CPU backend");
  return as_vector(t.cview());
}
template <class T, class B>
void as_vector(Tensor<T, B>&&) = delete;  // the map would outlive the tensor

/// The final images of a sampling run as a read-only N x (C*H*W) matrix, no copy.
template <class T>
[[nodiscard]] MatrixMap<const T> as_matrix(const SampleResult<T>& r) {
  detail::require(r.shape.rank == 4 && r.images.size() == r.shape.numel(), "as_matrix: sample result",
                  "holds ", r.images.size(), " values for shape ", r.shape.str());
  return as_matrix(ConstView<T>(r.images.data(), r.shape));
}
template <class T>
void as_matrix(SampleResult<T>&&) = delete;  // the map would outlive the result

// ------------------------------------------------------------------ Eigen -> library

namespace detail {

/// Calls f(pointer to row-major values) on m's storage when it is a contiguous row-major block
/// (or a vector), on a row-major copy otherwise (column-major matrices, blocks, expressions).
template <class D, class F>
decltype(auto) eigen_row_major(const Eigen::DenseBase<D>& m, F&& f) {
  using S = typename D::Scalar;
  if constexpr (bool(D::Flags & Eigen::DirectAccessBit)) {
    const D& d = m.derived();
    const bool vector = d.rows() == 1 || d.cols() == 1;
    const bool row_major_dense = bool(D::IsRowMajor) && d.innerStride() == 1 &&
                                 (d.rows() <= 1 || d.outerStride() == d.cols());
    const bool vector_dense = vector && (d.size() <= 1 || d.innerStride() == 1) &&
                              (bool(D::IsRowMajor) ? d.rows() == 1 : d.cols() == 1);
    if (row_major_dense || vector_dense) return f(static_cast<const S*>(d.data()));
  }
  const RowMatrix<S> tmp = m;
  return f(static_cast<const S*>(tmp.data()));
}

inline Shape rows_as_images(Eigen::Index rows, Eigen::Index cols, std::size_t c, std::size_t h,
                            std::size_t w, std::string_view param) {
  require(std::size_t(cols) == c * h * w, param, "has ", cols, " columns, but images of ", c, "x", h,
          "x", w, " need ", c * h * w, " (one image per row)");
  return Shape{std::size_t(rows), c, h, w};
}

}  // namespace detail

/// Zero-copy view of a row-major Eigen matrix (or any vector) with contiguous storage as a
/// library View of `shape` (shape.numel() == m.size()), e.g. one image per row as
/// (N, C, H, W) for Model::forward_backward on a CPU backend. Mutable when m is.
/// @throws std::invalid_argument naming `param` when m is column-major with more than one row
/// and column, strided, or of another size than `shape`.
template <class D>
  requires(bool(std::remove_cvref_t<D>::Flags & Eigen::DirectAccessBit))
[[nodiscard]] auto as_view(D& m, Shape shape, std::string_view param = "as_view") {
  using M = std::remove_cvref_t<D>;
  using S = std::conditional_t<std::is_const_v<D> || !bool(M::Flags & Eigen::LvalueBit),
                               const typename M::Scalar, typename M::Scalar>;
  const bool vector = m.rows() == 1 || m.cols() == 1;
  const bool ok = (bool(M::IsRowMajor) && m.innerStride() == 1 &&
                   (m.rows() <= 1 || m.outerStride() == m.cols())) ||
                  (vector && (m.size() <= 1 || m.innerStride() == 1) &&
                   (bool(M::IsRowMajor) ? m.rows() == 1 : m.cols() == 1));
  detail::require(ok, param,
                  "is not a contiguous row-major matrix (Eigen's default is column-major: use "
                  "ddpm::interop::RowMatrix, or copy with to_tensor)");
  detail::require(shape.numel() == std::size_t(m.size()), param, "has ", m.size(),
                  " values, shape ", shape.str(), " needs ", shape.numel());
  return View<S>(const_cast<S*>(m.data()), shape);
}
template <class D>
  requires(!std::is_lvalue_reference_v<D> &&
           bool(std::remove_cvref_t<D>::Flags & Eigen::DirectAccessBit))
void as_view(D&&, Shape, std::string_view = {}) = delete;  // the view would outlive the matrix

/// The values of a row-major Eigen matrix (or vector) with contiguous storage as a std::span in
/// row order, no copy: for the functions that take images or masks as spans (e.g.
/// Model::img2img / inpaint, one image per row). @throws std::invalid_argument as as_view does.
template <class D>
  requires(bool(std::remove_cvref_t<D>::Flags & Eigen::DirectAccessBit))
[[nodiscard]] auto as_span(D& m, std::string_view param = "as_span") {
  const auto v = as_view(m, Shape{std::size_t(m.size())}, param);
  return std::span<typename decltype(v)::value_type const>(v.data(), v.size());
}
template <class D>
  requires(!std::is_lvalue_reference_v<D> &&
           bool(std::remove_cvref_t<D>::Flags & Eigen::DirectAccessBit))
void as_span(D&&, std::string_view = {}) = delete;  // the span would outlive the matrix

/// Copies an Eigen matrix with one image per row (c*h*w columns, in C, H, W order) into an
/// (N, c, h, w) tensor of backend B, as element type T. Any storage order.
/// @throws std::invalid_argument naming `param` on a column count that does not match, or a
/// value that is not finite or outside `range` (e.g. interop::image_range, interop::mask_range).
template <class B, class T = float, class D>
[[nodiscard]] Tensor<T, B> to_tensor(const Eigen::DenseBase<D>& rows, std::size_t c, std::size_t h,
                                     std::size_t w, std::string_view param = "images",
                                     const Range& range = {}) {
  const Shape s = detail::rows_as_images(rows.rows(), rows.cols(), c, h, w, param);
  return detail::eigen_row_major(rows, [&](const auto* p) { return detail::make_tensor<T, B>(p, s, param, range); });
}

/// to_tensor with the mask range [0, 1].
template <class B, class T = float, class D>
[[nodiscard]] Tensor<T, B> to_mask(const Eigen::DenseBase<D>& rows, std::size_t c, std::size_t h,
                                   std::size_t w, std::string_view param = "mask") {
  return to_tensor<B, T>(rows, c, h, w, param, mask_range);
}

/// An Eigen matrix with one image per row (c*h*w columns) as the 8-bit data set that
/// Trainer::fit takes (see DatasetOptions for the value mapping), with one class label per image
/// for a class-conditional model (empty otherwise).
/// @throws std::invalid_argument naming "to_dataset: images" or "to_dataset: labels".
template <class D>
[[nodiscard]] io::ImageDataset to_dataset(const Eigen::DenseBase<D>& rows, std::size_t c, std::size_t h,
                                          std::size_t w, std::span<const std::int32_t> labels = {},
                                          const DatasetOptions& options = {}) {
  const Shape s = detail::rows_as_images(rows.rows(), rows.cols(), c, h, w, "to_dataset: images");
  std::vector<std::int32_t> y;
  if (!labels.empty()) y = detail::make_labels(labels.data(), labels.size(), s.n(), "to_dataset: labels");
  return detail::eigen_row_major(rows, [&](const auto* p) {
    return detail::make_dataset(p, s, std::move(y), "to_dataset: images", options);
  });
}

}  // namespace ddpm::interop
