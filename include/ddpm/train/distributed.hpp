// SPDX-License-Identifier: MIT
// ddpm/train/distributed.hpp — data-parallel training: N processes (ranks) train one model with
// the semantics of one process with the same global batch.
//
//   - rank 0 broadcasts the initial weights;
//   - every rank draws its own shard of every global batch, from the global step and its rank
//     (Trainer's data order and the Philox streams of Model::forward_backward are keyed by the
//     global index of a sample, so the ranks draw together what one process would draw);
//   - gradients are summed over the ranks in buckets (of TrainConfig-independent size), while
//     the last backward pass of a step still runs (UNet::set_grad_ready_hook) or after it, and
//     averaged before clipping and Adam; so every rank keeps identical weights, Adam state and EMA;
//   - gradient accumulation: TrainConfig::micro_batches passes per rank and step;
//   - checkpoints: rank 0 writes them (atomically, as Trainer does); every rank resumes from the
//     same file and a checksum all-reduce proves the ranks agree;
//   - errors: an exception on one rank during fit() stops every rank with MPI_Abort and a message
//     (no rank is left waiting in a collective).
//
// The transport is a Communicator (ddpm/train/communicator.hpp, which only moves bytes and
// includes nothing of the model): LocalCommunicator (one process), MpiCommunicator in
// ddpm/train/mpi.hpp (Open MPI, host memory) and NcclCommunicator in ddpm/train/nccl.hpp (NCCL,
// CUDA device memory). This header needs neither MPI nor NCCL. See docs/distributed.md.
//
// Dropout: the U-Net's dropout masks are keyed by the element index within the local batch, so
// with dropout > 0 the masks of N ranks differ from those of one process (the same distribution,
// other draws). Everything else is the one-process computation up to floating-point summation order.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <concepts>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddpm/backend/ops.hpp"
#include "ddpm/backend/tags.hpp"
#include "ddpm/core/assert.hpp"
#include "ddpm/diffusion/diffusion.hpp"
#include "ddpm/optim/param_list.hpp"
#include "ddpm/tensor/tensor.hpp"
#include "ddpm/train/checkpoint.hpp"
#include "ddpm/train/communicator.hpp"
#include "ddpm/train/trainer.hpp"

namespace ddpm::dist {

/// How gradients are reduced.
enum class Overlap : std::uint8_t {
  /// After the last backward pass: one blocking all-reduce per bucket.
  none,
  /// During the last backward pass: a non-blocking all-reduce per bucket as soon as the U-Net
  /// reports its gradients final (UNet::set_grad_ready_hook); the trainer waits for the rest
  /// after backward.
  backward,
};

struct DataParallelOptions {
  /// Gradient bytes per all-reduce (the last parameters first). SIZE_MAX: one bucket.
  std::size_t bucket_bytes = std::size_t{1} << 20;
  Overlap overlap = Overlap::backward;
  /// Checksum all-reduce of the training state at the end of fit() (cheap: one pass over it).
  bool verify_at_end = true;
  /// An exception on one rank inside fit() or save() calls Communicator::abort (MPI_Abort) with
  /// its message, so that no rank waits forever; false: rethrown (tests of errors that every
  /// rank sees alike).
  bool abort_on_error = true;
};

/// Where the time of the gradient reduction went (seconds, summed over steps).
struct CommStats {
  std::uint64_t steps = 0;          ///< steps reduced
  std::uint64_t bytes = 0;          ///< gradient bytes all-reduced (per rank)
  std::size_t buckets = 0;          ///< buckets per step
  double in_backward_s = 0;         ///< inside the grad-ready hook: packing, starting, progressing
  double after_backward_s = 0;      ///< reduce(): waiting, blocking all-reduces, unpacking, the loss
  [[nodiscard]] double total_s() const noexcept { return in_backward_s + after_backward_s; }
};

namespace detail {

/// 64-bit hash of bytes (FNV-1a over 8-byte words, then the tail): for state checksums.
class StateHash {
 public:
  void bytes(const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      std::uint64_t w;
      std::memcpy(&w, b + i, 8);
      mix(w);
    }
    std::uint64_t tail = n;
    for (; i < n; ++i) tail = (tail << 8) | b[i];
    mix(tail);
  }
  void number(std::uint64_t v) { mix(v); }
  [[nodiscard]] std::uint64_t value() const noexcept { return h_; }

