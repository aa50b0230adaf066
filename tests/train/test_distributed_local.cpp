// SPDX-License-Identifier: MIT
// The parts of data-parallel training that need no MPI (ddpm/train/distributed.hpp): the U-Net's
// gradient-ready hook, gradient accumulation over micro-batches, the gradient buckets, and
// DistributedTrainer over one rank (LocalCommunicator), which must be Trainer bit for bit.
// The multi-rank tests are in tests/mpi (ctest label mpi).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

#include "ddpm/backend/reference.hpp"
#include "helpers/tiny_unet.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/optim/param_list.hpp"
#include "ddpm/train/distributed.hpp"
#include "ddpm/train/trainer.hpp"

using namespace ddpm;
using Ref = backend::Reference;
namespace fs = std::filesystem;

namespace {

nn::UNetConfig small_unet(double dropout) {
  return test::tiny_unet(dropout, 3);
}

io::ImageDataset small_data(std::size_t n) {
  return test::tiny_lines(n, [](std::size_t, std::size_t p) { return 7 * p % 50; });
}

using M = Diffusion<schedule::Cosine, target::Epsilon, loss::Huber, Ref>;

TrainConfig config(std::size_t batch, std::uint64_t steps) {
  TrainConfig c;
  c.batch_size = batch;
  c.adam.lr = 1e-3;
  c.lr_warmup = 2;
  c.max_steps = steps;
  c.progress = false;
  c.handle_sigint = false;
  c.ema = {.decay = 0.99};
  return c;
}

std::vector<float> flat_weights(M& m) {
  std::vector<float> w;
  m.net().visit_parameters([&](std::string_view, auto& p) {
    const auto v = p.value.to_vector();
    w.insert(w.end(), v.begin(), v.end());
  });
  return w;
}

std::vector<float> flat_state(Trainer<float, Ref>& t) {
  std::vector<float> s;
  auto add = [&](const std::string&, auto& x) {
    const auto v = x.to_vector();
    s.insert(s.end(), v.begin(), v.end());
  };
  t.adam().visit_state(add);
  t.ema()->visit_state(add);
  return s;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = a.size() == b.size() ? 0.0 : INFINITY;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, double(std::abs(a[i] - b[i])));
  return m;
}

}  // namespace

TEST_CASE("UNet grad-ready hook: every reported parameter already has its final gradient") {
  M m(schedule::Cosine{.steps = 100}, small_unet(0.1), 3);
  auto params = optim::collect_parameters<float, Ref>(m.net());
  const std::size_t n = params.size();
  std::vector<std::size_t> calls;
  std::vector<std::vector<std::vector<float>>> at_call;  // gradients of the ready ones, per call
  m.net().set_grad_ready_hook([&](std::size_t k) {
    calls.push_back(k);
    std::vector<std::vector<float>> g;
    for (std::size_t i = n - k; i < n; ++i) g.push_back(params[i].grad->to_vector());
    at_call.push_back(std::move(g));
  });
  const auto data = small_data(4);
  std::vector<float> x(4 * 64);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = float(data.pixels[i]) / 127.5f - 1.0f;
  Tensor<float, Ref> x0(Shape{4, 1, 8, 8}, x);
  optim::zero_grads(params, Ref{});
  (void)m.forward_backward(x0.cview(), data.labels, 0, TrainStepOptions{});
  REQUIRE(!calls.empty());
  CHECK(calls.back() == n);
  CHECK(std::is_sorted(calls.begin(), calls.end()));
  CHECK(calls.size() >= 8);  // one call per top-level block
  for (std::size_t c = 0; c < calls.size(); ++c)
    for (std::size_t j = 0; j < at_call[c].size(); ++j) {
      const std::size_t i = n - calls[c] + j;
      INFO("call ", c, " parameter ", params[i].name);
      CHECK(same_bits(at_call[c][j], params[i].grad->to_vector()));
    }
  // Removing the hook stops the calls.
  m.net().set_grad_ready_hook({});
  calls.clear();
  optim::zero_grads(params, Ref{});
  (void)m.forward_backward(x0.cview(), data.labels, 1, TrainStepOptions{});
  CHECK(calls.empty());
}

