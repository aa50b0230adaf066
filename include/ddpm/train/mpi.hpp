// SPDX-License-Identifier: MIT
// ddpm/train/mpi.hpp — the MPI transport of data-parallel training (ddpm/train/distributed.hpp):
// MpiSession (MPI_Init_thread / MPI_Finalize) and MpiCommunicator (host memory; CPU backends).
//
// Needs <mpi.h>: link the ddpm::mpi CMake target (find_package(MPI), MPI::MPI_CXX), e.g. Debian's
// libopenmpi-dev. Without <mpi.h> on the include path this header declares nothing but
// DDPM_HAVE_MPI = 0, so that it still compiles alone (the header self-containment check).
//
// Failures. Open MPI's default: when a rank dies (signal, or exit without MPI_Finalize), mpirun
// kills every other rank and reports which one died ("mpirun noticed that process rank 1 ...
// exited on signal 9"), so no rank waits forever in a collective; under Slurm, srun does the same
// with --kill-on-bad-exit=1. MpiCommunicator sets MPI_ERRORS_RETURN on its communicator, so that
// an MPI error which is reported (instead of killing the job) becomes a DistributedError naming
// the call. For a rank that hangs instead of dying, MpiOptions::collective_timeout_s starts a
// watchdog thread: a blocking collective that waits longer ends this process with a message
// (exit code 75), and mpirun then stops the job.
#pragma once

#if __has_include(<mpi.h>)
#include <mpi.h>
#define DDPM_HAVE_MPI 1
#else
#define DDPM_HAVE_MPI 0
#endif

#if DDPM_HAVE_MPI

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "ddpm/core/assert.hpp"
#include "ddpm/train/communicator.hpp"

