// Tests for ddpm/train/{trainer,checkpoint}.hpp and ddpm/diffusion/diffusion.hpp on the reference
// backend with a tiny U-Net: bit-identical resume, checkpoint contents and mismatches, the
// non-finite step guard, outputs.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "ddpm/backend/reference.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/diffusion/diffusion.hpp"
#include "ddpm/train/checkpoint.hpp"
#include "ddpm/train/trainer.hpp"
#include "helpers/tiny_unet.hpp"

using namespace ddpm;
using Ref = backend::Reference;
namespace fs = std::filesystem;

namespace {

nn::UNetConfig tiny_config(std::size_t classes = 3) {
  return test::tiny_unet(0.1, classes);
}

io::ImageDataset tiny_data(std::size_t n = 20) {
  return test::tiny_lines(n, [](std::size_t, std::size_t) { return 0; });
}

using Model3 = Diffusion<schedule::Cosine, target::Epsilon, loss::Huber, Ref>;

fs::path temp_dir(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("ddpm_test_trainer_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

TrainConfig quiet_config(std::uint64_t steps, const fs::path& out = {}) {
  TrainConfig c;
  c.batch_size = 4;
  c.adam.lr = 1e-3;
  c.lr_warmup = 3;
  c.max_steps = steps;
  c.out_dir = out;
  c.progress = false;
  c.handle_sigint = false;
  c.ema = {.decay = 0.99};
  return c;
}

template <class M>
std::vector<std::vector<float>> all_weights(M& m) {
  std::vector<std::vector<float>> w;
  m.net().visit_parameters([&](std::string_view, auto& p) { w.push_back(p.value.to_vector()); });
  return w;
}

bool bitwise_equal(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].size() != b[i].size() || std::memcmp(a[i].data(), b[i].data(), a[i].size() * 4) != 0)
      return false;
  return true;
}

}  // namespace

TEST_CASE("resume is bit-identical: N+M steps in one run equal N steps, resume, M steps") {
  const auto data = tiny_data();
  const fs::path dir = temp_dir("resume");
  // One run of 7 steps.
  Model3 a(schedule::Cosine{.steps = 100}, tiny_config(), 42);
  Trainer<float, Ref> ta(a, quiet_config(7));
  ta.fit(data);
  // 4 steps, checkpoint, a fresh model and trainer, resume, 3 more steps.
  {
    Model3 b(schedule::Cosine{.steps = 100}, tiny_config(), 42);
    Trainer<float, Ref> tb(b, quiet_config(4, dir));
    tb.fit(data);
    CHECK(fs::exists(dir / "checkpoint.safetensors"));
  }
  Model3 c(schedule::Cosine{.steps = 100}, tiny_config(), 42);
  Trainer<float, Ref> tc(c, quiet_config(7, dir));
  const auto ck = tc.resume(dir / "checkpoint.safetensors");
  CHECK(ck.counters.step == 4);
  const auto s = tc.fit(data);
  CHECK(s.first_step == 4);
  CHECK(s.last_step == 7);
  CHECK(bitwise_equal(all_weights(a), all_weights(c)));
  // EMA and Adam state agree too.
  std::vector<std::vector<float>> ea, ec, ma, mc;
  ta.ema()->visit_state([&](const std::string&, auto& t) { ea.push_back(t.to_vector()); });
  tc.ema()->visit_state([&](const std::string&, auto& t) { ec.push_back(t.to_vector()); });
  ta.adam().visit_state([&](const std::string&, auto& t) { ma.push_back(t.to_vector()); });
  tc.adam().visit_state([&](const std::string&, auto& t) { mc.push_back(t.to_vector()); });
  CHECK(bitwise_equal(ea, ec));
  CHECK(bitwise_equal(ma, mc));
  CHECK(ta.adam().steps() == tc.adam().steps());
  // The loss CSV has one row per step 0..6, without duplicates after the resume.
  std::ifstream csv(dir / "loss.csv");
  std::string line;
  int rows = 0;
  std::getline(csv, line);
  while (std::getline(csv, line)) ++rows;
  CHECK(rows == 7);
  CHECK(fs::exists(dir / "loss.png"));
  CHECK(fs::exists(dir / "checkpoint.safetensors.prev"));
  fs::remove_all(dir);
}

