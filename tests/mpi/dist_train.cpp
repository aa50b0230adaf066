// SPDX-License-Identifier: MIT
// dist_train — data-parallel training driver for the launch tests (ctest label mpi) and the
// scaling benchmark. Started by mpiexec it trains on every rank with MpiCommunicator; started
// alone it is one process (LocalCommunicator, bit-identical to Trainer).
//
//   mpiexec -n 2 dist_train --steps 8 --out DIR            train (tiny U-Net, reference backend)
//   dist_train --steps 16 --out DIR --resume               continue alone from DIR's checkpoint
//   dist_train compare A.safetensors B.safetensors --tol 1e-5
//   mpiexec -n 2 dist_train --config mnist --threads 1 --bench --steps 12 --warmup 2
//                                                          img/s and communication time as JSON
//   --kill-rank R --kill-step S / --stall-rank R --stall-step S --timeout T   failure tests
#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/backend/reference.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/train/distributed.hpp"
#include "ddpm/train/mpi.hpp"
#include "support.hpp"

using namespace ddpm;
namespace fs = std::filesystem;

namespace {

struct Options {
  std::string config = "tiny", backend;
  int threads = 1;
  std::size_t batch = 8, micro = 1, images = 256;
  std::uint64_t steps = 8, warmup = 2, checkpoint_every = 0;
  std::string out;
  bool resume = false, bench = false;
  std::string overlap = "backward";
  double bucket_kb = 1024;
  double dropout = -1;
  int kill_rank = -1, stall_rank = -1;
  std::uint64_t kill_step = 0, stall_step = 0;
  double timeout = 0;
  std::uint64_t seed = 42;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr, "dist_train: %s\n(see the comment at the top of tests/mpi/dist_train.cpp)\n", why);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value after " + a).c_str());
      return argv[++i];
    };
    if (a == "--config") o.config = next();
    else if (a == "--backend") o.backend = next();
    else if (a == "--threads") o.threads = std::stoi(next());
    else if (a == "--batch") o.batch = std::stoul(next());
    else if (a == "--micro") o.micro = std::stoul(next());
    else if (a == "--images") o.images = std::stoul(next());
    else if (a == "--steps") o.steps = std::stoull(next());
    else if (a == "--warmup") o.warmup = std::stoull(next());
    else if (a == "--checkpoint-every") o.checkpoint_every = std::stoull(next());
    else if (a == "--out") o.out = next();
    else if (a == "--resume") o.resume = true;
    else if (a == "--bench") o.bench = true;
    else if (a == "--overlap") o.overlap = next();
    else if (a == "--bucket-kb") o.bucket_kb = std::stod(next());
    else if (a == "--dropout") o.dropout = std::stod(next());
    else if (a == "--kill-rank") o.kill_rank = std::stoi(next());
    else if (a == "--kill-step") o.kill_step = std::stoull(next());
    else if (a == "--stall-rank") o.stall_rank = std::stoi(next());
    else if (a == "--stall-step") o.stall_step = std::stoull(next());
    else if (a == "--timeout") o.timeout = std::stod(next());
    else if (a == "--seed") o.seed = std::stoull(next());
    else usage(("unknown option " + a).c_str());
  }
  if (o.backend.empty()) o.backend = o.config == "tiny" ? "reference" : "cpu";
  if (o.overlap != "backward" && o.overlap != "none") usage("--overlap is backward or none");
  return o;
}

