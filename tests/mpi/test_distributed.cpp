// SPDX-License-Identifier: MIT
// Data-parallel training over MPI (ddpm/train/distributed.hpp, ddpm/train/mpi.hpp), run under
// `mpiexec -n 2` (any rank count that divides 8 works). Every rank runs every test case.
//
// Tolerance. N ranks compute the one-process step up to the order of floating-point sums (each
// rank's loss is the mean over its shard, the shards' gradients are summed and scaled by 1/N;
// GEMMs sum over a smaller batch). After 6 Adam steps (lr 1e-3) on the tiny U-Net the largest
// weight difference to one process measured 2.4e-7 (Adam moments 1.5e-8); the tests allow 1e-5 for weights and
// EMA and 1e-5 for Adam moments. With one rank the result is bit-identical.
#include <doctest/doctest.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/backend/reference.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/train/distributed.hpp"
#include "ddpm/train/mpi.hpp"
#include "support.hpp"

using namespace ddpm;
using namespace ddpm::test;
namespace fs = std::filesystem;
using Ref = backend::Reference;
using ModelR = Diffusion<schedule::Cosine, target::Epsilon, loss::Huber, Ref>;
using ModelC = Diffusion<schedule::Cosine, target::Epsilon, loss::Huber, backend::Cpu>;