TEST_CASE("a checkpoint of another configuration is refused, naming the field") {
  const fs::path dir = temp_dir("mismatch");
  const fs::path ck = dir / "ck.safetensors";
  Model3 a(schedule::Cosine{.steps = 100}, tiny_config(), 1);
  save_checkpoint(ck, a, nullptr, nullptr, TrainCounters{});
  {
    Diffusion<schedule::Cosine, target::X0, loss::Huber, Ref> b(schedule::Cosine{.steps = 100}, tiny_config(), 1);
    CHECK_THROWS_WITH_AS(load_checkpoint(ck, b), doctest::Contains("target = epsilon"),
                         CheckpointMismatch);
  }
  {
    Model3 b(schedule::Cosine{.steps = 200}, tiny_config(), 1);
    try {
      load_checkpoint(ck, b);
      FAIL("expected a mismatch");
    } catch (const CheckpointMismatch& e) {
      CHECK(e.field() == "T");
      CHECK(std::string(e.what()).find("T = 100") != std::string::npos);
    }
  }
  {
    Diffusion<schedule::Linear, target::Epsilon, loss::Huber, Ref> b(schedule::Linear{.steps = 100}, tiny_config(), 1);
    CHECK_THROWS_WITH_AS(load_checkpoint(ck, b), doctest::Contains("schedule"), CheckpointMismatch);
  }
  {
    Diffusion<schedule::Cosine, target::Epsilon, loss::L2, Ref> b(schedule::Cosine{.steps = 100}, tiny_config(), 1);
    CHECK_THROWS_WITH_AS(load_checkpoint(ck, b), doctest::Contains("loss = huber"), CheckpointMismatch);
  }
  {
    Model3 b(schedule::Cosine{.steps = 100}, tiny_config(5), 1);
    CHECK_THROWS_WITH_AS(load_checkpoint(ck, b), doctest::Contains("unet"), CheckpointMismatch);
  }
  {
    Model3 b(schedule::Cosine{.steps = 100}, tiny_config(), 1);
    const auto l = load_checkpoint(ck, b);
    CHECK(bitwise_equal(all_weights(a), all_weights(b)));
    CHECK(l.counters.step == 0);
  }
  // Not a checkpoint / missing file.
  CHECK_THROWS_AS(load_checkpoint(dir / "missing.safetensors", a), IoError);
  {
    std::ofstream(dir / "junk.safetensors") << "not a safetensors file at all";
    CHECK_THROWS_AS(load_checkpoint(dir / "junk.safetensors", a), IoError);
  }
  fs::remove_all(dir);
}

namespace {
/// A model that reports a non-finite loss at chosen steps (and poisons the gradient).
struct FlakyModel final : Model<float, Ref> {
  Model3& inner;
  std::vector<std::uint64_t> bad_steps;
  FlakyModel(Model3& m, std::vector<std::uint64_t> bad) : inner(m), bad_steps(std::move(bad)) {}
  nn::UNet<float, Ref>& net() override { return inner.net(); }
  const nn::UNet<float, Ref>& net() const override { return inner.net(); }
  const Ref& backend() const override { return inner.backend(); }
  std::uint64_t seed() const override { return inner.seed(); }
  std::size_t steps() const override { return inner.steps(); }
  std::map<std::string, std::string> signature() const override { return inner.signature(); }
  double forward_backward(ConstView<float> x0, std::span<const std::int32_t> labels, std::uint64_t step,
                          const TrainStepOptions& o) override {
    const double l = inner.forward_backward(x0, labels, step, o);
    if (std::find(bad_steps.begin(), bad_steps.end(), step) == bad_steps.end()) return l;
    inner.net().visit_parameters([](std::string_view, auto& p) {
      p.grad.view()[0] = std::numeric_limits<float>::quiet_NaN();
    });
    return std::numeric_limits<double>::quiet_NaN();
  }
  SampleResult<float> sample(const SamplerSpec& s, SampleOptions o) override { return inner.sample(s, o); }
};
}  // namespace