namespace ddpm::dist {

/// True when this process was started by an MPI launcher (mpirun/mpiexec of Open MPI or MPICH,
/// srun with PMI/PMIx): then MPI_Init joins the job; otherwise a program can skip MPI and train
/// alone (LocalCommunicator).
[[nodiscard]] inline bool launched_by_mpi() noexcept {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

/// MPI_Init_thread(MPI_THREAD_FUNNELED) unless MPI is initialised already; MPI_Finalize when it
/// goes out of scope (MPI_Abort instead while an exception propagates, because MPI_Finalize
/// would wait for ranks that are still training). Only the thread that created it calls MPI.
class MpiSession {
 public:
  MpiSession(int& argc, char**& argv) {
    int init = 0;
    MPI_Initialized(&init);
    if (!init) {
      int provided = 0;
      if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        throw DistributedError("ddpm: MPI_Init_thread failed");
      owner_ = true;
    }
  }
  MpiSession() {
    int init = 0;
    MPI_Initialized(&init);
    if (!init) {
      int provided = 0;
      if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        throw DistributedError("ddpm: MPI_Init_thread failed");
      owner_ = true;
    }
  }
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  ~MpiSession() {
    if (!owner_) return;
    int fin = 0;
    MPI_Finalized(&fin);
    if (fin) return;
    if (std::uncaught_exceptions() > 0) {
      int rank = 0;
      MPI_Comm_rank(MPI_COMM_WORLD, &rank);
      std::fprintf(stderr, "ddpm: rank %d: an exception leaves the MPI session; MPI_Abort, so that no "
                           "other rank waits for this one (catch it before the session ends to see it)\n", rank);
      std::fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Finalize();
  }

 private:
  bool owner_ = false;
};

struct MpiOptions {
  /// Seconds a blocking collective may wait before this rank gives up (0: wait forever). Set it
  /// above the longest time one rank can spend alone between two steps (rank 0 writing
  /// checkpoints and sample grids).
  double collective_timeout_s = 0;
};

/// Communicator over an MPI communicator (a duplicate of `base`, MPI_COMM_WORLD by default), on
/// host memory. Non-blocking all-reduces are MPI_Iallreduce; test() calls MPI_Test, which is
/// what makes Open MPI progress them while the backward pass runs.
class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm base = MPI_COMM_WORLD, MpiOptions opts = {}) : opts_(opts) {
    check(MPI_Comm_dup(base, &comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    if (opts_.collective_timeout_s > 0) watchdog_ = std::thread([this] { watch(); });
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;
  ~MpiCommunicator() override {
    if (watchdog_.joinable()) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
      }
      cv_.notify_all();
      watchdog_.join();
    }
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }

  [[nodiscard]] int rank() const noexcept override { return rank_; }
  [[nodiscard]] int size() const noexcept override { return size_; }
  [[nodiscard]] std::string_view name() const noexcept override { return "mpi"; }
  [[nodiscard]] bool device_buffers() const noexcept override { return false; }
  [[nodiscard]] MPI_Comm handle() const noexcept { return comm_; }

  void allreduce_sum(void* data, std::size_t count, DType type) override {
    Busy b(*this, "MPI_Allreduce (gradients)");
    auto* p = static_cast<char*>(data);
    for (std::size_t done = 0; done < count;) {
      const int n = chunk(count - done);
      check(MPI_Allreduce(MPI_IN_PLACE, p + done * dtype_size(type), n, mpi_type(type), MPI_SUM, comm_),
            "MPI_Allreduce");
      done += std::size_t(n);
    }
  }
  void broadcast(void* data, std::size_t count, DType type, int root) override {
    Busy b(*this, "MPI_Bcast (weights)");
    auto* p = static_cast<char*>(data);
    for (std::size_t done = 0; done < count;) {
      const int n = chunk(count - done);
      check(MPI_Bcast(p + done * dtype_size(type), n, mpi_type(type), root, comm_), "MPI_Bcast");
      done += std::size_t(n);
    }
  }
  std::size_t start_allreduce_sum(void* data, std::size_t count, DType type) override {
    ddpm::detail::require(count <= std::size_t(INT_MAX), "MpiCommunicator::start_allreduce_sum",
                          "a bucket of ", count, " elements is more than MPI's int count allows");
    MPI_Request r = MPI_REQUEST_NULL;
    check(MPI_Iallreduce(MPI_IN_PLACE, data, int(count), mpi_type(type), MPI_SUM, comm_, &r),
          "MPI_Iallreduce");
    requests_.push_back(r);
    return requests_.size() - 1;
  }
  bool test(std::size_t handle) override {
    if (handle >= requests_.size()) return true;
    int flag = 0;
    check(MPI_Test(&requests_[handle], &flag, MPI_STATUS_IGNORE), "MPI_Test");
    return flag != 0;
  }
  void wait_all() override {
    if (requests_.empty()) return;
    Busy b(*this, "MPI_Waitall (gradient buckets)");
    check(MPI_Waitall(int(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
    requests_.clear();
  }

  void allreduce_host(double* v, std::size_t n, ReduceOp op) override {
    Busy b(*this, "MPI_Allreduce (host values)");
    check(MPI_Allreduce(MPI_IN_PLACE, v, int(n), MPI_DOUBLE, mpi_op(op), comm_), "MPI_Allreduce");
  }
  void allreduce_host(std::uint64_t* v, std::size_t n, ReduceOp op) override {
    Busy b(*this, "MPI_Allreduce (host values)");
    check(MPI_Allreduce(MPI_IN_PLACE, v, int(n), MPI_UINT64_T, mpi_op(op), comm_), "MPI_Allreduce");
  }
  void broadcast_host(void* bytes, std::size_t n, int root) override {
    Busy b(*this, "MPI_Bcast (host values)");
    check(MPI_Bcast(bytes, int(n), MPI_BYTE, root, comm_), "MPI_Bcast");
  }
  void barrier() override {
    Busy b(*this, "MPI_Barrier");
    check(MPI_Barrier(comm_), "MPI_Barrier");
  }
  [[noreturn]] void abort(int code, std::string_view message) override {
    std::fprintf(stderr, "%.*s\n", int(message.size()), message.data());
    std::fflush(stderr);
    MPI_Abort(comm_ == MPI_COMM_NULL ? MPI_COMM_WORLD : comm_, code);
    std::_Exit(code);  // MPI_Abort does not return; in case an implementation does
  }

 private:
  /// Marks a blocking call for the watchdog.
  class Busy {
   public:
    Busy(MpiCommunicator& c, const char* what) : c_(c) {
      if (!c_.watchdog_.joinable()) return;
      c_.what_.store(what);
      c_.since_ns_.store(now_ns());
    }
    ~Busy() {
      if (c_.watchdog_.joinable()) c_.since_ns_.store(0);
    }
    Busy(const Busy&) = delete;
    Busy& operator=(const Busy&) = delete;

   private:
    MpiCommunicator& c_;
  };

  static std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  void watch() {
    std::unique_lock<std::mutex> lock(mutex_);
    const auto period = std::chrono::milliseconds(
        std::max<long long>(50, std::min<long long>(1000, (long long)(opts_.collective_timeout_s * 250))));
    while (!cv_.wait_for(lock, period, [this] { return stop_; })) {
      const std::int64_t since = since_ns_.load();
      if (since == 0) continue;
      const double waited = double(now_ns() - since) * 1e-9;
      if (waited > opts_.collective_timeout_s) {
        std::fprintf(stderr,
                     "ddpm: rank %d of %d: %s has waited %.1f s, longer than the collective timeout "
                     "(%.1f s): another rank is dead, stuck or far behind. Exiting (code 75) so that "
                     "the launcher stops the job.\n",
                     rank_, size_, what_.load(), waited, opts_.collective_timeout_s);
        std::fflush(stderr);
        std::_Exit(75);
      }
    }
  }

  static int chunk(std::size_t n) { return int(std::min<std::size_t>(n, std::size_t(1) << 30)); }

  static MPI_Datatype mpi_type(DType t) {
    switch (t) {
      case DType::f32: return MPI_FLOAT;
      case DType::f64: return MPI_DOUBLE;
      case DType::u64: return MPI_UINT64_T;
    }
    return MPI_BYTE;
  }
  static MPI_Op mpi_op(ReduceOp op) {
    switch (op) {
      case ReduceOp::sum: return MPI_SUM;
      case ReduceOp::min: return MPI_MIN;
      case ReduceOp::max: return MPI_MAX;
      case ReduceOp::bit_or: return MPI_BOR;
    }
    return MPI_SUM;
  }

  void check(int rc, const char* call) const {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING] = {};
    int len = 0;
    MPI_Error_string(rc, text, &len);
    throw DistributedError(ddpm::detail::cat("ddpm: rank ", rank_, " of ", size_, ": ", call,
                                             " failed: ", std::string(text, std::size_t(len)),
                                             " (another rank may have died)"));
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  MpiOptions opts_;
  std::vector<MPI_Request> requests_;
  // watchdog
  std::thread watchdog_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::atomic<std::int64_t> since_ns_{0};
  std::atomic<const char*> what_{""};
};

}  // namespace ddpm::dist

#endif  // DDPM_HAVE_MPI