namespace {

constexpr double weight_tol = 1e-5;  // see the file comment
constexpr std::size_t global_batch = 8;

struct Run {
  Snapshot snap;
  std::vector<double> losses;
};

/// A folder every rank sees (rank 0 names and creates it, then broadcasts the name).
fs::path shared_dir(dist::Communicator& c, const std::string& name) {
  std::array<char, 1024> buf{};
  if (c.rank() == 0) {
    const fs::path p = fs::temp_directory_path() / ("ddpm_mpi_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(p);
    fs::create_directories(p);
    std::strncpy(buf.data(), p.c_str(), buf.size() - 1);
  }
  c.broadcast_host(buf.data(), buf.size(), 0);
  return fs::path(buf.data());
}

void remove_shared(dist::Communicator& c, const fs::path& p) {
  c.barrier();
  if (c.rank() == 0) fs::remove_all(p);
}

/// One process: plain Trainer.
Run train_single(TrainConfig cfg, const nn::UNetConfig& net, const io::ImageDataset& data,
                 const fs::path& resume_from = {}) {
  ModelR m(schedule::Cosine{.steps = 100}, net, 42);
  Run r;
  cfg.on_step = [&](std::uint64_t, double loss) { r.losses.push_back(loss); };
  Trainer<float, Ref> t(m, cfg);
  if (!resume_from.empty()) t.resume(resume_from);
  t.fit(data);
  r.snap = snapshot(m, t);
  return r;
}

/// Every rank: DistributedTrainer. `perturb`: this rank's initial weights are changed first.
Run train_dist(dist::Communicator& comm, TrainConfig cfg, const nn::UNetConfig& net,
               const io::ImageDataset& data, dist::DataParallelOptions opts = {},
               const fs::path& resume_from = {}, bool perturb = false) {
  ModelR m(schedule::Cosine{.steps = 100}, net, 42);
  if (perturb)
    m.net().visit_parameters([&](std::string_view, auto& p) {
      auto v = p.value.to_vector();
      for (float& x : v) x = x * 0.5f + 0.01f;
      p.value.copy_from(v);
    });
  Run r;
  cfg.on_step = [&](std::uint64_t, double loss) { r.losses.push_back(loss); };
  opts.abort_on_error = false;
  dist::DistributedTrainer<float, Ref> t(comm, m, cfg, opts);
  if (!resume_from.empty()) t.resume(resume_from);
  t.fit(data);
  r.snap = snapshot(m, t.trainer());
  return r;
}

/// Largest loss difference over the steps both runs made (a resumed run has the last ones).
double max_loss_diff(const Run& a, const Run& b) {
  const std::size_t n = std::min(a.losses.size(), b.losses.size());
  if (n == 0) return INFINITY;
  double m = 0;
  for (std::size_t i = 1; i <= n; ++i)
    m = std::max(m, std::abs(a.losses[a.losses.size() - i] - b.losses[b.losses.size() - i]));
  return m;
}

void check_close(const Run& dist_run, const Run& single, int world, const char* what) {
  const Difference d = compare(dist_run.snap, single.snap);
  INFO(what, ": ", world, " ranks vs one process: ", d.str(), " losses ", max_loss_diff(dist_run, single));
  REQUIRE(d.same_layout);
  CHECK(dist_run.snap.step == single.snap.step);
  CHECK(dist_run.snap.adam_steps == single.snap.adam_steps);
  if (world == 1) {
    CHECK(d.worst() == 0.0);  // one rank: bit-identical
    CHECK(max_loss_diff(dist_run, single) == 0.0);
  } else {
    CHECK(d.max_abs.at("weights") <= weight_tol);
    CHECK(d.max_abs.at("ema") <= weight_tol);
    CHECK(d.max_abs.at("adam_m") <= 1e-5);
    CHECK(d.max_abs.at("adam_v") <= 1e-5);
    CHECK(max_loss_diff(dist_run, single) <= 1e-5);
  }
}

}  // namespace

TEST_CASE("data-parallel training equals one process with the same global batch") {
  dist::MpiCommunicator comm;
  const int W = comm.size();
  REQUIRE(global_batch % std::size_t(W) == 0);
  const auto data = synthetic_data(40, 8);
  TrainConfig cfg = quiet_config(global_batch, 6);
  const Run single = train_single(cfg, tiny_unet(), data);
  dist::DataParallelOptions o;
  o.bucket_bytes = 4096;  // several buckets on the tiny U-Net
  const Run overlapped = train_dist(comm, cfg, tiny_unet(), data, o);
  check_close(overlapped, single, W, "overlapped buckets");
  MESSAGE("rank ", comm.rank(), ": ", W, " ranks vs one process after 6 steps: ",
          compare(overlapped.snap, single.snap).str());

  SUBCASE("the bucket size and the overlap do not change the result") {
    o.overlap = dist::Overlap::none;
    o.bucket_bytes = SIZE_MAX;  // one blocking all-reduce after backward
    const Run blocking = train_dist(comm, cfg, tiny_unet(), data, o);
    CHECK(compare(blocking.snap, overlapped.snap).worst() == 0.0);
    CHECK(max_loss_diff(blocking, overlapped) == 0.0);
  }
  SUBCASE("gradient accumulation: ranks x 2 micro-batches") {
    TrainConfig c2 = cfg;
    c2.micro_batches = 2;
    const Run micro = train_dist(comm, c2, tiny_unet(), data, o);
    check_close(micro, single, 2 * W, "micro-batches");  // never bitwise: at least 2 shards
  }
}

TEST_CASE("rank 0's initial weights are broadcast") {
  dist::MpiCommunicator comm;
  const auto data = synthetic_data(16, 8);
  // Every rank but 0 starts from other weights: after the broadcast they train as rank 0's.
  const Run r = train_dist(comm, quiet_config(global_batch, 2), tiny_unet(), data, {}, {},
                           /*perturb=*/comm.rank() != 0);
  const Run single = train_single(quiet_config(global_batch, 2), tiny_unet(), data);
  check_close(r, single, comm.size(), "broadcast");
}

TEST_CASE("every rank keeps identical weights, Adam state and EMA with dropout and flips") {
  dist::MpiCommunicator comm;
  const auto data = synthetic_data(40, 8);
  TrainConfig cfg = quiet_config(global_batch, 5);
  cfg.hflip = true;
  ModelR m(schedule::Cosine{.steps = 100}, tiny_unet(0.1), 7);
  dist::DataParallelOptions o;
  o.abort_on_error = false;
  dist::DistributedTrainer<float, Ref> t(comm, m, cfg, o);
  t.fit(data);  // verifies at the end (verify_at_end)
  const auto c = t.checksums().array();
  for (const std::uint64_t v : c) {
    std::array<std::uint64_t, 2> mm{v, v};
    comm.allreduce_host(&mm[0], 1, dist::ReduceOp::min);
    comm.allreduce_host(&mm[1], 1, dist::ReduceOp::max);
    CHECK(mm[0] == mm[1]);
  }
  CHECK_NOTHROW(t.verify("the test"));
}

TEST_CASE("resume with the same and with another rank count continues the same training") {
  dist::MpiCommunicator comm;
  const int W = comm.size();
  const auto data = synthetic_data(40, 8);
  const fs::path dir = shared_dir(comm, "resume");
  const Run reference = train_single(quiet_config(global_batch, 8), tiny_unet(), data);

  // W ranks train 4 steps; rank 0 writes the checkpoint.
  TrainConfig first = quiet_config(global_batch, 4);
  first.out_dir = dir / "dist";
  (void)train_dist(comm, first, tiny_unet(), data);
  comm.barrier();
  const fs::path ck = dir / "dist" / "checkpoint.safetensors";
  REQUIRE(fs::exists(ck));
  // Only rank 0 wrote outputs.
  CHECK(fs::exists(dir / "dist" / "loss.csv"));

  SUBCASE("W ranks to W ranks") {
    TrainConfig second = quiet_config(global_batch, 8);
    second.out_dir = dir / "dist";
    const Run r = train_dist(comm, second, tiny_unet(), data, {}, ck);
    check_close(r, reference, W == 1 ? 1 : 2, "W -> W");
  }
  SUBCASE("W ranks to one process") {
    // Every rank resumes alone (in its own folder), as one process after the W-rank run would.
    const fs::path own = dir / ("single_" + std::to_string(comm.rank()));
    fs::create_directories(own);
    fs::copy_file(ck, own / "checkpoint.safetensors");
    TrainConfig second = quiet_config(global_batch, 8);
    second.out_dir = own;
    const Run r = train_single(second, tiny_unet(), data, own / "checkpoint.safetensors");
    check_close(r, reference, W == 1 ? 1 : 2, "W -> 1");
    CHECK(r.snap.step == 8);
  }
  SUBCASE("one process to W ranks") {
    const fs::path one = dir / "one";
    if (comm.rank() == 0) {
      TrainConfig c = quiet_config(global_batch, 4);
      c.out_dir = one;
      (void)train_single(c, tiny_unet(), data);
    }
    comm.barrier();
    TrainConfig second = quiet_config(global_batch, 8);
    second.out_dir = one;
    const Run r = train_dist(comm, second, tiny_unet(), data, {}, one / "checkpoint.safetensors");
    check_close(r, reference, W, "1 -> W");
  }
  remove_shared(comm, dir);
}

TEST_CASE("a rank whose state differs after a resume stops every rank with a message") {
  dist::MpiCommunicator comm;
  const int W = comm.size();
  const auto data = synthetic_data(16, 8);
  const fs::path dir = shared_dir(comm, "mismatch");
  TrainConfig cfg = quiet_config(global_batch, 2);
  cfg.out_dir = dir;
  (void)train_dist(comm, cfg, tiny_unet(), data);
  comm.barrier();
  const fs::path ck = dir / "checkpoint.safetensors";

  SUBCASE("different weights on the last rank") {
    ModelR m(schedule::Cosine{.steps = 100}, tiny_unet(), 42);
    dist::DataParallelOptions o;
    o.abort_on_error = false;
    dist::DistributedTrainer<float, Ref> t(comm, m, quiet_config(global_batch, 4), o);
    t.trainer().resume(ck);  // every rank loads it: same state
    CHECK_NOTHROW(t.verify("the resume"));
    if (comm.rank() == W - 1) {
      // As if this rank had read another file: one weight differs.
      m.net().visit_parameters([&](std::string_view name, auto& p) {
        if (name == "conv_in.bias") {
          auto v = p.value.to_vector();
          v[0] += 1e-3f;
          p.value.copy_from(v);
        }
      });
    }
    if (W > 1) {
      CHECK_THROWS_WITH_AS(t.verify("the resume"),
                           doctest::Contains(("the weights of 1 of " + std::to_string(W) + " ranks differ").c_str()),
                           dist::DistributedError);
    }
  }
  SUBCASE("a rank that cannot read the checkpoint: every rank throws") {
    ModelR m(schedule::Cosine{.steps = 100}, tiny_unet(), 42);
    dist::DataParallelOptions o;
    o.abort_on_error = false;
    dist::DistributedTrainer<float, Ref> t(comm, m, quiet_config(global_batch, 4), o);
    const fs::path mine = comm.rank() == W - 1 ? dir / "missing.safetensors" : ck;
    if (W > 1) {
      if (comm.rank() == W - 1)
        CHECK_THROWS_AS(t.resume(mine), IoError);
      else
        CHECK_THROWS_WITH_AS(t.resume(mine), doctest::Contains("failed on 1 other rank"),
                             dist::DistributedError);
    }
  }
  remove_shared(comm, dir);
}

TEST_CASE("data-parallel training on the Cpu backend with one thread per rank") {
  dist::MpiCommunicator comm;
  const auto data = synthetic_data(40, 8);
  TrainConfig cfg = quiet_config(global_batch, 4);
  ModelC a(schedule::Cosine{.steps = 100}, tiny_unet(), 42, {}, backend::Cpu(1));
  Trainer<float, backend::Cpu> ta(a, cfg);
  ta.fit(data);
  ModelC b(schedule::Cosine{.steps = 100}, tiny_unet(), 42, {}, backend::Cpu(1));
  dist::DataParallelOptions o;
  o.abort_on_error = false;
  o.bucket_bytes = 8192;
  dist::DistributedTrainer<float, backend::Cpu> tb(comm, b, cfg, o);
  tb.fit(data);
  const Difference d = compare(snapshot(b, tb.trainer()), snapshot(a, ta));
  INFO(d.str());
  CHECK(d.max_abs.at("weights") <= weight_tol);
  CHECK(d.max_abs.at("ema") <= weight_tol);
  CHECK(tb.sync().stats().steps == (comm.size() > 1 ? 4u : 0u));
}

TEST_CASE("ranks with another seed or another data set are refused before training") {
  dist::MpiCommunicator comm;
  const int W = comm.size();
  if (W == 1) return;
  dist::DataParallelOptions o;
  o.abort_on_error = false;
  {
    ModelR m(schedule::Cosine{.steps = 100}, tiny_unet(), comm.rank() == W - 1 ? 43 : 42);
    using DT = dist::DistributedTrainer<float, Ref>;
    auto make = [&] { DT t(comm, m, quiet_config(global_batch, 2), o); };
    CHECK_THROWS_WITH_AS(make(), doctest::Contains("model configuration, seed or TrainConfig of 1 of"),
                         dist::DistributedError);
  }
  ModelR m(schedule::Cosine{.steps = 100}, tiny_unet(), 42);
  dist::DistributedTrainer<float, Ref> t(comm, m, quiet_config(global_batch, 2), o);
  const auto data = synthetic_data(comm.rank() == W - 1 ? 17 : 16, 8);
  CHECK_THROWS_WITH_AS(t.fit(data), doctest::Contains("data set of 1 of"), dist::DistributedError);
}
