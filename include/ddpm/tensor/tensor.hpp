// SPDX-License-Identifier: MIT
// ddpm/tensor/tensor.hpp — owning tensor (backend-allocated) and trivially copyable views.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddpm/backend/tags.hpp"
#include "ddpm/core/assert.hpp"
#include "ddpm/core/host_alloc.hpp"
#include "ddpm/core/shape.hpp"

namespace ddpm {

/// Non-owning view of a contiguous row-major tensor: a pointer and a shape. Trivially copyable;
/// pass by value, including into kernels. T may be const-qualified (ConstView).
template <class T>
class View {
 public:
  using value_type = std::remove_const_t<T>;

  constexpr View() = default;
  constexpr View(T* data, Shape shape) noexcept : data_(data), shape_(shape) {}
  /// View<T> converts to View<const T>.
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  constexpr View(View<U> v) noexcept : data_(v.data()), shape_(v.shape()) {}

  [[nodiscard]] constexpr T* data() const noexcept { return data_; }
  [[nodiscard]] constexpr const Shape& shape() const noexcept { return shape_; }
  [[nodiscard]] constexpr std::size_t size() const noexcept { return shape_.numel(); }
  [[nodiscard]] constexpr bool empty() const noexcept { return data_ == nullptr || size() == 0; }
  [[nodiscard]] constexpr std::size_t dim(std::size_t i) const noexcept { return shape_.dims[i]; }
  [[nodiscard]] constexpr std::size_t n() const noexcept { return shape_.dims[0]; }
  [[nodiscard]] constexpr std::size_t c() const noexcept { return shape_.dims[1]; }
  [[nodiscard]] constexpr std::size_t h() const noexcept { return shape_.dims[2]; }
  [[nodiscard]] constexpr std::size_t w() const noexcept { return shape_.dims[3]; }
  /// Host memory only.
  constexpr T& operator[](std::size_t i) const noexcept { return data_[i]; }

  /// Same memory, another shape with the same element count.
  [[nodiscard]] View reshape(Shape s) const {
    DDPM_REQUIRE(s.numel() == size(), "View::reshape", "cannot view ", shape_.str(), " as ",
                 s.str());
    return View(data_, s);
  }
  /// Items [begin, begin + count) of the leading dimension.
  [[nodiscard]] View slice(std::size_t begin, std::size_t count) const {
    DDPM_REQUIRE(shape_.rank > 0 && begin + count <= shape_.dims[0], "View::slice",
                    "range [", begin, ", ", begin + count, ") outside leading dimension of ",
                    shape_.str());
    Shape s = shape_;
    s.dims[0] = count;
    return View(data_ + begin * shape_.item_size(), s);
  }

 private:
  T* data_ = nullptr;
  Shape shape_{};
};

template <class T>
using ConstView = View<const T>;

namespace detail {

/// Counts buffer allocations made by Tensor (all memory spaces); the benchmarks read it to show
/// that the steady-state training loop allocates nothing.
inline std::atomic<std::size_t>& tensor_allocation_count() noexcept {
  static std::atomic<std::size_t> n{0};
  return n;
}

/// Memory primitives per memory space. Host: 64-byte aligned. The device specialisation is
/// declared in ddpm/backend/cuda/memory.hpp and defined in a .cu (explicit instantiation).
template <class Space>
struct Memory;

template <>
struct Memory<backend::host_memory> {
  static void* allocate(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    void* p = host_alloc(bytes);
    tensor_allocation_count().fetch_add(1, std::memory_order_relaxed);
    return p;
  }
  static void deallocate(void* p) noexcept { host_free(p); }
  static void copy_from_host(void* dst, const void* src, std::size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  static void copy_to_host(void* dst, const void* src, std::size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  static void copy(void* dst, const void* src, std::size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  static void zero(void* dst, std::size_t bytes) {
    if (bytes) std::memset(dst, 0, bytes);
  }
};

}  // namespace detail

/// Owning, contiguous, row-major tensor in the memory of backend B (NCHW for images).
/// Move-only. `resize` keeps the buffer when the new shape fits in the capacity, so a training
/// loop that reuses tensors allocates only in its first step.
template <class T, class B>
class Tensor {
  static_assert(std::is_trivially_copyable_v<T>, "ddpm::Tensor: element type must be trivial");

 public:
  using value_type = T;
  using backend_type = B;
  using memory = detail::Memory<typename B::memory_space>;

  Tensor() = default;
  explicit Tensor(Shape shape) { resize(shape); }
  /// Host-side contents copied in. `values.size()` must equal shape.numel().
  Tensor(Shape shape, std::span<const T> values) {
    resize(shape);
    copy_from(values);
  }
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;
  Tensor(Tensor&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)),
        shape_(std::exchange(o.shape_, Shape{})),
        capacity_(std::exchange(o.capacity_, 0)) {}
  Tensor& operator=(Tensor&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      shape_ = std::exchange(o.shape_, Shape{});
      capacity_ = std::exchange(o.capacity_, 0);
    }
    return *this;
  }
  ~Tensor() { release(); }

  /// Sets the shape; reallocates only if numel() exceeds the capacity. Contents are unspecified
  /// after a reallocation, kept otherwise.
  void resize(Shape shape) {
    const std::size_t n = shape.numel();
    if (n > capacity_) {
      release();
      data_ = static_cast<T*>(memory::allocate(n * sizeof(T)));
      capacity_ = n;
    }
    shape_ = shape;
  }
  /// Frees the buffer.
  void release() noexcept {
    if (data_) memory::deallocate(data_);
    data_ = nullptr;
    capacity_ = 0;
    shape_ = Shape{};
  }

  [[nodiscard]] T* data() noexcept { return data_; }
  [[nodiscard]] const T* data() const noexcept { return data_; }
  [[nodiscard]] const Shape& shape() const noexcept { return shape_; }
  [[nodiscard]] std::size_t size() const noexcept { return shape_.numel(); }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }

  [[nodiscard]] View<T> view() noexcept { return View<T>(data_, shape_); }
  [[nodiscard]] ConstView<T> view() const noexcept { return ConstView<T>(data_, shape_); }
  [[nodiscard]] ConstView<T> cview() const noexcept { return ConstView<T>(data_, shape_); }
  operator View<T>() noexcept { return view(); }              // NOLINT: implicit by design
  operator ConstView<T>() const noexcept { return cview(); }  // NOLINT

  void zero() { memory::zero(data_, size() * sizeof(T)); }
  void copy_from(std::span<const T> values) {
    DDPM_REQUIRE(values.size() == size(), "Tensor::copy_from", "got ", values.size(),
                 " values for shape ", shape_.str());
    memory::copy_from_host(data_, values.data(), values.size() * sizeof(T));
  }
  /// Contents as a host vector (a device-to-host copy for device tensors).
  [[nodiscard]] std::vector<T> to_vector() const {
    std::vector<T> out(size());
    memory::copy_to_host(out.data(), data_, size() * sizeof(T));
    return out;
  }

 private:
  T* data_ = nullptr;
  Shape shape_{};
  std::size_t capacity_ = 0;
};

}  // namespace ddpm
