// The RGB score (eval/rgb_score.hpp) on synthetic structured colour images made here (a disc and
// a bar of random colours on a two-colour gradient, 16x16): the rotation encoder learns its task,
// blur, noise, a colour shift and mode collapse each raise the Fréchet distance well above the
// real-vs-real baseline, exact copies of training images are found, samples alike each other are
// counted, and an encoder file refuses images of another size.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "ddpm/backend/cpu.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/eval/all.hpp"
#include "eval_test_util.hpp"

using namespace ddpm;
using Cpu = backend::Cpu;

namespace {

constexpr std::size_t S = 16;

/// n structured RGB images, NCHW bytes: a gradient between two random colours in a random
/// direction, a disc and a horizontal bar of random colours at random places.
io::ImageDataset make_images(std::size_t n, std::uint64_t seed) {
  io::ImageDataset d;
  d.n = n;
  d.c = 3;
  d.h = d.w = S;
  d.pixels.resize(n * 3 * S * S);
  const Rng rng{seed};
  for (std::size_t i = 0; i < n; ++i) {
    auto u = [&](std::uint64_t k) { return rng.uniform(i, k); };
    double bg0[3], bg1[3], disc[3], bar[3];
    for (int ch = 0; ch < 3; ++ch) {
      bg0[ch] = 255 * u(ch);
      bg1[ch] = 255 * u(3 + ch);
      disc[ch] = 255 * u(6 + ch);
      bar[ch] = 255 * u(9 + ch);
    }
    const double ang = 6.283185307 * u(12), cx = 3 + 10 * u(13), cy = 2 + 7 * u(14),
                 r = 2 + 3 * u(15), by = 10 + 4 * u(16), bx0 = 2 + 6 * u(17);
    for (std::size_t y = 0; y < S; ++y)
      for (std::size_t x = 0; x < S; ++x) {
        const double t = 0.5 + 0.5 * ((double(x) - 7.5) * std::cos(ang) + (double(y) - 7.5) * std::sin(ang)) / 10.6;
        const bool in_disc = (double(x) - cx) * (double(x) - cx) + (double(y) - cy) * (double(y) - cy) < r * r;
        const bool in_bar = std::abs(double(y) - by) < 1.0 && double(x) >= bx0 && double(x) < bx0 + 7;
        for (int ch = 0; ch < 3; ++ch) {
          double v = (1 - t) * bg0[ch] + t * bg1[ch];
          if (in_disc) v = disc[ch];
          if (in_bar) v = bar[ch];
          d.pixels[((i * 3 + std::size_t(ch)) * S + y) * S + x] =
              std::uint8_t(std::clamp(std::lround(v), 0L, 255L));
        }
      }
  }
  return d;
}

struct Fixture {
  io::ImageDataset real, fresh;  // the training images; other images from the same process
  std::unique_ptr<eval::Classifier<float, Cpu>> enc;
  eval::ClassifierTrainReport rep;
  std::unique_ptr<eval::RgbEvaluator<float, Cpu>> ev;
};

Fixture& fixture() {
  static Fixture f = [] {
    Fixture x;
    const io::ImageDataset all = make_images(500, 11);
    x.real = eval::test::slice(all, 0, 400);
    x.fresh = eval::test::slice(all, 400, 100);
    eval::FeatureEncoderConfig cfg;
    cfg.train.epochs = 10;
    cfg.train.progress = false;
    x.enc = std::make_unique<eval::Classifier<float, Cpu>>(
        eval::train_feature_encoder<float, Cpu>(x.real, cfg, Cpu(2), &x.rep));
    x.ev = std::make_unique<eval::RgbEvaluator<float, Cpu>>(*x.enc, x.real);
    return x;
  }();
  return f;
}

std::vector<float> floats(const io::ImageDataset& d) { return io::to_float_pm1(d.pixels); }

/// Mode collapse: the first 5 of the n images of x, each repeated (image i = image i % 5).
std::vector<float> collapse_to_five(const std::vector<float>& x, std::size_t n, std::size_t item) {
  std::vector<float> collapsed(x.size());
  for (std::size_t i = 0; i < n; ++i)
    std::copy_n(x.begin() + std::ptrdiff_t((i % 5) * item), item, collapsed.begin() + std::ptrdiff_t(i * item));
  return collapsed;
}

}  // namespace

