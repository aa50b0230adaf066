// Tests for ddpm/diffusion/schedule/{table,linear,cosine,sigmoid}.hpp.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ddpm/diffusion/schedule/cosine.hpp"
#include "ddpm/diffusion/schedule/linear.hpp"
#include "ddpm/diffusion/schedule/sigmoid.hpp"
#include "ddpm/diffusion/schedule/table.hpp"

namespace {

struct FixtureRow {
  std::vector<double> v;  // t, beta_f64, then the 11 float32 columns
};

std::vector<FixtureRow> read_fixture(const std::string& name) {
  const std::string path = std::string(DDPM_SOURCE_DIR) + "/tests/data/schedules/" + name;
  std::ifstream f(path);
  REQUIRE_MESSAGE(f.good(), "missing fixture " << path);
  std::string line;
  std::getline(f, line);  // header
  std::vector<FixtureRow> rows;
  while (std::getline(f, line)) {
    FixtureRow r;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) r.v.push_back(std::stod(cell));
    rows.push_back(std::move(r));
  }
  return rows;
}

// Equal as float32 values, allowing one unit in the last place (the two libm's may round a double
// differently in rare cases before the cast to float).
bool float_close(float a, float b) {
  if (a == b) return true;
  return std::nextafter(a, b) == b;
}

template <class S>
void check_against_reference(const S& sched, const std::string& fixture) {
  const auto rows = read_fixture(fixture);
  const auto tab = ddpm::make_table<float>(sched);
  REQUIRE(rows.size() == tab.size());
  int mismatches = 0;
  for (std::size_t t = 0; t < tab.size(); ++t) {
    const auto& r = rows[t].v;
    REQUIRE(r.size() == 13);
    CHECK(tab.beta_f64[t] == doctest::Approx(r[1]).epsilon(1e-15));
    const float ours[] = {tab.beta[t],
                          tab.alpha_bar[t],
                          tab.alpha_bar_prev[t],
                          tab.sqrt_alpha_bar[t],
                          tab.sqrt_one_minus_alpha_bar[t],
                          tab.sqrt_recip_alpha_bar[t],
                          tab.sqrt_recipm1_alpha_bar[t],
                          tab.posterior_variance[t],
                          tab.posterior_log_variance[t],
                          tab.posterior_mean_coef1[t],
                          tab.posterior_mean_coef2[t]};
    for (int c = 0; c < 11; ++c)
      if (!float_close(ours[c], static_cast<float>(r[2 + c]))) {
        ++mismatches;
        MESSAGE("t=" << t << " column " << c << ": ours " << ours[c] << " ref " << r[2 + c]);
      }
  }
  CHECK(mismatches == 0);
}

}  // namespace

TEST_CASE("schedule tables equal the PyTorch reference (ref/ddpm.py) at T = 200 and 1000") {
  check_against_reference(ddpm::schedule::Linear{.steps = 200}, "linear_T200.csv");
  check_against_reference(ddpm::schedule::Linear{.steps = 1000}, "linear_T1000.csv");
  check_against_reference(ddpm::schedule::Cosine{.steps = 200}, "cosine_T200.csv");
  check_against_reference(ddpm::schedule::Cosine{.steps = 1000}, "cosine_T1000.csv");
}

TEST_CASE_TEMPLATE("schedules at any T: betas in (0, 1), alpha_bar strictly decreasing", S,
                   ddpm::schedule::Linear, ddpm::schedule::Cosine, ddpm::schedule::Sigmoid) {
  for (std::size_t T : {1u, 2u, 100u, 200u, 300u, 500u, 1000u}) {
    S s{};
    s.steps = T;
    const auto tab = ddpm::make_table<float>(s);
    REQUIRE(tab.size() == T);
    double prev = 1.0;
    for (std::size_t t = 0; t < T; ++t) {
      CHECK(tab.beta_f64[t] > 0.0);
      CHECK(tab.beta_f64[t] < 1.0);
      CHECK(tab.alpha_bar_f64[t] < prev);
      prev = tab.alpha_bar_f64[t];
      CHECK(std::isfinite(tab.posterior_log_variance[t]));
      CHECK(tab.snr[t] > 0.0f);
    }
  }
}

TEST_CASE("cosine schedule: beta clipped at max_beta, bounds settable") {
  const auto tab = ddpm::make_table<double>(ddpm::schedule::Cosine{.steps = 1000});
  CHECK(tab.beta.back() == doctest::Approx(0.999));
  const auto tab2 = ddpm::make_table<double>(ddpm::schedule::Cosine{.steps = 1000, .max_beta = 0.5});
  CHECK(tab2.beta.back() == doctest::Approx(0.5));
  const auto tab3 =
      ddpm::make_table<double>(ddpm::schedule::Cosine{.steps = 1000, .min_beta = 1e-3});
  CHECK(tab3.beta.front() == doctest::Approx(1e-3));
}

// A user schedule that only provides beta(t), and one that only provides alpha_bar(t).
struct OnlyBeta {
  std::size_t T = 100;
  std::size_t num_steps() const { return T; }
  double beta(std::size_t) const { return 0.01; }
};
struct OnlyAlphaBar {
  std::size_t T = 100;
  std::size_t num_steps() const { return T; }
  double alpha_bar(std::size_t t) const { return std::pow(0.99, double(t + 1)); }
};
static_assert(ddpm::Schedule<OnlyBeta>);
static_assert(ddpm::Schedule<OnlyAlphaBar>);

TEST_CASE("a user schedule with only beta(t) or only alpha_bar(t) gives the same table") {
  const auto a = ddpm::make_table<double>(OnlyBeta{});
  const auto b = ddpm::make_table<double>(OnlyAlphaBar{});
  for (std::size_t t = 0; t < 100; ++t) {
    CHECK(a.beta[t] == doctest::Approx(b.beta[t]).epsilon(1e-12));
    CHECK(a.alpha_bar[t] == doctest::Approx(b.alpha_bar[t]).epsilon(1e-12));
  }
}

struct BadBeta {
  double value;
  std::size_t num_steps() const { return 10; }
  double beta(std::size_t) const { return value; }
};
struct ZeroSteps {
  std::size_t num_steps() const { return 0; }
  double beta(std::size_t) const { return 0.1; }
};
struct Increasing {
  std::size_t num_steps() const { return 10; }
  double alpha_bar(std::size_t t) const { return t < 5 ? 0.9 - 0.1 * double(t) : 0.95; }
};

TEST_CASE("bad schedule parameters throw std::invalid_argument naming the parameter") {
  using ddpm::make_table;
  CHECK_THROWS_WITH_AS(make_table(ddpm::schedule::Linear{.steps = 0}),
                       doctest::Contains("schedule::Linear::steps"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_table(ddpm::schedule::Cosine{.steps = 0}),
                       doctest::Contains("schedule::Cosine::steps"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_table(ddpm::schedule::Linear{.beta_end = 1.5}),
                       doctest::Contains("beta_end"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_table(ddpm::schedule::Linear{.beta_start = 0.0}),
                       doctest::Contains("beta_start"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_table(ddpm::schedule::Cosine{.max_beta = 1.0}),
                       doctest::Contains("max_beta"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_table(ZeroSteps{}), doctest::Contains("num_steps() (T)"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_table(BadBeta{1.0}), doctest::Contains("beta(0) = 1"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_table(BadBeta{-0.1}), doctest::Contains("outside (0, 1)"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_table(BadBeta{std::nan("")}), doctest::Contains("beta(0) = nan"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_table(Increasing{}), doctest::Contains("strictly decreasing"),
                       std::invalid_argument);
}