 private:
  void mix(std::uint64_t w) {
    h_ ^= w;
    h_ *= 0x100000001b3ull;
    h_ ^= h_ >> 29;
  }
  std::uint64_t h_ = 0xcbf29ce484222325ull;
};

template <class T, class B>
void hash_tensor(StateHash& h, const Tensor<T, B>& t) {
  const std::vector<T> v = t.to_vector();  // device tensors: a copy to the host
  h.number(v.size());
  h.bytes(v.data(), v.size() * sizeof(T));
}

}  // namespace detail

/// Checksums of the parts of a training state, to compare ranks.
struct StateChecksums {
  std::uint64_t weights = 0, adam = 0, ema = 0, counters = 0;
  static constexpr std::array<const char*, 4> names{"weights", "Adam state", "EMA weights",
                                                    "step counters"};
  [[nodiscard]] std::array<std::uint64_t, 4> array() const { return {weights, adam, ema, counters}; }
};

/// The ParallelSync of Trainer over a Communicator: shards, bucketed gradient all-reduce
/// (overlapped with backward or not), stop agreement. The model must outlive it; it installs
/// the U-Net's grad-ready hook and removes it when destroyed.
template <std::floating_point T, class B>
class DataParallel final : public ParallelSync {
 public:
  DataParallel(Communicator& comm, Model<T, B>& model, DataParallelOptions opts = {})
      : comm_(comm), model_(model), opts_(opts),
        params_(optim::collect_parameters<T, B>(model.net())) {
    constexpr bool device = std::is_same_v<typename B::memory_space, backend::device_memory>;
    ddpm::detail::require(comm.size() == 1 || comm.device_buffers() == device, "DataParallel",
                          "the communicator '", comm.name(), "' takes ",
                          comm.device_buffers() ? "device" : "host",
                          " memory, but the backend's tensors are in ",
                          device ? "device" : "host", " memory");
    ddpm::detail::require(opts.bucket_bytes >= sizeof(T), "DataParallelOptions::bucket_bytes",
                          "must be at least one element");
    build_buckets();
    if (comm_.size() > 1 && opts_.overlap == Overlap::backward)
      model_.net().set_grad_ready_hook([this](std::size_t k) { grads_ready(k); });
  }
  ~DataParallel() override {
    if (comm_.size() > 1 && opts_.overlap == Overlap::backward) model_.net().set_grad_ready_hook({});
  }
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  [[nodiscard]] std::size_t rank() const override { return std::size_t(comm_.rank()); }
  [[nodiscard]] std::size_t world() const override { return std::size_t(comm_.size()); }
  [[nodiscard]] Communicator& communicator() const noexcept { return comm_; }
  [[nodiscard]] const DataParallelOptions& options() const noexcept { return opts_; }
  [[nodiscard]] const CommStats& stats() const noexcept { return stats_; }
  void reset_stats() noexcept { stats_ = CommStats{.buckets = buckets_.size()}; }
  /// Parameter index ranges [first, last) of the buckets, in reduction order.
  [[nodiscard]] std::vector<std::pair<std::size_t, std::size_t>> buckets() const {
    std::vector<std::pair<std::size_t, std::size_t>> out;
    for (const auto& b : buckets_) out.emplace_back(b.lo, b.hi);
    return out;
  }

  void begin_micro_batch(std::size_t m, std::size_t count) override {
    armed_ = comm_.size() > 1 && opts_.overlap == Overlap::backward && m + 1 == count;
    next_ = 0;
  }

