// SPDX-License-Identifier: MIT
// ddpm/train/communicator.hpp — the transport of data-parallel training: a group of processes and
// the collectives it needs (Communicator), and the one-process LocalCommunicator. It only moves
// bytes: it includes nothing of the model, the trainer or the I/O, so the transports
// (ddpm/train/mpi.hpp, ddpm/train/nccl.hpp) need only this header and their library.
// DistributedTrainer (ddpm/train/distributed.hpp) drives a Communicator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string_view>

namespace ddpm::dist {

/// Element types of the collectives.
enum class DType : std::uint8_t { f32, f64, u64 };

/// The DType of T: float, double or std::uint64_t; any other type does not compile.
template <class T>
struct DTypeOf {
  static_assert(sizeof(T) == 0,
                "ddpm: dist::dtype_of<T>: the collectives move float, double or std::uint64_t "
                "elements only");
};
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::f32;
};
template <>
struct DTypeOf<double> {
  static constexpr DType value = DType::f64;
};
template <>
struct DTypeOf<std::uint64_t> {
  static constexpr DType value = DType::u64;
};
template <class T>
inline constexpr DType dtype_of = DTypeOf<T>::value;

[[nodiscard]] inline std::size_t dtype_size(DType t) noexcept { return t == DType::f32 ? 4 : 8; }

/// Reductions of host values.
enum class ReduceOp : std::uint8_t { sum, min, max, bit_or };

/// The ranks disagree (state checksums after a resume), or a collective failed.
class DistributedError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A group of processes and the collectives data-parallel training needs. Data collectives take
/// tensor memory: host pointers, or device pointers when device_buffers() (NCCL). Host
/// collectives (losses, flags, checksums) always take host memory. Every rank must call every
/// collective in the same order.
class Communicator {
 public:
  virtual ~Communicator() = default;
  [[nodiscard]] virtual int rank() const noexcept = 0;
  [[nodiscard]] virtual int size() const noexcept = 0;
  /// "local", "mpi", "nccl".
  [[nodiscard]] virtual std::string_view name() const noexcept = 0;
  /// True when the data collectives take CUDA device pointers.
  [[nodiscard]] virtual bool device_buffers() const noexcept = 0;

  /// data[i] = sum over the ranks of data[i] (in place, blocking).
  virtual void allreduce_sum(void* data, std::size_t count, DType type) = 0;
  /// data = root's data (blocking).
  virtual void broadcast(void* data, std::size_t count, DType type, int root) = 0;
  /// Starts allreduce_sum without waiting; the buffer must stay untouched until wait_all().
  /// Returns a handle for test(). Default: blocking.
  virtual std::size_t start_allreduce_sum(void* data, std::size_t count, DType type) {
    allreduce_sum(data, count, type);
    return 0;
  }
  /// Lets the started operations progress (MPI progresses non-blocking collectives only inside
  /// MPI calls); true when operation `handle` has completed.
  virtual bool test(std::size_t /*handle*/) { return true; }
  /// Completes every started operation: afterwards their results may be read (for device
  /// buffers: by work queued after this call on the compute stream).
  virtual void wait_all() {}

  virtual void allreduce_host(double* values, std::size_t count, ReduceOp op) = 0;
  virtual void allreduce_host(std::uint64_t* values, std::size_t count, ReduceOp op) = 0;
  virtual void broadcast_host(void* bytes, std::size_t count, int root) = 0;
  virtual void barrier() = 0;
  /// Stops every rank of the job with `message` on stderr (MPI_Abort): for errors after which
  /// the ranks can no longer meet in the same collective.
  [[noreturn]] virtual void abort(int code, std::string_view message) = 0;
};

/// One process: every collective is the identity.
class LocalCommunicator final : public Communicator {
 public:
  [[nodiscard]] int rank() const noexcept override { return 0; }
  [[nodiscard]] int size() const noexcept override { return 1; }
  [[nodiscard]] std::string_view name() const noexcept override { return "local"; }
  [[nodiscard]] bool device_buffers() const noexcept override { return false; }
  void allreduce_sum(void*, std::size_t, DType) override {}
  void broadcast(void*, std::size_t, DType, int) override {}
  void allreduce_host(double*, std::size_t, ReduceOp) override {}
  void allreduce_host(std::uint64_t*, std::size_t, ReduceOp) override {}
  void broadcast_host(void*, std::size_t, int) override {}
  void barrier() override {}
  [[noreturn]] void abort(int code, std::string_view message) override {
    std::fprintf(stderr, "%.*s\n", int(message.size()), message.data());
    std::fflush(stderr);
    std::_Exit(code);
  }
};

}  // namespace ddpm::dist