TEST_CASE("rotation_dataset: four turns counter-clockwise, labels 0..3") {
  io::ImageDataset d{1, 1, 2, 2, {1, 2, 3, 4}, {}};  // [[a b] [c d]] = [[1 2] [3 4]]
  const auto r = eval::rotation_dataset(d);
  REQUIRE(r.n == 4);
  CHECK(r.labels == std::vector<std::int32_t>{0, 1, 2, 3});
  CHECK(std::vector<std::uint8_t>(r.pixels.begin(), r.pixels.begin() + 4) == std::vector<std::uint8_t>{1, 2, 3, 4});
  CHECK(std::vector<std::uint8_t>(r.pixels.begin() + 4, r.pixels.begin() + 8) == std::vector<std::uint8_t>{2, 4, 1, 3});
  CHECK(std::vector<std::uint8_t>(r.pixels.begin() + 8, r.pixels.begin() + 12) == std::vector<std::uint8_t>{4, 3, 2, 1});
  CHECK(std::vector<std::uint8_t>(r.pixels.begin() + 12, r.pixels.end()) == std::vector<std::uint8_t>{3, 1, 4, 2});
  io::ImageDataset bad{1, 1, 2, 3, std::vector<std::uint8_t>(6), {}};
  CHECK_THROWS_WITH_AS((void)eval::rotation_dataset(bad), doctest::Contains("square"), std::invalid_argument);
}

TEST_CASE("feature encoder: learns to tell the rotation of images it was not trained on") {
  Fixture& f = fixture();
  const double acc = eval::accuracy(*f.enc, eval::rotation_dataset(f.fresh));
  MESSAGE("rotation accuracy on 100 new images: " << acc << " (chance 0.25), trained in "
                                                  << f.rep.seconds << " s, " << f.rep.steps << " steps");
  CHECK(acc > 0.6);
}

TEST_CASE("RGB score: real images sit in the baseline; blur, noise, colour shift, mode collapse raise the distance") {
  Fixture& f = fixture();
  const std::size_t n = f.fresh.n, item = 3 * S * S;
  const auto real = f.ev->score(floats(f.fresh), n);
  MESSAGE("real: " << real.summary());
  REQUIRE(real.fd_real_n == n);
  // New real images are as far from the reference as real draws are from each other.
  CHECK(real.fd < real.fd_real_mean + 4 * real.fd_real_std);
  CHECK(real.copies == 0);

  const std::vector<float> x = floats(f.fresh);
  // "Raised" = more than 5 standard deviations of the real-vs-real distance above its mean (the
  // distance has a finite-sample floor, about 7 here at n = 100, so a ratio to the real images'
  // distance says little).
  auto check_raised = [&](const std::string& what, const std::vector<float>& y) {
    const auto r = f.ev->score(y, n);
    MESSAGE(what << ": " << r.summary());
    CHECK_MESSAGE(r.fd > real.fd_real_mean + 5 * real.fd_real_std, what);
  };
  // 3x3 box blur (edges clamped).
  std::vector<float> blur(x.size());
  for (std::size_t i = 0; i < n * 3; ++i)
    for (std::size_t y = 0; y < S; ++y)
      for (std::size_t xx = 0; xx < S; ++xx) {
        float s = 0;
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx) {
            const std::size_t yy = std::size_t(std::clamp<long>(long(y) + dy, 0, S - 1));
            const std::size_t xq = std::size_t(std::clamp<long>(long(xx) + dx, 0, S - 1));
            s += x[(i * S + yy) * S + xq];
          }
        blur[(i * S + y) * S + xx] = s / 9;
      }
  check_raised("blur", blur);
  // Gaussian noise, sigma 0.2 on the [-1, 1] scale (about 25 grey levels), clipped.
  std::vector<float> noisy(x.size());
  const Rng rng{5};
  for (std::size_t k = 0; k < x.size(); ++k)
    noisy[k] = std::clamp(x[k] + 0.2f * float(rng.normal(0, k)), -1.0f, 1.0f);
  check_raised("noise", noisy);
  // Colour shift: red up, blue down by 0.3 (about 38 grey levels), clipped.
  std::vector<float> shifted = x;
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t p = 0; p < S * S; ++p) {
      shifted[i * item + p] = std::min(1.0f, shifted[i * item + p] + 0.3f);
      shifted[i * item + 2 * S * S + p] = std::max(-1.0f, shifted[i * item + 2 * S * S + p] - 0.3f);
    }
  check_raised("colour shift", shifted);
  // Mode collapse: 5 distinct images, each 20 times.
  check_raised("mode collapse", collapse_to_five(x, n, item));
}