TEST_CASE("gradient accumulation: 2 micro-batches of 4 train like one batch of 8") {
  const auto data = small_data(24);
  M a(schedule::Cosine{.steps = 100}, small_unet(0.0), 5);
  Trainer<float, Ref> ta(a, config(8, 5));
  ta.fit(data);
  M b(schedule::Cosine{.steps = 100}, small_unet(0.0), 5);
  TrainConfig cb = config(8, 5);
  cb.micro_batches = 2;
  Trainer<float, Ref> tb(b, cb);
  tb.fit(data);
  // The same samples, timesteps and noise; only the order of the sums differs.
  const double d = max_abs_diff(flat_weights(a), flat_weights(b));
  MESSAGE("2 x 4 vs 8: max weight difference after 5 steps ", d);
  CHECK(d <= 1e-5);
  CHECK(max_abs_diff(flat_state(ta), flat_state(tb)) <= 1e-5);
  CHECK(tb.counters().samples_seen == 40);
}

TEST_CASE("micro_batches must divide the batch") {
  M m(schedule::Cosine{.steps = 100}, small_unet(0.0), 5);
  TrainConfig c = config(6, 1);
  c.micro_batches = 4;
  using T = Trainer<float, Ref>;
  auto make = [&] { T t(m, c); };
  CHECK_THROWS_WITH_AS(make(), doctest::Contains("multiple of ranks x micro_batches"), std::invalid_argument);
  c.micro_batches = 0;
  CHECK_THROWS_AS(make(), std::invalid_argument);
}

TEST_CASE("DataParallel buckets: the parameters from last to first, within the byte budget") {
  M m(schedule::Cosine{.steps = 100}, small_unet(0.0), 5);
  dist::LocalCommunicator comm;
  const auto params = optim::collect_parameters<float, Ref>(m.net());
  dist::DataParallelOptions o;
  o.bucket_bytes = 2048;
  dist::DataParallel<float, Ref> dp(comm, m, o);
  const auto b = dp.buckets();
  REQUIRE(!b.empty());
  CHECK(b.front().second == params.size());
  CHECK(b.back().first == 0);
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (i + 1 < b.size()) CHECK(b[i + 1].second == b[i].first);
    std::size_t elems = 0;
    for (std::size_t p = b[i].first; p < b[i].second; ++p) elems += params[p].grad->size();
    CHECK((elems * sizeof(float) <= o.bucket_bytes || b[i].second - b[i].first == 1));
  }
  o.bucket_bytes = SIZE_MAX;
  dist::DataParallel<float, Ref> one(comm, m, o);
  CHECK(one.buckets().size() == 1);
}

TEST_CASE("DistributedTrainer on one rank is Trainer bit for bit, checkpoints and resume included") {
  const auto data = small_data(20);
  const fs::path dir = fs::temp_directory_path() / ("ddpm_test_dist_local_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  M a(schedule::Cosine{.steps = 100}, small_unet(0.1), 9);
  TrainConfig ca = config(4, 6);
  ca.hflip = true;
  Trainer<float, Ref> ta(a, ca);
  ta.fit(data);

  dist::LocalCommunicator comm;
  {
    M b(schedule::Cosine{.steps = 100}, small_unet(0.1), 9);
    TrainConfig cb = config(4, 3);
    cb.hflip = true;
    cb.out_dir = dir;
    dist::DistributedTrainer<float, Ref> tb(comm, b, cb);
    tb.fit(data);
    CHECK(fs::exists(dir / "checkpoint.safetensors"));
  }
  M c(schedule::Cosine{.steps = 100}, small_unet(0.1), 9);
  TrainConfig cc = config(4, 6);
  cc.hflip = true;
  cc.out_dir = dir;
  dist::DistributedTrainer<float, Ref> tc(comm, c, cc);
  CHECK(tc.resume(dir / "checkpoint.safetensors").counters.step == 3);
  tc.fit(data);
  CHECK(same_bits(flat_weights(a), flat_weights(c)));
  CHECK(same_bits(flat_state(ta), flat_state(tc.trainer())));
  CHECK(tc.sync().stats().steps == 0);  // one rank: nothing to reduce
  fs::remove_all(dir);
}