  double reduce(double loss) override {
    if (comm_.size() == 1) return loss;
    const auto t0 = clock::now();
    if (armed_) {
      while (next_ < buckets_.size()) start(next_++);  // normally all started during backward
      comm_.wait_all();
      for (auto& b : buckets_) unpack(b);
    } else {
      for (auto& b : buckets_) {
        pack(b);
        comm_.allreduce_sum(b.flat.data(), b.flat.size(), dtype_of<T>);
        unpack(b);
      }
    }
    armed_ = false;
    next_ = 0;
    comm_.allreduce_host(&loss, 1, ReduceOp::sum);
    stats_.after_backward_s += seconds_since(t0);
    ++stats_.steps;
    stats_.bytes += total_ * sizeof(T);
    return loss;
  }

  unsigned agree(unsigned flags) override {
    if (comm_.size() == 1) return flags;
    std::uint64_t v = flags;
    comm_.allreduce_host(&v, 1, ReduceOp::bit_or);
    return unsigned(v);
  }

  /// Every parameter value = rank 0's.
  void broadcast_weights() {
    if (comm_.size() == 1) return;
    for (const auto& p : params_) comm_.broadcast(p.value->data(), p.value->size(), dtype_of<T>, 0);
  }

 private:
  using clock = std::chrono::steady_clock;
  static double seconds_since(clock::time_point t) {
    return std::chrono::duration<double>(clock::now() - t).count();
  }

  struct Bucket {
    std::size_t lo = 0, hi = 0;  // parameter indices [lo, hi) of visit_parameters' order
    Tensor<T, B> flat;
    std::size_t handle = 0;
  };

  /// Buckets from the last parameter backwards (the order backward() finishes them), each up to
  /// bucket_bytes (a bigger tensor gets a bucket of its own). Their memory only for several ranks.
  void build_buckets() {
    const std::size_t cap = std::max<std::size_t>(1, opts_.bucket_bytes / sizeof(T));
    std::size_t hi = params_.size();
    total_ = 0;
    while (hi > 0) {
      std::size_t lo = hi, n = 0;
      while (lo > 0 && (n == 0 || n + params_[lo - 1].grad->size() <= cap)) {
        n += params_[lo - 1].grad->size();
        --lo;
      }
      Bucket b;
      b.lo = lo;
      b.hi = hi;
      if (comm_.size() > 1) b.flat.resize(Shape{n});
      buckets_.push_back(std::move(b));
      total_ += n;
      hi = lo;
    }
    stats_.buckets = buckets_.size();
  }

  void pack(Bucket& b) {
    const auto& be = model_.backend();
    std::size_t off = 0;
    for (std::size_t i = b.lo; i < b.hi; ++i) {
      const std::size_t n = params_[i].grad->size();
      Ops<B>::copy(be, params_[i].grad->cview().reshape(Shape{n}),
                   View<T>(b.flat.data() + off, Shape{n}));
      off += n;
    }
  }
  void unpack(Bucket& b) {
    const auto& be = model_.backend();
    std::size_t off = 0;
    for (std::size_t i = b.lo; i < b.hi; ++i) {
      const std::size_t n = params_[i].grad->size();
      Ops<B>::copy(be, ConstView<T>(b.flat.data() + off, Shape{n}),
                   params_[i].grad->view().reshape(Shape{n}));
      off += n;
    }
  }
  void start(std::size_t i) {
    Bucket& b = buckets_[i];
    pack(b);
    b.handle = comm_.start_allreduce_sum(b.flat.data(), b.flat.size(), dtype_of<T>);
  }

  /// UNet hook: the last k parameters have final gradients.
  void grads_ready(std::size_t k) {
    if (!armed_) return;
    const auto t0 = clock::now();
    const std::size_t n = params_.size();
    while (next_ < buckets_.size() && n - buckets_[next_].lo <= k) start(next_++);
    for (std::size_t i = 0; i < next_; ++i) comm_.test(buckets_[i].handle);  // progress
    stats_.in_backward_s += seconds_since(t0);
  }

