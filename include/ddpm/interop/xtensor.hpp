// SPDX-License-Identifier: MIT
// ddpm/interop/xtensor.hpp — the library's tensors and samples as xtensor expressions, and
// xtensor arrays as training data, images and masks. CMake: ddpm::xtensor
// (find_package(ddpm COMPONENTS xtensor)); needs xtensor >= 0.24 and xtl.
//
//   auto x = ddpm::interop::as_xtensor(result);            // (N, C, H, W) view of sample images
//   xt::xtensor<float, 4> mine = ...;                      // values in [-1, 1]
//   trainer.fit(ddpm::interop::to_dataset(mine, labels));  // 8-bit data set for Trainer::fit
//   model.forward_backward(ddpm::interop::as_view(mine), labels, step, {});  // no copy (CPU)
//
// Views (as_xarray, as_xtensor, as_view) share memory with what they view and are valid as long
// as it lives; the overloads for temporaries are deleted. to_* functions copy and check.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xexpression.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xutils.hpp>

#include "ddpm/interop/common.hpp"

namespace ddpm::interop {

// ------------------------------------------------------------------ library -> xtensor (views)

/// A view of v's memory as an xtensor expression of v's rank (1..4), row-major, no copy.
/// Mutable when T is; the memory must be host memory (CPU or reference backend).
/// @throws std::invalid_argument for an empty (rank-0) view: xtensor would read it as a scalar.
template <class T>
[[nodiscard]] auto as_xarray(View<T> v) {
  detail::require(v.shape().rank >= 1, "as_xarray: view", "is empty (rank 0): nothing to view");
  std::vector<std::size_t> shape(v.shape().dims.begin(), v.shape().dims.begin() + v.shape().rank);
  return ::xt::adapt(v.data(), v.size(), ::xt::no_ownership(), shape);
}

/// A view of v's memory as a rank-R xtensor expression (xt::xtensor_adaptor), no copy.
/// @throws std::invalid_argument when v's rank is not R.
template <std::size_t R, class T>
[[nodiscard]] auto as_xtensor(View<T> v) {
  static_assert(R >= 1 && R <= Shape::max_rank, "ddpm: as_xtensor<R>: R must be 1..4");
  detail::require(v.shape().rank == R, "as_xtensor: view", "has rank ", v.shape().rank,
                  " (shape ", v.shape().str(), "), not ", R);
  std::array<std::size_t, R> shape{};
  for (std::size_t i = 0; i < R; ++i) shape[i] = v.shape().dims[i];
  return ::xt::adapt(v.data(), v.size(), ::xt::no_ownership(), shape);
}

template <class T, class B>
[[nodiscard]] auto as_xarray(Tensor<T, B>& t) {
  static_assert(detail::host_backend_v<B>,
                "ddpm: as_xarray: the tensor is in device memory; copy it to the host first "
                "(Tensor::to_vector) or use a CPU backend");
  return as_xarray(t.view());
}
template <class T, class B>
[[nodiscard]] auto as_xarray(const Tensor<T, B>& t) {
  static_assert(detail::host_backend_v<B>,
                "ddpm: as_xarray: the tensor is in device memory; copy it to the host first "
                "(Tensor::to_vector) or use a CPU backend");
  return as_xarray(t.cview());
}
template <class T, class B>
void as_xarray(Tensor<T, B>&&) = delete;  // the view would outlive the tensor

template <std::size_t R, class T, class B>
[[nodiscard]] auto as_xtensor(Tensor<T, B>& t) {
  static_assert(detail::host_backend_v<B>,
                "ddpm: as_xtensor: the tensor is in device memory; copy it to the host first "
                "(Tensor::to_vector) or use a CPU backend");
  return as_xtensor<R>(t.view());
}
template <std::size_t R, class T, class B>
[[nodiscard]] auto as_xtensor(const Tensor<T, B>& t) {
  static_assert(detail::host_backend_v<B>,
                "ddpm: as_xtensor: the tensor is in device memory; copy it to the host first "
                "(Tensor::to_vector) or use a CPU backend");
  return as_xtensor<R>(t.cview());
}
template <std::size_t R, class T, class B>
void as_xtensor(Tensor<T, B>&&) = delete;  // the view would outlive the tensor

/// The final images of a sampling run as a read-only (N, C, H, W) xtensor view, no copy.
template <class T>
[[nodiscard]] auto as_xtensor(const SampleResult<T>& r) {
  detail::require(r.shape.rank == 4 && r.images.size() == r.shape.numel(), "as_xtensor: sample result",
                  "holds ", r.images.size(), " values for shape ", r.shape.str());
  return as_xtensor<4>(ConstView<T>(r.images.data(), r.shape));
}
template <class T>
void as_xtensor(SampleResult<T>&&) = delete;  // use to_xtensor(std::move(result)) to keep them

/// Recorded frame i (SampleOptions::record_every) as a read-only (N, C, H, W) view, no copy.
template <class T>
[[nodiscard]] auto frame_as_xtensor(const SampleResult<T>& r, std::size_t i) {
  detail::require(i < r.frames.size(), "frame_as_xtensor: i", "frame ", i, " of ", r.frames.size(),
                  " recorded frames");
  detail::require(r.frames[i].size() == r.shape.numel(), "frame_as_xtensor: sample result",
                  "frame ", i, " holds ", r.frames[i].size(), " values for shape ", r.shape.str());
  return as_xtensor<4>(ConstView<T>(r.frames[i].data(), r.shape));
}
template <class T>
void frame_as_xtensor(SampleResult<T>&&, std::size_t) = delete;

/// Takes the images out of a sampling result into an (N, C, H, W) xtensor that owns them (the
/// vector is moved, not copied): `auto x = to_xtensor(model.sample(...));`.
template <class T>
[[nodiscard]] ::xt::xtensor_adaptor<std::vector<T>, 4> to_xtensor(SampleResult<T>&& r) {
  detail::require(r.shape.rank == 4 && r.images.size() == r.shape.numel(), "to_xtensor: sample result",
                  "holds ", r.images.size(), " values for shape ", r.shape.str());
  const std::array<std::size_t, 4> shape{r.shape[0], r.shape[1], r.shape[2], r.shape[3]};
  return ::xt::adapt(std::move(r.images), shape);
}

// ------------------------------------------------------------------ xtensor -> library

namespace detail {

template <class E>
concept has_strided_data = ::xt::has_data_interface<std::decay_t<E>>::value && requires(const E& e) {
  e.strides();
  e.data_offset();
};

/// True when e's elements lie contiguously in row-major order at e.data() + e.data_offset().
/// (xtensor gives size-1 dimensions the stride 0; they are skipped.)
template <class E>
bool contiguous_row_major(const E& e) {
  if constexpr (has_strided_data<E>) {
    const auto& sh = e.shape();
    const auto& st = e.strides();
    std::ptrdiff_t expect = 1;
    for (std::size_t i = sh.size(); i-- > 0;) {
      if (sh[i] != 1 && std::ptrdiff_t(st[i]) != expect) return false;
      expect *= std::ptrdiff_t(sh[i]);
    }
    return true;
  } else {
    return false;
  }
}

/// Calls f(pointer to the row-major values, dims) on e's data in place when it is contiguous
/// row-major, or on a row-major evaluation of e otherwise (views, broadcasts, expressions).
template <class E, class F>
decltype(auto) xt_row_major(const E& e, F&& f) {
  using V = std::decay_t<typename E::value_type>;
  if constexpr (has_strided_data<E>) {
    if (contiguous_row_major(e)) {
      const std::vector<std::size_t> dims(e.shape().begin(), e.shape().end());
      return f(static_cast<const V*>(e.data() + e.data_offset()), std::span<const std::size_t>(dims));
    }
  }
  const ::xt::xarray<V, ::xt::layout_type::row_major> tmp = e;
  const std::vector<std::size_t> dims(tmp.shape().begin(), tmp.shape().end());
  return f(tmp.data(), std::span<const std::size_t>(dims));
}

}  // namespace detail

/// Zero-copy view of a contiguous row-major xtensor container (xt::xarray, xt::xtensor,
/// xt::adapt of a buffer; rank 1..4) as a library View, e.g. as x0 for
/// Model::forward_backward on a CPU backend. Mutable when e is.
/// @throws std::invalid_argument naming `param` when e is not contiguous row-major (evaluate it
/// with xt::eval, or copy with to_tensor) or its rank is not 1..4.
template <class E>
  requires detail::has_strided_data<E>
[[nodiscard]] auto as_view(E& e, std::string_view param = "as_view") {
  using V = std::remove_reference_t<decltype(*e.data())>;
  const auto& sh = e.shape();
  detail::require(sh.size() >= 1 && sh.size() <= Shape::max_rank, param, "rank ", sh.size(),
                  " is not 1..4");
  detail::require(detail::contiguous_row_major(e), param,
                  "is not contiguous in row-major order; evaluate it first (xt::eval) or copy it "
                  "with to_tensor");
  Shape s;
  for (std::size_t d : sh) s.dims[s.rank++] = d;
  return View<V>(e.data() + e.data_offset(), s);
}
template <class E>
  requires(!std::is_lvalue_reference_v<E> && detail::has_strided_data<E>)
void as_view(E&&, std::string_view = {}) = delete;  // the view would outlive the array

/// The values of a contiguous row-major xtensor container as a std::span, no copy: for the
/// functions that take images or masks as spans (e.g. Model::img2img / inpaint, NCHW order).
/// @throws std::invalid_argument naming `param` as as_view does.
template <class E>
  requires detail::has_strided_data<E>
[[nodiscard]] auto as_span(E& e, std::string_view param = "as_span") {
  const auto v = as_view(e, param);
  return std::span<typename decltype(v)::value_type const>(v.data(), v.size());
}
template <class E>
  requires(!std::is_lvalue_reference_v<E> && detail::has_strided_data<E>)
void as_span(E&&, std::string_view = {}) = delete;  // the span would outlive the array

/// Copies an xtensor expression of images, (N, C, H, W) or (N, H, W) (read as C = 1), into a
/// tensor of backend B (any backend, CUDA included), as element type T.
/// @throws std::invalid_argument naming `param` on another rank, or a value that is not finite
/// or outside `range` (e.g. interop::image_range, interop::mask_range).
template <class B, class T = float, class E>
[[nodiscard]] Tensor<T, B> to_tensor(const ::xt::xexpression<E>& images, std::string_view param = "images",
                                     const Range& range = {}) {
  return detail::xt_row_major(images.derived_cast(), [&](const auto* p, std::span<const std::size_t> dims) {
    return detail::make_tensor<T, B>(p, detail::image_shape(dims, param), param, range);
  });
}

/// to_tensor with the mask range [0, 1]: a mask of shape (N, C, H, W) or (N, H, W).
template <class B, class T = float, class E>
[[nodiscard]] Tensor<T, B> to_mask(const ::xt::xexpression<E>& mask, std::string_view param = "mask") {
  return to_tensor<B, T>(mask, param, mask_range);
}

/// An xtensor expression of images, (N, C, H, W) or (N, H, W), as the 8-bit data set that
/// Trainer::fit takes (see DatasetOptions for the value mapping), with one class label per image
/// for a class-conditional model (empty otherwise).
/// @throws std::invalid_argument naming "to_dataset: images" or "to_dataset: labels".
template <class E>
[[nodiscard]] io::ImageDataset to_dataset(const ::xt::xexpression<E>& images,
                                          std::span<const std::int32_t> labels = {},
                                          const DatasetOptions& options = {}) {
  return detail::xt_row_major(images.derived_cast(), [&](const auto* p, std::span<const std::size_t> dims) {
    const Shape s = detail::image_shape(dims, "to_dataset: images");
    std::vector<std::int32_t> y;
    if (!labels.empty()) y = detail::make_labels(labels.data(), labels.size(), s.n(), "to_dataset: labels");
    return detail::make_dataset(p, s, std::move(y), "to_dataset: images", options);
  });
}

/// to_dataset with the labels given as a 1-d xtensor expression of integers.
template <class E, class L>
[[nodiscard]] io::ImageDataset to_dataset(const ::xt::xexpression<E>& images,
                                          const ::xt::xexpression<L>& labels,
                                          const DatasetOptions& options = {}) {
  const auto& l = labels.derived_cast();
  detail::require(l.dimension() == 1, "to_dataset: labels", "must be 1-d, got rank ", l.dimension());
  return detail::xt_row_major(l, [&](const auto* lp, std::span<const std::size_t> ldims) {
    return detail::xt_row_major(images.derived_cast(), [&](const auto* p, std::span<const std::size_t> dims) {
      const Shape s = detail::image_shape(dims, "to_dataset: images");
      return detail::make_dataset(p, s, detail::make_labels(lp, ldims[0], s.n(), "to_dataset: labels"),
                                  "to_dataset: images", options);
    });
  });
}

}  // namespace ddpm::interop
