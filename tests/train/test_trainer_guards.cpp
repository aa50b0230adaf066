// SPDX-License-Identifier: MIT
// Training guarantees on the reference and the SIMD CPU backend:
//  * a non-finite loss or gradient, from a real NaN/Inf in the input, the gradients or the
//    weights, skips the step and leaves weights, Adam state and EMA byte for byte untouched; it
//    is counted and logged; K in a row stop training with an explanation (and a checkpoint);
//  * backend::Cpu: training and sampling give the same bytes for 1, 2 and 3 threads, and a
//    resumed run is bit-identical to an uninterrupted one (weights, EMA, Adam moments, file).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/backend/reference.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/diffusion/diffusion.hpp"
#include "ddpm/train/checkpoint.hpp"
#include "ddpm/train/trainer.hpp"
#include "helpers/tiny_unet.hpp"
#include "io/io_test_util.hpp"

using namespace ddpm;
using ddpm::io::test::TempDir;
namespace fs = std::filesystem;

namespace {

nn::UNetConfig guard_config() {
  return test::tiny_unet(0.1, 3);
}

io::ImageDataset guard_data(std::size_t n = 20) {
  return test::tiny_lines(n, [](std::size_t i, std::size_t p) { return (p * 37 + i) % 97; });
}

template <class B>
B make_backend(int threads) {
  if constexpr (std::is_same_v<B, backend::Cpu>)
    return backend::Cpu(threads);
  else
    return B{};
}

template <class B>
using GuardModel = Diffusion<schedule::Cosine, target::Epsilon, loss::Huber, B>;

template <class B>
GuardModel<B> make_model(std::uint64_t seed, int threads = 2) {
  return GuardModel<B>(schedule::Cosine{.steps = 100}, guard_config(), seed, loss::Huber{},
                       make_backend<B>(threads));
}

TrainConfig guard_train_config(std::uint64_t steps, const fs::path& out = {}) {
  TrainConfig c;
  c.batch_size = 4;
  c.adam.lr = 1e-3;
  c.lr_warmup = 3;
  c.max_steps = steps;
  c.out_dir = out;
  c.progress = false;
  c.handle_sigint = false;
  c.ema = {.decay = 0.99};
  c.hflip = true;
  return c;
}

/// Every byte of the training state: weights, EMA, Adam moments.
template <class B>
std::vector<std::vector<float>> state_of(Model<float, B>& m, Trainer<float, B>& t) {
  std::vector<std::vector<float>> out;
  m.net().visit_parameters([&](std::string_view, auto& p) { out.push_back(p.value.to_vector()); });
  if (t.ema()) t.ema()->visit_state([&](const std::string&, auto& x) { out.push_back(x.to_vector()); });
  t.adam().visit_state([&](const std::string&, auto& x) { out.push_back(x.to_vector()); });
  return out;
}

bool same_bytes(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].size() != b[i].size() ||
        (!a[i].empty() && std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(float)) != 0))
      return false;
  return true;
}

bool all_finite(const std::vector<std::vector<float>>& a) {
  for (const auto& v : a)
    for (const float x : v)
      if (!std::isfinite(x)) return false;
  return true;
}

/// Redirects stderr (fd 2) into a file while it lives; text() returns what was written.
class StderrCapture {
 public:
  explicit StderrCapture(fs::path file) : file_(std::move(file)) {
    std::fflush(stderr);
    saved_ = ::dup(2);
    const int fd = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    ::dup2(fd, 2);
    ::close(fd);
  }
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;
  ~StderrCapture() { restore(); }
  std::string text() {
    restore();
    std::ifstream in(file_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    ::dup2(saved_, 2);
    ::close(saved_);
    saved_ = -1;
  }
  fs::path file_;
  int saved_ = -1;
};

/// What a wrapper injects at its bad steps.
enum class Poison { input_nan, input_inf, grad_nan, grad_inf };

/// A real model whose training step gets a NaN/Inf at chosen steps: in an input pixel (which
/// then flows through the real network, loss and backward pass) or in one gradient element
/// after the real backward pass (the loss stays finite).
template <class B>
struct PoisonedModel final : Model<float, B> {
  GuardModel<B>& inner;
  std::vector<std::uint64_t> bad_steps;
  Poison poison;
  Tensor<float, B> x_bad;
  PoisonedModel(GuardModel<B>& m, std::vector<std::uint64_t> bad, Poison p)
      : inner(m), bad_steps(std::move(bad)), poison(p) {}
  nn::UNet<float, B>& net() override { return inner.net(); }
  const nn::UNet<float, B>& net() const override { return inner.net(); }
  const B& backend() const override { return inner.backend(); }
  std::uint64_t seed() const override { return inner.seed(); }
  std::size_t steps() const override { return inner.steps(); }
  std::map<std::string, std::string> signature() const override { return inner.signature(); }
  double forward_backward(ConstView<float> x0, std::span<const std::int32_t> labels, std::uint64_t step,
                          const TrainStepOptions& o) override {
    const bool bad = std::find(bad_steps.begin(), bad_steps.end(), step) != bad_steps.end();
    if (!bad) return inner.forward_backward(x0, labels, step, o);
    constexpr float nan = std::numeric_limits<float>::quiet_NaN();
    constexpr float inf = std::numeric_limits<float>::infinity();
    if (poison == Poison::input_nan || poison == Poison::input_inf) {
      std::vector<float> host(x0.data(), x0.data() + x0.size());
      host[host.size() / 3] = poison == Poison::input_nan ? nan : inf;
      x_bad.resize(x0.shape());
      x_bad.copy_from(host);
      return inner.forward_backward(x_bad.cview(), labels, step, o);
    }
    const double loss = inner.forward_backward(x0, labels, step, o);
    bool first = true;
    inner.net().visit_parameters([&](std::string_view, auto& p) {
      if (!first) return;
      first = false;
      std::vector<float> g = p.grad.to_vector();
      g[g.size() / 2] = poison == Poison::grad_nan ? nan : inf;
      p.grad.copy_from(g);
    });
    return loss;
  }
  SampleResult<float> sample(const SamplerSpec& s, SampleOptions o) override { return inner.sample(s, o); }
};

}  // namespace

