// Tests for ddpm/optim/{adam,ema,param_list}.hpp against PyTorch semantics.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ddpm/backend/reference.hpp"
#include "ddpm/optim/adam.hpp"
#include "ddpm/optim/ema.hpp"

using namespace ddpm;
using Ref = backend::Reference;

namespace {
struct Param {
  Tensor<float, Ref> value, grad;
};
/// A stand-in model with one parameter tensor.
struct OneParam {
  Param p;
  explicit OneParam(std::size_t n) : p{Tensor<float, Ref>(Shape{n}), Tensor<float, Ref>(Shape{n})} {}
  template <class V>
  void visit_parameters(V&& v) {
    v("w", p);
  }
};

std::vector<float> parse(const std::string& line, std::string& tag) {
  std::stringstream ss(line);
  ss >> tag;
  std::vector<float> v;
  double x;
  while (ss >> x) v.push_back(float(x));
  return v;
}
}  // namespace

TEST_CASE("Adam and AdamW match torch.optim after 5 steps") {
  std::ifstream f(std::string(DDPM_SOURCE_DIR) + "/tests/data/optim/adam.txt");
  REQUIRE(f.good());
  std::string line;
  int cases = 0;
  while (std::getline(f, line)) {
    std::stringstream hs(line);
    std::string word, name;
    optim::Adam cfg;
    int dec = 0;
    hs >> word >> name >> cfg.lr >> cfg.beta1 >> cfg.beta2 >> cfg.eps >> cfg.weight_decay >> dec;
    REQUIRE(word == "case");
    cfg.decoupled = dec != 0;
    std::string tag;
    std::getline(f, line);
    const auto init = parse(line, tag);
    OneParam m(init.size());
    m.p.value.copy_from(init);
    optim::AdamOptimizer<float, Ref> opt(m, cfg);
    for (int k = 0; k < 5; ++k) {
      std::getline(f, line);
      m.p.grad.copy_from(parse(line, tag));
      opt.step(cfg.lr);
    }
    std::getline(f, line);
    const auto expect = parse(line, tag);
    REQUIRE(tag == "expect");
    const auto got = m.p.value.to_vector();
    for (std::size_t i = 0; i < got.size(); ++i) {
      INFO(name, " element ", i);
      CHECK(got[i] == doctest::Approx(expect[i]).epsilon(1e-5));
    }
    CHECK(opt.steps() == 5);
    ++cases;
  }
  CHECK(cases == 3);
}

TEST_CASE("grad scale folds clipping into the step; clip factor as torch clip_grad_norm_") {
  CHECK(optim::clip_factor(10.0, 1.0) == doctest::Approx(1.0 / (10.0 + 1e-6)));
  CHECK(optim::clip_factor(0.5, 1.0) == 1.0);
  CHECK(optim::clip_factor(5.0, 0.0) == 1.0);  // 0 = off
  CHECK(optim::clip_factor(std::nan(""), 1.0) == 1.0);
  OneParam a(3), b(3);
  const std::vector<float> g{3, -4, 12};
  for (auto* m : {&a, &b}) {
    m->p.value.copy_from(std::vector<float>{1, 2, 3});
  }
  a.p.grad.copy_from(g);
  std::vector<float> gs(g);
  for (auto& x : gs) x *= 0.25f;
  b.p.grad.copy_from(gs);
  const auto params = optim::collect_parameters<float, Ref>(a);
  CHECK(optim::grad_norm(params, Ref{}) == doctest::Approx(13.0));
  optim::AdamOptimizer<float, Ref> oa(a, optim::Adam{.lr = 0.1}), ob(b, optim::Adam{.lr = 0.1});
  oa.step(0.1, 0.25);
  ob.step(0.1, 1.0);
  CHECK(a.p.value.to_vector() == b.p.value.to_vector());
  optim::zero_grads(params, Ref{});
  CHECK(optim::grad_norm(params, Ref{}) == 0.0);
}

TEST_CASE("linear warm-up as the reference: lr * min(1, (step + 1) / warmup)") {
  CHECK(optim::warmup_lr(1e-3, 0, 100) == doctest::Approx(1e-5));
  CHECK(optim::warmup_lr(1e-3, 49, 100) == doctest::Approx(5e-4));
  CHECK(optim::warmup_lr(1e-3, 99, 100) == doctest::Approx(1e-3));
  CHECK(optim::warmup_lr(1e-3, 5000, 100) == doctest::Approx(1e-3));
  CHECK(optim::warmup_lr(1e-3, 0, 0) == doctest::Approx(1e-3));
}

TEST_CASE("EMA with warm-up follows min(decay, (1 + n) / (10 + n)) and swaps weights") {
  OneParam m(1);
  m.p.value.copy_from(std::vector<float>{0.0f});
  optim::Ema<float, Ref> ema(m, {.decay = 0.9, .warmup = true});
  double expect = 0.0;
  for (int n = 1; n <= 30; ++n) {
    m.p.value.copy_from(std::vector<float>{float(n)});
    const double d = std::min(0.9, (1.0 + n) / (10.0 + n));
    CHECK(ema.next_decay() == doctest::Approx(d));
    ema.update();
    expect = d * expect + (1 - d) * n;
  }
  CHECK(ema.updates() == 30);
  ema.swap();
  CHECK(m.p.value.to_vector()[0] == doctest::Approx(expect).epsilon(1e-5));
  ema.swap();
  CHECK(m.p.value.to_vector()[0] == 30.0f);
  optim::Ema<float, Ref> plain(m, {.decay = 0.5, .warmup = false});
  CHECK(plain.next_decay() == 0.5);
  using E = optim::Ema<float, Ref>;
  using A = optim::AdamOptimizer<float, Ref>;
  const optim::EmaConfig bad{.decay = 1.0};
  CHECK_THROWS_WITH_AS(E(m, bad), doctest::Contains("decay"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(A(m, optim::Adam{.lr = -1}), doctest::Contains("optim::Adam::lr"),
                       std::invalid_argument);
}