TEST_CASE("RGB score: exact copies of training images are counted, new images are not") {
  Fixture& f = fixture();
  const std::size_t item = 3 * S * S;
  std::vector<float> x = floats(f.fresh);
  const std::vector<float> train = floats(f.real);
  for (std::size_t i = 0; i < 10; ++i)  // samples 0..9 = training images 7, 14, ...
    std::copy_n(train.begin() + std::ptrdiff_t(7 * i * item), item, x.begin() + std::ptrdiff_t(i * item));
  const auto r = f.ev->score(x, f.fresh.n);
  CHECK(r.copies == 10);
  CHECK(r.nn_min < 1e-6);
  for (std::size_t i = 0; i < 10; ++i) CHECK(r.nn_index[i] == 7 * i);
  REQUIRE(r.real_nn_n > 0);
  CHECK(r.real_nn_min > r.copy_rms);  // distinct real images are not copies of each other
}

TEST_CASE("RGB score: samples alike each other are counted (no two alike), distinct ones are not") {
  Fixture& f = fixture();
  const std::size_t n = f.fresh.n, item = 3 * S * S;
  const std::vector<float> x = floats(f.fresh);
  const auto distinct = f.ev->score(x, n);
  CHECK(distinct.duplicate_pairs == 0);
  CHECK(distinct.self_nn_min > distinct.copy_rms);
  REQUIRE(distinct.real_self_n == n);
  CHECK(distinct.real_self_nn_min > distinct.copy_rms);
  // New images of the same process are about as far from each other as real images are.
  CHECK(distinct.self_nn_mean == doctest::Approx(distinct.real_self_nn_mean).epsilon(0.25));
  // Mode collapse: 5 distinct images, each 20 times: 5 x (20 choose 2) = 950 alike pairs.
  const auto c = f.ev->score(collapse_to_five(x, n, item), n);
  MESSAGE("collapsed: " << c.summary());
  CHECK(c.duplicate_pairs == 950);
  CHECK(c.self_nn_min < 1e-6);
  CHECK(c.summary().find("950 alike") != std::string::npos);
  // One pair barely apart (1 grey level on every value) is alike too; the rest are not.
  std::vector<float> one = x;
  for (std::size_t k = 0; k < item; ++k) one[item + k] = std::min(1.0f, x[k] + 2.0f / 255.0f);
  const auto o = f.ev->score(one, n);
  CHECK(o.duplicate_pairs == 1);
  CHECK(o.self_nn_min < o.copy_rms);
  const auto j = o.to_json();
  CHECK(j["within_set"]["alike_pairs"] == 1);
  CHECK(j["within_set"]["real"]["n"] == n);
}

TEST_CASE("feature encoder files: saved with their size; another size or a classifier is refused by name") {
  Fixture& f = fixture();
  eval::test::TempDir dir;
  const auto file = dir / "encoder.safetensors";
  eval::save_feature_encoder(file, *f.enc, {{"data.name", "synthetic"}});
  auto l = eval::load_feature_encoder<float, Cpu>(file, 3, S, Cpu(2));
  CHECK(l.net.config() == f.enc->config());
  CHECK(l.metadata.at("encoder.kind") == "rotation");
  const std::vector<float> x = floats(eval::test::slice(f.fresh, 0, 8));
  const auto a = eval::predict(*f.enc, x, 8), b = eval::predict(l.net, x, 8);
  CHECK(a.features == b.features);
  // The message of the IoError that loading throws ("" if it does not throw).
  auto error_of = [](const std::filesystem::path& p, std::size_t c, std::size_t size) -> std::string {
    try {
      (void)eval::load_feature_encoder<float, Cpu>(p, c, size, Cpu(2));
    } catch (const IoError& e) {
      return e.what();
    }
    return "";
  };
  const std::string other_size = error_of(file, 3, 32);
  CHECK(other_size.find("encoder.safetensors") != std::string::npos);
  CHECK(other_size.find("3x16x16") != std::string::npos);
  CHECK(other_size.find("3x32x32") != std::string::npos);
  CHECK(other_size.find("--image-size 32") != std::string::npos);
  CHECK(error_of(file, 1, S).find("1x16x16") != std::string::npos);
  const std::string not_encoder = error_of(eval::test::committed_classifier(), 1, 28);
  CHECK(not_encoder.find("mnist_classifier.safetensors") != std::string::npos);
  CHECK(not_encoder.find("not a feature encoder") != std::string::npos);
}
