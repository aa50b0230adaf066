// Tests for ddpm/eval/classifier_io.hpp: round trip, metadata, and the errors for files that
// are not classifiers, of another configuration, or damaged.
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "ddpm/backend/reference.hpp"
#include "ddpm/eval/classifier_io.hpp"
#include "ddpm/io/safetensors.hpp"
#include "eval_test_util.hpp"
#include "support/random.hpp"

using namespace ddpm;
using Ref = backend::Reference;

namespace {
eval::ClassifierConfig tiny() {
  eval::ClassifierConfig c;
  c.image_size = 8;
  c.num_classes = 4;
  c.channels = {4, 8};
  c.depth = 1;
  c.groups = 4;
  return c;
}
/// load_classifier<float, Ref> without a comma that the doctest macros would split on.
eval::LoadedClassifier<float, Ref> load(const std::filesystem::path& p,
                                        const eval::ClassifierConfig* want = nullptr) {
  return eval::load_classifier<float, Ref>(p, Ref{}, want);
}
}  // namespace

TEST_CASE("eval classifier file: save and load give the same outputs and metadata") {
  eval::test::TempDir dir;
  eval::Classifier<float, Ref> a(tiny(), Ref{}, 17);
  eval::save_classifier(dir / "c.safetensors", a, {{"data.name", "toy"}, {"test_accuracy", "0.5"}});
  auto loaded = eval::load_classifier<float, Ref>(dir / "c.safetensors");
  CHECK(loaded.net.config() == tiny());
  CHECK(loaded.metadata.at("data.name") == "toy");
  CHECK(loaded.metadata.at("config.channels") == "4,8");
  CHECK(loaded.metadata.at("format") == "ddpm.eval.classifier");
  auto x = test::random_tensor<float, Ref>(Shape{3, 1, 8, 8}, 2);
  const auto la = a.forward(x.cview());
  const auto lb = loaded.net.forward(x.cview());
  for (std::size_t i = 0; i < la.size(); ++i) CHECK(la[i] == lb[i]);
  const auto c = tiny();
  CHECK_NOTHROW((void)load(dir / "c.safetensors", &c));
}

TEST_CASE("eval classifier file: another configuration is named field by field") {
  eval::test::TempDir dir;
  eval::Classifier<float, Ref> a(tiny());
  eval::save_classifier(dir / "c.safetensors", a);
  auto want = tiny();
  want.channels = {8, 16};
  CHECK_THROWS_WITH_AS((void)load(dir / "c.safetensors", &want),
                       doctest::Contains("channels is 4,8 in the file, expected 8,16"), IoError);
  want = tiny();
  want.image_size = 28;
  CHECK_THROWS_WITH_AS((void)load(dir / "c.safetensors", &want),
                       doctest::Contains("image_size is 8 in the file, expected 28"), IoError);
}

TEST_CASE("eval classifier file: not a classifier, missing or wrong tensors") {
  eval::test::TempDir dir;
  const std::vector<float> v(4, 1.0f);
  const auto bytes = std::as_bytes(std::span<const float>(v));
  // A safetensors file without the format key (e.g. a diffusion checkpoint).
  io::write_safetensors(dir / "other.safetensors",
                        std::vector<io::TensorEntry>{{"w", "F32", {4}, bytes}},
                        {{"schedule", "cosine"}});
  CHECK_THROWS_WITH_AS((void)load(dir / "other.safetensors"),
                       doctest::Contains("not a ddpm-eval classifier"), IoError);
  CHECK_THROWS_WITH_AS((void)load(dir / "missing.safetensors"),
                       doctest::Contains("missing.safetensors"), IoError);
  // Right metadata, wrong tensors.
  auto meta = eval::config_to_metadata(tiny());
  io::write_safetensors(dir / "bad.safetensors",
                        std::vector<io::TensorEntry>{{"w", "F32", {4}, bytes}}, meta);
  CHECK_THROWS_WITH_AS((void)load(dir / "bad.safetensors"),
                       doctest::Contains("lacks tensor 'units.0.conv.weight'"), IoError);
  io::write_safetensors(dir / "shape.safetensors",
                        std::vector<io::TensorEntry>{{"units.0.conv.weight", "F32", {4}, bytes}},
                        meta);
  CHECK_THROWS_WITH_AS(
      (void)load(dir / "shape.safetensors"),
      doctest::Contains("'units.0.conv.weight' has shape (4), the configuration needs (4,1,3,3)"),
      IoError);
  meta["config.channels"] = "4,x";
  io::write_safetensors(dir / "meta.safetensors",
                        std::vector<io::TensorEntry>{{"w", "F32", {4}, bytes}}, meta);
  CHECK_THROWS_WITH_AS((void)load(dir / "meta.safetensors"),
                       doctest::Contains("'config.channels' = '4,x'"), IoError);
}