  Communicator& comm_;
  Model<T, B>& model_;
  DataParallelOptions opts_;
  std::vector<optim::ParamRef<T, B>> params_;
  std::vector<Bucket> buckets_;
  std::size_t total_ = 0;  // gradient elements
  std::size_t next_ = 0;   // buckets started this step
  bool armed_ = false;
  CommStats stats_;
};

/// Trainer for N ranks: rank 0 broadcasts the initial weights, every rank trains its shard of
/// every global batch (TrainConfig::batch_size, divisible by ranks x micro_batches), gradients
/// are averaged over the ranks, rank 0 alone writes outputs and checkpoints. With a communicator
/// of one rank it is Trainer, bit for bit.
///
///     ddpm::dist::MpiSession mpi(argc, argv);            // ddpm/train/mpi.hpp
///     ddpm::dist::MpiCommunicator comm;
///     Model model(...);                                   // the same configuration on every rank
///     ddpm::dist::DistributedTrainer<float, Cpu> trainer(comm, model, cfg);
///     if (resume) trainer.resume(cfg.out_dir / "checkpoint.safetensors");
///     trainer.fit(data);                                  // the same data set on every rank
template <std::floating_point T, class B>
class DistributedTrainer {
 public:
  DistributedTrainer(Communicator& comm, Model<T, B>& model, TrainConfig cfg,
                     DataParallelOptions opts = {})
      : comm_(comm),
        model_(model),
        sync_(std::make_shared<DataParallel<T, B>>(comm, model, opts)),
        trainer_(model, prepare(comm, model, *sync_, std::move(cfg), sync_)) {}

  [[nodiscard]] Trainer<T, B>& trainer() noexcept { return trainer_; }
  [[nodiscard]] DataParallel<T, B>& sync() noexcept { return *sync_; }
  [[nodiscard]] Communicator& communicator() noexcept { return comm_; }
  [[nodiscard]] bool is_root() const noexcept { return comm_.rank() == 0; }

  /// Every rank loads the checkpoint (the same file: a shared file system or copies), then the
  /// ranks compare checksums of their state; the rank count may differ from the run that wrote
  /// it (the data cursor is the global step). @throws what Trainer::resume throws (on every
  /// rank when one fails), DistributedError when the ranks' states differ afterwards.
  LoadedCheckpoint resume(const std::filesystem::path& path) {
    LoadedCheckpoint ck;
    collective("resume from '" + path.string() + "'", [&] { ck = trainer_.resume(path); });
    verify("resume from '" + path.string() + "'");
    return ck;
  }
  /// resume() through Trainer::resume_latest (falls back to <path>.prev when <path> is damaged;
  /// the checksum comparison catches ranks that fell back differently).
  LoadedCheckpoint resume_latest(const std::filesystem::path& path) {
    LoadedCheckpoint ck;
    collective("resume from '" + path.string() + "'", [&] { ck = trainer_.resume_latest(path); });
    verify("resume from '" + path.string() + "'");
    return ck;
  }

  /// Rank 0 writes a checkpoint (atomic); collective: every rank returns when it is written, or
  /// throws when rank 0 failed.
  void save(const std::filesystem::path& path) {
    collective("save to '" + path.string() + "'", [&] {
      if (is_root()) trainer_.save(path);
    });
  }