int compare_main(int argc, char** argv) {
  if (argc < 4) usage("compare A B [--tol X]");
  double tol = 1e-5;
  for (int i = 4; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--tol") tol = std::stod(argv[i + 1]);
  const auto d = test::compare(test::snapshot(argv[2]), test::snapshot(argv[3]));
  std::printf("max |difference| per group: %s(tolerance %g)\n", d.str().c_str(), tol);
  const bool ok = d.worst() <= tol;
  std::printf("%s\n", ok ? "checkpoints agree" : "checkpoints DIFFER");
  return ok ? 0 : 1;
}

/// CPU seconds of this process (all threads, user + system).
double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

/// Seconds per blocking all-reduce of `count` floats (the gradient size), no compute: what the
/// reduction costs when nothing overlaps it.
double allreduce_seconds(dist::Communicator& comm, std::size_t count, int reps) {
  if (comm.size() == 1) return 0;
  std::vector<float> buf(count, 1.0f);
  comm.barrier();
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    comm.allreduce_sum(buf.data(), buf.size(), dist::DType::f32);
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::array<double, 1> m{median(t)};
  comm.allreduce_host(m.data(), 1, dist::ReduceOp::max);
  return m[0];
}

template <class B>
int run(dist::Communicator& comm, const Options& o, B backend) {
  using M = Diffusion<schedule::Cosine, target::Epsilon, loss::Huber, B>;
  nn::UNetConfig net = o.config == "mnist" ? test::mnist_unet() : test::tiny_unet();
  if (o.dropout >= 0) net.dropout = o.dropout;
  const io::ImageDataset data = test::synthetic_data(o.images, net.image_size, net.num_classes);
  M model(schedule::Cosine{.steps = 1000}, net, o.seed, {}, backend);

  TrainConfig cfg = test::quiet_config(o.batch, o.steps);
  cfg.micro_batches = o.micro;
  cfg.checkpoint_every = o.checkpoint_every;
  if (!o.out.empty()) cfg.out_dir = o.out;
  cfg.handle_sigint = true;
  const int rank = comm.rank();
  std::vector<double> step_end;
  double cpu_at_warmup = 0, cpu_last = 0;
  std::function<void()> reset;
  cfg.on_step = [&](std::uint64_t step, double) {
    step_end.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count());
    if (o.bench) cpu_last = cpu_seconds();
    if (o.bench && step + 1 == o.warmup && reset) {
      reset();
      cpu_at_warmup = cpu_seconds();
    }
    if (rank == o.kill_rank && step + 1 == o.kill_step) {
      std::fprintf(stderr, "dist_train: rank %d kills itself (SIGKILL) after step %llu\n", rank,
                   (unsigned long long)step);
      std::fflush(stderr);
      std::raise(SIGKILL);
    }
    if (rank == o.stall_rank && step + 1 == o.stall_step) {
      std::fprintf(stderr, "dist_train: rank %d stalls after step %llu\n", rank, (unsigned long long)step);
      std::fflush(stderr);
      for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  };
  dist::DataParallelOptions dp;
  dp.overlap = o.overlap == "none" ? dist::Overlap::none : dist::Overlap::backward;
  dp.bucket_bytes = o.bucket_kb <= 0 ? SIZE_MAX : std::size_t(o.bucket_kb * 1024);
  dist::DistributedTrainer<float, B> trainer(comm, model, cfg, dp);
  reset = [&] { trainer.sync().reset_stats(); };
  if (o.resume) {
    const fs::path ck = fs::path(o.out) / "checkpoint.safetensors";
    const auto loaded = trainer.resume(ck);
    if (rank == 0)
      std::fprintf(stderr, "dist_train: %d rank(s) resumed from %s at step %llu\n", comm.size(),
                   ck.string().c_str(), (unsigned long long)loaded.counters.step);
  }
  const auto summary = trainer.fit(data);
  const double cpu_measured = cpu_last - cpu_at_warmup;
  if (rank == 0)
    std::fprintf(stderr, "dist_train: %d rank(s), steps %llu..%llu, loss %.6f%s\n", comm.size(),
                 (unsigned long long)summary.first_step, (unsigned long long)summary.last_step,
                 summary.final_loss, summary.interrupted ? " (interrupted)" : "");
  if (!o.bench) return 0;

  // Steps after the warm-up: their wall times, and the reduction's share.
  std::vector<double> times;
  for (std::size_t i = std::max<std::size_t>(o.warmup, 1); i < step_end.size(); ++i)
    times.push_back(step_end[i] - step_end[i - 1]);
  const auto& st = trainer.sync().stats();
  const double per = st.steps ? 1.0 / double(st.steps) : 0.0;
  std::size_t nparams = model.net().num_parameters();
  // CPU seconds per step: with a core per rank (and MPI's busy-polling waits) a step would take
  // about this long, whatever else runs on the machine.
  const double cpu_step = times.empty() ? 0.0 : cpu_measured / double(times.size());
  std::array<double, 4> v{median(times), st.in_backward_s * per, st.after_backward_s * per, cpu_step};
  comm.allreduce_host(v.data(), v.size(), dist::ReduceOp::max);  // the slowest rank sets the pace
  const double ar = allreduce_seconds(comm, nparams, 10);
  if (rank == 0) {
    std::printf(
        "{\"ranks\": %d, \"threads_per_rank\": %d, \"config\": \"%s\", \"backend\": \"%s\", "
        "\"global_batch\": %zu, \"micro_batches\": %zu, \"overlap\": \"%s\", \"buckets\": %zu, "
        "\"parameters\": %zu, \"measured_steps\": %zu, \"step_s_median\": %.5f, \"images_per_s\": %.2f, "
        "\"comm_in_backward_s\": %.5f, \"comm_after_backward_s\": %.5f, \"comm_exposed_s\": %.5f, "
        "\"compute_s\": %.5f, \"allreduce_alone_s\": %.5f, \"cpu_s_per_step\": %.5f}\n",
        comm.size(), o.threads, o.config.c_str(), o.backend.c_str(), o.batch, o.micro,
        o.overlap.c_str(), st.buckets, nparams, times.size(), v[0],
        v[0] > 0 ? double(o.batch) / v[0] : 0.0, v[1], v[2], v[1] + v[2], v[0] - v[1] - v[2], ar, v[3]);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "compare") return compare_main(argc, argv);
  const Options o = parse(argc, argv);
  std::optional<dist::MpiSession> session;
  std::unique_ptr<dist::Communicator> comm;
  if (dist::launched_by_mpi()) {
    session.emplace(argc, argv);
    comm = std::make_unique<dist::MpiCommunicator>(MPI_COMM_WORLD, dist::MpiOptions{.collective_timeout_s = o.timeout});
  } else {
    comm = std::make_unique<dist::LocalCommunicator>();
  }
  try {
    if (o.backend == "reference") return run(*comm, o, backend::Reference{});
    if (o.backend == "cpu") return run(*comm, o, backend::Cpu(o.threads));
    usage("--backend is reference or cpu");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dist_train: rank %d: %s\n", comm->rank(), e.what());
    if (comm->size() > 1) comm->abort(1, "dist_train: stopping every rank");
    return 1;
  }
}
