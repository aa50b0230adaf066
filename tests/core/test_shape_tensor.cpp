// Tests for ddpm/core/shape.hpp and ddpm/tensor/tensor.hpp.
#include <doctest/doctest.h>

#include <numeric>
#include <vector>

#include "ddpm/backend/tags.hpp"
#include "ddpm/core/shape.hpp"
#include "ddpm/tensor/tensor.hpp"

using ddpm::Shape;
using Tensor = ddpm::Tensor<float, ddpm::backend::Reference>;

TEST_CASE("Shape basics") {
  const Shape s{2, 3, 4, 5};
  CHECK(s.rank == 4);
  CHECK(s.numel() == 120);
  CHECK(s.item_size() == 60);
  CHECK(s.str() == "(2, 3, 4, 5)");
  CHECK(s == Shape{2, 3, 4, 5});
  CHECK_FALSE(s == Shape{2, 3, 4});
  CHECK_THROWS_AS(ddpm::detail::require_shape(s, Shape{2, 3, 4, 6}, "x"), std::invalid_argument);
}

TEST_CASE("Tensor: resize reuses capacity, views slice and reshape") {
  Tensor t(Shape{4, 2, 3, 3});
  CHECK(t.size() == 72);
  std::vector<float> v(72);
  std::iota(v.begin(), v.end(), 0.0f);
  t.copy_from(v);
  const float* p = t.data();
  t.resize(Shape{2, 2, 3, 3});  // smaller: no reallocation, contents kept
  CHECK(t.data() == p);
  CHECK(t.view()[17] == 17.0f);
  t.resize(Shape{4, 2, 3, 3});
  auto s = t.view().slice(1, 2);
  CHECK(s.shape() == Shape{2, 2, 3, 3});
  CHECK(s[0] == 18.0f);
  CHECK(t.view().reshape(Shape{72})[71] == 71.0f);
  CHECK_THROWS_AS((void)t.view().reshape(Shape{71}), std::invalid_argument);
  CHECK_THROWS_AS((void)t.view().slice(3, 2), std::invalid_argument);
  CHECK_THROWS_AS(t.copy_from(std::vector<float>(5)), std::invalid_argument);
  Tensor moved = std::move(t);
  CHECK(moved.size() == 72);
  CHECK(t.empty());  // NOLINT(bugprone-use-after-move): moved-from state is specified
}
