// SPDX-License-Identifier: MIT
// ddpm/train/nccl.hpp — the NCCL transport of data-parallel training on GPUs
// (ddpm/train/distributed.hpp): NcclCommunicator, one rank per GPU, gradients reduced in device
// memory. A host Communicator (MpiCommunicator under mpirun/srun, LocalCommunicator alone)
// carries the bootstrap (rank 0's ncclUniqueId) and the host collectives (losses, flags,
// checksums).
//
// Needs <nccl.h> and <cuda_runtime.h> (NCCL ships with the CUDA toolkit here: link the
// ddpm::nccl CMake target) and a program that instantiates the CUDA backend (a .cu with
// DDPM_CUDA_INSTANTIATE()). Without those headers this file declares nothing but
// DDPM_HAVE_NCCL = 0, so that it still compiles alone in the header self-containment check.
//
// Streams. NCCL runs on a stream of its own. The backend's stream is opaque to host code, so
// before an all-reduce reads a bucket the communicator waits on the host for the backend's queued
// work (backend::Cuda::synchronize), and after wait_all() the comm stream is finished before the
// backend copies the results back. The all-reduce of a bucket then runs on the GPU while the
// backward kernels queued after it run on the backend's stream (overlap), at the price of one
// host synchronisation per bucket.
//
// Status: compiled by the CUDA build (tests/mpi/nccl.cmake); run only with one rank on the GPU
// machine (ctest -L gpu). Several ranks need one GPU each (NCCL refuses two ranks on one device).
#pragma once

#if __has_include(<nccl.h>) && __has_include(<cuda_runtime.h>)
#include <cuda_runtime.h>
#include <nccl.h>
#define DDPM_HAVE_NCCL 1
#else
#define DDPM_HAVE_NCCL 0
#endif

#if DDPM_HAVE_NCCL

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "ddpm/backend/cuda/tag.hpp"
#include "ddpm/core/assert.hpp"
#include "ddpm/train/communicator.hpp"

namespace ddpm::dist {

/// Communicator over NCCL on the backend's GPU: data collectives on device buffers, host
/// collectives through `host`, which must outlive it and have the same ranks. Every call runs on
/// the tag's device and leaves the calling thread's current device as it was.
class NcclCommunicator final : public Communicator {
  /// The communicator's device made current for the lifetime of the object, the previous one
  /// restored after it.
  class OnDevice {
   public:
    explicit OnDevice(const NcclCommunicator& c) {
      c.check_cuda(cudaGetDevice(&previous_), "cudaGetDevice");
      if (previous_ != c.be_.device()) c.check_cuda(cudaSetDevice(c.be_.device()), "cudaSetDevice");
      else previous_ = -1;
    }
    OnDevice(const OnDevice&) = delete;
    OnDevice& operator=(const OnDevice&) = delete;
    ~OnDevice() {
      if (previous_ >= 0) (void)cudaSetDevice(previous_);
    }

   private:
    int previous_ = -1;
  };

 public:
  NcclCommunicator(Communicator& host, backend::Cuda be) : host_(host), be_(std::move(be)) {
    const OnDevice on(*this);  // the stream, events and communicator belong to the tag's device
    ncclUniqueId id{};
    if (host_.rank() == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    host_.broadcast_host(&id, sizeof(id), 0);
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    check(ncclCommInitRank(&comm_, host_.size(), id, host_.rank()), "ncclCommInitRank");
  }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;
  ~NcclCommunicator() override {
    int previous = -1;
    if (cudaGetDevice(&previous) == cudaSuccess && previous != be_.device()) (void)cudaSetDevice(be_.device());
    else previous = -1;
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
    if (comm_) ncclCommDestroy(comm_);
    if (stream_) cudaStreamDestroy(stream_);
    if (previous >= 0) (void)cudaSetDevice(previous);
  }

  [[nodiscard]] int rank() const noexcept override { return host_.rank(); }
  [[nodiscard]] int size() const noexcept override { return host_.size(); }
  [[nodiscard]] std::string_view name() const noexcept override { return "nccl"; }
  [[nodiscard]] bool device_buffers() const noexcept override { return true; }

  void allreduce_sum(void* data, std::size_t count, DType type) override {
    const OnDevice on(*this);
    be_.synchronize();  // the buffer's producers on the backend stream
    check(ncclAllReduce(data, data, count, nccl_type(type), ncclSum, comm_, stream_), "ncclAllReduce");
    check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (NCCL stream)");
  }
  void broadcast(void* data, std::size_t count, DType type, int root) override {
    const OnDevice on(*this);
    be_.synchronize();
    check(ncclBroadcast(data, data, count, nccl_type(type), root, comm_, stream_), "ncclBroadcast");
    check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (NCCL stream)");
  }
  std::size_t start_allreduce_sum(void* data, std::size_t count, DType type) override {
    const OnDevice on(*this);
    be_.synchronize();
    check(ncclAllReduce(data, data, count, nccl_type(type), ncclSum, comm_, stream_), "ncclAllReduce");
    if (started_ == events_.size()) {
      cudaEvent_t e = nullptr;
      check_cuda(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
      events_.push_back(e);
    }
    check_cuda(cudaEventRecord(events_[started_], stream_), "cudaEventRecord");
    return started_++;
  }
  bool test(std::size_t handle) override {
    if (handle >= started_) return true;
    const OnDevice on(*this);
    const cudaError_t e = cudaEventQuery(events_[handle]);
    if (e == cudaErrorNotReady) return false;
    check_cuda(e, "cudaEventQuery");
    return true;
  }
  void wait_all() override {
    const OnDevice on(*this);
    check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (NCCL stream)");
    ncclResult_t async = ncclSuccess;
    check(ncclCommGetAsyncError(comm_, &async), "ncclCommGetAsyncError");
    check(async, "NCCL (asynchronous error)");
    started_ = 0;
  }

  void allreduce_host(double* v, std::size_t n, ReduceOp op) override { host_.allreduce_host(v, n, op); }
  void allreduce_host(std::uint64_t* v, std::size_t n, ReduceOp op) override { host_.allreduce_host(v, n, op); }
  void broadcast_host(void* bytes, std::size_t n, int root) override { host_.broadcast_host(bytes, n, root); }
  void barrier() override { host_.barrier(); }
  [[noreturn]] void abort(int code, std::string_view message) override {
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
    host_.abort(code, message);
    std::_Exit(code);  // not reached: host_.abort does not return (g++ cannot see it through the virtual call)
  }

 private:
  static ncclDataType_t nccl_type(DType t) {
    switch (t) {
      case DType::f32: return ncclFloat32;
      case DType::f64: return ncclFloat64;
      case DType::u64: return ncclUint64;
    }
    return ncclFloat32;
  }
  void check(ncclResult_t r, const char* call) const {
    if (r == ncclSuccess) return;
    throw DistributedError(ddpm::detail::cat("ddpm: rank ", host_.rank(), " of ", host_.size(), ": ",
                                             call, " failed: ", ncclGetErrorString(r)));
  }
  void check_cuda(cudaError_t e, const char* call) const {
    if (e == cudaSuccess) return;
    throw DistributedError(ddpm::detail::cat("ddpm: rank ", host_.rank(), " of ", host_.size(), ": ",
                                             call, " failed: ", cudaGetErrorString(e)));
  }

  Communicator& host_;
  backend::Cuda be_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  std::vector<cudaEvent_t> events_;
  std::size_t started_ = 0;
};

}  // namespace ddpm::dist

#endif  // DDPM_HAVE_NCCL