  /// Trainer::fit on every rank. On rank 0 the summary is the trainer's (images per second
  /// count the global batch). An exception on any rank stops the job (see abort_on_error).
  /// SIGUSR1 (which mpirun forwards to every rank) stops training like Ctrl-C does in one process:
  /// a checkpoint, then return with summary.interrupted. @throws DistributedError on every rank
  /// when the ranks' data sets differ (a checksum), before training.
  TrainSummary fit(const io::ImageDataset& data) {
    if (comm_.size() > 1) {
      dist::detail::StateHash h;
      for (const std::size_t d : {data.n, data.c, data.h, data.w}) h.number(d);
      h.bytes(data.pixels.data(), data.pixels.size());
      h.bytes(data.labels.data(), data.labels.size() * sizeof(std::int32_t));
      require_same(comm_, h.value(), "data set",
                   "every rank must load the same data set (shards are drawn from it by index)");
    }
    struct sigaction old_usr1 {};
    const bool sig = trainer_.config().handle_sigint;
    if (sig) {
      struct sigaction sa {};
      sa.sa_handler = ddpm::detail::ddpm_sigint_handler;
      sigemptyset(&sa.sa_mask);
      sigaction(SIGUSR1, &sa, &old_usr1);
    }
    TrainSummary s;
    try {
      s = trainer_.fit(data);
      if (sync_->options().verify_at_end) verify("training");
    } catch (const std::exception& e) {
      if (sig) sigaction(SIGUSR1, &old_usr1, nullptr);
      if (!sync_->options().abort_on_error || comm_.size() == 1) throw;
      comm_.abort(1, ddpm::detail::cat("ddpm: rank ", comm_.rank(), " of ", comm_.size(),
                                       ": training failed: ", e.what(),
                                       "\nddpm: stopping every rank (MPI_Abort)"));
    }
    if (sig) sigaction(SIGUSR1, &old_usr1, nullptr);
    return s;
  }

  /// Checksums of this rank's weights, Adam state, EMA and counters.
  [[nodiscard]] StateChecksums checksums() {
    StateChecksums c;
    {
      dist::detail::StateHash h;
      model_.net().visit_parameters(
          [&](std::string_view, const auto& p) { ddpm::dist::detail::hash_tensor(h, p.value); });
      c.weights = h.value();
    }
    {
      dist::detail::StateHash h;
      trainer_.adam().visit_state([&](const std::string&, auto& t) { ddpm::dist::detail::hash_tensor(h, t); });
      h.number(trainer_.adam().steps());
      c.adam = h.value();
    }
    {
      dist::detail::StateHash h;
      if (auto* e = trainer_.ema()) {
        e->visit_state([&](const std::string&, auto& t) { ddpm::dist::detail::hash_tensor(h, t); });
        h.number(e->updates());
      }
      c.ema = h.value();
    }
    {
      dist::detail::StateHash h;
      h.number(trainer_.counters().step);
      h.number(trainer_.counters().samples_seen);
      c.counters = h.value();
    }
    return c;
  }

  /// Collective: compares every rank's checksums with rank 0's. @throws DistributedError on
  /// every rank, naming the parts that differ and how many ranks; each differing rank also
  /// prints its own line on stderr.
  void verify(const std::string& when) {
    if (comm_.size() == 1) return;
    const auto mine = checksums().array();
    auto root = mine;
    comm_.broadcast_host(root.data(), sizeof(root), 0);
    std::uint64_t parts = 0;
    for (std::size_t i = 0; i < mine.size(); ++i)
      if (mine[i] != root[i]) parts |= std::uint64_t{1} << i;
    if (parts)
      std::fprintf(stderr, "ddpm: rank %d: after %s its state differs from rank 0's\n",
                   comm_.rank(), when.c_str());
    std::uint64_t bad_parts = parts, bad_ranks = parts ? 1 : 0;
    comm_.allreduce_host(&bad_parts, 1, ReduceOp::bit_or);
    comm_.allreduce_host(&bad_ranks, 1, ReduceOp::sum);
    if (!bad_parts) return;
    std::string what;
    for (std::size_t i = 0; i < mine.size(); ++i)
      if (bad_parts >> i & 1) what += (what.empty() ? "" : ", ") + std::string(StateChecksums::names[i]);
    throw DistributedError(ddpm::detail::cat(
        "ddpm: after ", when, " the ", what, " of ", bad_ranks, " of ", comm_.size(),
        " ranks differ from rank 0's (checksum all-reduce). Every rank must load the same "
        "checkpoint file and build the same model; training stopped"));
  }