TEST_CASE_TEMPLATE("non-finite step: a NaN or Inf in the input or the gradients skips the step, leaves weights, Adam and EMA untouched, counted and logged",
                   B, backend::Reference, backend::Cpu) {
  const auto data = guard_data();
  TempDir dir;
  for (const Poison poison : {Poison::input_nan, Poison::input_inf, Poison::grad_nan, Poison::grad_inf}) {
    const bool input = poison == Poison::input_nan || poison == Poison::input_inf;
    CAPTURE(int(poison));
    auto m = make_model<B>(3);
    PoisonedModel<B> pm(m, {2}, poison);
    auto cfg = guard_train_config(4);
    cfg.progress = true;  // the skip is logged on stderr
    std::vector<std::vector<float>> before;
    std::uint64_t adam_before = 0, ema_before = 0;
    std::vector<double> losses;
    Trainer<float, B>* tp = nullptr;
    cfg.on_step = [&](std::uint64_t step, double loss) {
      Trainer<float, B>& t = *tp;
      losses.push_back(loss);
      if (step == 1) {
        before = state_of<B>(m, t);
        adam_before = t.adam().steps();
        ema_before = t.ema()->updates();
      } else if (step == 2) {  // the poisoned step: nothing changed
        CHECK(same_bytes(state_of<B>(m, t), before));
        CHECK(t.adam().steps() == adam_before);
        CHECK(t.ema()->updates() == ema_before);
        CHECK(t.counters().nonfinite_steps == 1);
      } else if (step == 3) {  // the next good step trains again, with finite values
        CHECK(t.adam().steps() == adam_before + 1);
        CHECK_FALSE(same_bytes(state_of<B>(m, t), before));
        CHECK(all_finite(state_of<B>(m, t)));
      }
    };
    Trainer<float, B> t(pm, cfg);
    tp = &t;
    std::string log;
    {
      StderrCapture cap(dir / "stderr.txt");
      const auto sum = t.fit(data);
      log = cap.text();
      CHECK(sum.nonfinite_steps == 1);
    }
    REQUIRE(losses.size() == 4);
    CHECK(std::isfinite(losses[1]));
    CHECK(std::isfinite(losses[2]) == !input);  // a poisoned input gives a non-finite loss
    CHECK(std::isfinite(losses[3]));
    INFO(log);
    CHECK(log.find(input ? "step 2: non-finite loss" : "step 2: non-finite gradient") != std::string::npos);
    CHECK(log.find("step skipped (1 in a row)") != std::string::npos);
  }
}

TEST_CASE_TEMPLATE("non-finite step: a NaN weight makes every step non-finite; K in a row stop with an explanation, Adam and EMA untouched, a checkpoint saved",
                   B, backend::Reference, backend::Cpu) {
  const auto data = guard_data();
  TempDir dir;
  auto m = make_model<B>(5);
  auto cfg = guard_train_config(50, dir.path());
  cfg.max_nonfinite_in_a_row = 3;
  Trainer<float, B> t(m, cfg);
  // A NaN in one real weight (e.g. restored from a bad file by hand), after the EMA copied the
  // weights: the forward pass of every step is poisoned.
  bool first = true;
  m.net().visit_parameters([&](std::string_view, auto& p) {
    if (!first) return;
    first = false;
    std::vector<float> w = p.value.to_vector();
    w[0] = std::numeric_limits<float>::quiet_NaN();
    p.value.copy_from(w);
  });
  const auto before = state_of<B>(m, t);
  CHECK_THROWS_WITH_AS(t.fit(data), doctest::Contains("3 steps in a row had a non-finite loss or gradient"),
                       NumericalError);
  CHECK(t.counters().step == 2);  // steps 0, 1 counted; the third bad one (step 2) throws
  CHECK(t.counters().nonfinite_steps == 3);
  CHECK(t.adam().steps() == 0);
  CHECK(t.ema()->updates() == 0);
  CHECK(same_bytes(state_of<B>(m, t), before));
  // The checkpoint written on the way out holds that state and the count.
  auto m2 = make_model<B>(5);
  Trainer<float, B> t2(m2, cfg);
  const auto ck = t2.resume(dir / "checkpoint.safetensors");
  CHECK(ck.counters.nonfinite_steps == 3);
  CHECK(same_bytes(state_of<B>(m2, t2), before));
}