TEST_CASE("a non-finite loss skips the step: weights, Adam state and EMA untouched, counted") {
  const auto data = tiny_data();
  Model3 m(schedule::Cosine{.steps = 100}, tiny_config(), 3);
  FlakyModel flaky(m, {2});
  Trainer<float, Ref> t(flaky, quiet_config(2));
  t.fit(data);
  const auto w = all_weights(m);
  std::vector<std::vector<float>> e0, a0;
  t.ema()->visit_state([&](const std::string&, auto& x) { e0.push_back(x.to_vector()); });
  t.adam().visit_state([&](const std::string&, auto& x) { a0.push_back(x.to_vector()); });
  const auto adam_steps = t.adam().steps();
  Trainer<float, Ref>* tp = &t;
  // Step 2 is bad: after it, nothing changed but the counters.
  TrainConfig c3 = quiet_config(3);
  (void)c3;
  // Continue the same trainer for one more (bad) step.
  const_cast<TrainConfig&>(tp->config()).max_steps = 3;
  const auto s = t.fit(data);
  CHECK(s.nonfinite_steps == 1);
  CHECK(t.counters().step == 3);
  CHECK(t.adam().steps() == adam_steps);
  CHECK(bitwise_equal(w, all_weights(m)));
  std::vector<std::vector<float>> e1, a1;
  t.ema()->visit_state([&](const std::string&, auto& x) { e1.push_back(x.to_vector()); });
  t.adam().visit_state([&](const std::string&, auto& x) { a1.push_back(x.to_vector()); });
  CHECK(bitwise_equal(e0, e1));
  CHECK(bitwise_equal(a0, a1));
  // The next good step trains again.
  const_cast<TrainConfig&>(tp->config()).max_steps = 4;
  t.fit(data);
  CHECK(t.adam().steps() == adam_steps + 1);
  CHECK_FALSE(bitwise_equal(w, all_weights(m)));
}

TEST_CASE("K non-finite steps in a row stop training with an explanation") {
  const auto data = tiny_data();
  Model3 m(schedule::Cosine{.steps = 100}, tiny_config(), 3);
  FlakyModel flaky(m, {1, 2, 3, 4, 5, 6});
  auto cfg = quiet_config(20);
  cfg.max_nonfinite_in_a_row = 3;
  Trainer<float, Ref> t(flaky, cfg);
  CHECK_THROWS_WITH_AS(t.fit(data), doctest::Contains("3 steps in a row"), NumericalError);
  CHECK(t.counters().step == 3);  // steps 0 (good), 1, 2 (bad); 3rd bad one throws at step 3
}

TEST_CASE("bad data and config are rejected naming the problem") {
  Model3 m(schedule::Cosine{.steps = 100}, tiny_config(), 3);
  Trainer<float, Ref> t(m, quiet_config(1));
  auto d = tiny_data();
  d.labels.pop_back();
  CHECK_THROWS_WITH_AS(t.fit(d), doctest::Contains("one label per image"), std::invalid_argument);
  d = tiny_data();
  d.labels[3] = 7;
  CHECK_THROWS_WITH_AS(t.fit(d), doctest::Contains("label 7 of image 3"), std::invalid_argument);
  d = tiny_data();
  d.h = 9;
  CHECK_THROWS_WITH_AS(t.fit(d), doctest::Contains("model expects 1x8x8"), std::invalid_argument);
  auto cfg = quiet_config(0);
  using Tr = Trainer<float, Ref>;
  CHECK_THROWS_WITH_AS(Tr(m, cfg), doctest::Contains("set a budget"), std::invalid_argument);
}

TEST_CASE("sampling from the trained model: grid written with one row per class") {
  const fs::path dir = temp_dir("grid");
  Model3 m(schedule::Cosine{.steps = 50}, tiny_config(), 3);
  auto cfg = quiet_config(2, dir);
  cfg.sample_every = 2;
  cfg.sample_count = 6;
  cfg.sample_sampler = sampler::Ddim{.steps = 5};
  cfg.sample_guidance = 2.0;
  Trainer<float, Ref> t(m, cfg);
  t.fit(tiny_data());
  CHECK(fs::exists(dir / "samples" / "step_00000002.png"));
  fs::remove_all(dir);
}