 private:
  static TrainConfig prepare(Communicator& comm, Model<T, B>& model, DataParallel<T, B>& sync,
                             TrainConfig cfg, std::shared_ptr<DataParallel<T, B>> shared) {
    // The seed keys the data order and every random draw of training: ranks with other seeds
    // would train on overlapping shards. The configuration must agree too.
    if (comm.size() > 1) check_configuration(comm, model, cfg);
    sync.broadcast_weights();  // before Trainer copies them into the EMA
    cfg.parallel = std::move(shared);
    if (comm.rank() != 0) {  // outputs and progress: rank 0 only
      cfg.out_dir.clear();
      cfg.progress = false;
    }
    return cfg;
  }

  static void check_configuration(Communicator& comm, Model<T, B>& model, const TrainConfig& cfg) {
    dist::detail::StateHash h;
    auto text = [&](const std::string& t) { h.bytes(t.data(), t.size()); };
    h.number(model.seed());
    for (const auto& [k, v] : model.signature()) {
      text(k);
      text(v);
    }
    h.number(cfg.batch_size);
    h.number(cfg.micro_batches);
    text(ddpm::detail::cat(cfg.p_uncond, ' ', cfg.hflip, ' ', cfg.grad_clip, ' ', cfg.adam.lr, ' ',
                           cfg.adam.beta1, ' ', cfg.adam.beta2, ' ', cfg.adam.eps, ' ',
                           cfg.adam.weight_decay, ' ', cfg.lr_warmup, ' ', cfg.use_ema, ' ',
                           cfg.ema.decay, ' ', cfg.max_steps, ' ', cfg.epochs));
    require_same(comm, h.value(), "model configuration, seed or TrainConfig",
                 "start every rank with the same model, seed and training settings");
  }

  /// Collective: throws DistributedError on every rank when `value` differs from rank 0's on
  /// any rank (each such rank prints a line too).
  static void require_same(Communicator& comm, std::uint64_t value, const std::string& what,
                           const std::string& hint) {
    if (comm.size() == 1) return;
    std::uint64_t root = value;
    comm.broadcast_host(&root, sizeof(root), 0);
    std::uint64_t bad = root != value ? 1 : 0;
    if (bad) std::fprintf(stderr, "ddpm: rank %d: its %s differs from rank 0's\n", comm.rank(), what.c_str());
    comm.allreduce_host(&bad, 1, ReduceOp::sum);
    if (bad)
      throw DistributedError(ddpm::detail::cat("ddpm: the ", what, " of ", bad, " of ", comm.size(),
                                               " ranks differ from rank 0's: ", hint));
  }

  /// Runs f on every rank; when it throws on any rank, every rank throws (the failing ones their
  /// own exception), so that no rank goes on into a collective alone.
  template <class F>
  void collective(const std::string& what, F&& f) {
    std::exception_ptr err;
    try {
      f();
    } catch (...) {
      err = std::current_exception();
    }
    if (comm_.size() == 1) {
      if (err) std::rethrow_exception(err);
      return;
    }
    std::uint64_t failed = err ? 1 : 0;
    comm_.allreduce_host(&failed, 1, ReduceOp::sum);
    if (err) std::rethrow_exception(err);
    if (failed)
      throw DistributedError(ddpm::detail::cat("ddpm: rank ", comm_.rank(), ": ", what, " failed on ",
                                               failed, " other rank(s); see their messages"));
  }

  Communicator& comm_;
  Model<T, B>& model_;
  std::shared_ptr<DataParallel<T, B>> sync_;
  Trainer<T, B> trainer_;
};

}  // namespace ddpm::dist
