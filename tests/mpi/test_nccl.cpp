// SPDX-License-Identifier: MIT
// NcclCommunicator with one rank on one GPU (ddpm/train/nccl.hpp): the collectives on device
// buffers, ordered with the backend's copies, and DistributedTrainer over NCCL, which with one
// rank must train exactly as Trainer on the same device.
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "ddpm/backend/cuda.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/train/distributed.hpp"
#include "ddpm/train/nccl.hpp"
#include "support.hpp"

using namespace ddpm;
using Cuda = backend::Cuda;

TEST_CASE("NCCL with one rank: all-reduce, broadcast and non-blocking all-reduce on device buffers") {
  dist::LocalCommunicator host;
  Cuda be;
  dist::NcclCommunicator comm(host, be);
  CHECK(comm.size() == 1);
  CHECK(comm.device_buffers());
  std::vector<float> v(1000);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = float(i) * 0.5f - 3.0f;
  Tensor<float, Cuda> t(Shape{v.size()}, v);
  comm.allreduce_sum(t.data(), t.size(), dist::DType::f32);
  CHECK(t.to_vector() == v);
  comm.broadcast(t.data(), t.size(), dist::DType::f32, 0);
  CHECK(t.to_vector() == v);
  // A copy queued on the backend's stream before the start must be what the all-reduce reads.
  Tensor<float, Cuda> src(Shape{v.size()}, std::vector<float>(v.size(), 2.0f));
  Ops<Cuda>::copy(be, src.cview(), t.view());
  const std::size_t h = comm.start_allreduce_sum(t.data(), t.size(), dist::DType::f32);
  comm.wait_all();
  CHECK(comm.test(h));
  CHECK(t.to_vector() == std::vector<float>(v.size(), 2.0f));
  std::uint64_t x = 5;
  comm.allreduce_host(&x, 1, dist::ReduceOp::sum);
  CHECK(x == 5);
}

TEST_CASE("DistributedTrainer over NCCL with one rank trains as Trainer on the GPU") {
  using M = Diffusion<schedule::Cosine, target::Epsilon, loss::Huber, Cuda>;
  const auto data = test::synthetic_data(24, 8);
  TrainConfig cfg = test::quiet_config(8, 4);
  Cuda be;
  M a(schedule::Cosine{.steps = 100}, test::tiny_unet(), 42, {}, be);
  Trainer<float, Cuda> ta(a, cfg);
  ta.fit(data);
  dist::LocalCommunicator host;
  dist::NcclCommunicator comm(host, be);
  M b(schedule::Cosine{.steps = 100}, test::tiny_unet(), 42, {}, be);
  dist::DistributedTrainer<float, Cuda> tb(comm, b, cfg);
  tb.fit(data);
  const auto d = test::compare(test::snapshot(b, tb.trainer()), test::snapshot(a, ta));
  INFO(d.str());
  CHECK(d.worst() == 0.0);
}