TEST_CASE("forward_backward takes a NaN in a user tensor without throwing and returns a non-finite loss (garbage in, detected by the caller)") {
  auto m = make_model<backend::Reference>(1);
  Tensor<float, backend::Reference> x(Shape{2, 1, 8, 8});
  std::vector<float> host(128, 0.5f);
  host[5] = std::numeric_limits<float>::quiet_NaN();
  x.copy_from(host);
  const std::vector<std::int32_t> labels{0, 1};
  const double loss = m.forward_backward(x.cview(), labels, 0, TrainStepOptions{});
  CHECK_FALSE(std::isfinite(loss));
}

// ------------------------------------------------------------------ CPU determinism and resume

TEST_CASE("backend::Cpu: training gives the same bytes for 1, 2 and 3 threads (weights, EMA, Adam, checkpoint file)") {
  const auto data = guard_data();
  TempDir dir;
  std::vector<std::vector<std::vector<float>>> states;
  std::vector<std::vector<std::byte>> files;
  for (const int threads : {1, 2, 3}) {
    auto m = make_model<backend::Cpu>(42, threads);
    REQUIRE(m.backend().threads() == threads);
    Trainer<float, backend::Cpu> t(m, guard_train_config(5));
    t.fit(data);
    states.push_back(state_of<backend::Cpu>(m, t));
    const fs::path f = dir / ("t" + std::to_string(threads) + ".safetensors");
    t.save(f);
    files.push_back(io::read_file(f));
  }
  CHECK(all_finite(states[0]));
  CHECK(same_bytes(states[0], states[1]));
  CHECK(same_bytes(states[0], states[2]));
  CHECK(files[0] == files[1]);
  CHECK(files[0] == files[2]);
}

TEST_CASE("backend::Cpu: sampling gives the same bytes for 1 and 2 threads") {
  std::vector<std::vector<float>> images;
  for (const int threads : {1, 2}) {
    auto m = make_model<backend::Cpu>(9, threads);
    SampleOptions o;
    o.num_samples = 3;
    o.labels = {0, 1, 2};
    o.guidance = 2.0;
    o.seed = 77;
    for (const SamplerSpec s : {SamplerSpec{sampler::Ddim{.steps = 6}}, SamplerSpec{sampler::Ancestral{.steps = 10}}}) {
      const auto r = m.sample(s, o);
      images.emplace_back(r.images.begin(), r.images.end());
    }
  }
  REQUIRE(images.size() == 4);
  CHECK(same_bytes({images[0]}, {images[2]}));
  CHECK(same_bytes({images[1]}, {images[3]}));
}

TEST_CASE("backend::Cpu: resume is bit-identical, 2 threads: N+M steps equal N steps, save, load, M steps") {
  const auto data = guard_data();
  TempDir dir;
  auto a = make_model<backend::Cpu>(42, 2);
  Trainer<float, backend::Cpu> ta(a, guard_train_config(7));
  ta.fit(data);
  {
    auto b = make_model<backend::Cpu>(42, 2);
    Trainer<float, backend::Cpu> tb(b, guard_train_config(4, dir.path()));
    tb.fit(data);
  }
  auto c = make_model<backend::Cpu>(42, 2);
  Trainer<float, backend::Cpu> tc(c, guard_train_config(7, dir.path()));
  const auto ck = tc.resume_latest(dir / "checkpoint.safetensors");
  CHECK(ck.counters.step == 4);
  const auto s = tc.fit(data);
  CHECK(s.first_step == 4);
  CHECK(s.last_step == 7);
  CHECK(same_bytes(state_of<backend::Cpu>(a, ta), state_of<backend::Cpu>(c, tc)));
  CHECK(ta.adam().steps() == tc.adam().steps());
  CHECK(ta.ema()->updates() == tc.ema()->updates());
  // The final checkpoints are the same file, byte for byte.
  ta.save(dir / "a.safetensors");
  tc.save(dir / "c.safetensors");
  CHECK(io::read_file(dir / "a.safetensors") == io::read_file(dir / "c.safetensors"));
}
