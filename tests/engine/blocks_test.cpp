// The engine's element-wise helpers (engine/models/blocks.h) against the standard library.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "engine/models/blocks.h"
#include "kernels/kernels.h"

namespace rwkv::detail::test {
namespace {

// Distance in units in the last place between two positive finite floats.
int64_t ulp_distance(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return std::llabs((int64_t)ia - (int64_t)ib);
}

TEST_CASE("exp_branchless: within 3 ulp of std::exp on [-87.3, 88.3], clamped outside, NaN stays NaN") {
  int64_t worst = 0;
  float worst_x = 0.0f;
  for (float x = -87.3f; x <= 88.3f; x += 0.0137f) {
    const int64_t d = ulp_distance(exp_branchless(x), std::exp(x));
    if (d > worst) {
      worst = d;
      worst_x = x;
    }
  }
  CAPTURE(worst_x);
  CHECK(worst <= 3);
  for (float x : {0.0f, -0.0f, 1.0f, -1.0f, 0.5f * 0.6931472f, -0.5f * 0.6931472f, 10.0f, -10.0f}) {
    CAPTURE(x);
    CHECK(ulp_distance(exp_branchless(x), std::exp(x)) <= 3);
  }
  CHECK(exp_branchless(0.0f) == 1.0f);
  // Outside the range: the clamped values, finite and positive.
  CHECK(exp_branchless(-1000.0f) == exp_branchless(-87.3f));
  CHECK(exp_branchless(-std::numeric_limits<float>::infinity()) > 0.0f);
  CHECK(std::isfinite(exp_branchless(1000.0f)));
  CHECK(std::isfinite(exp_branchless(std::numeric_limits<float>::infinity())));
  CHECK(std::isnan(exp_branchless(std::numeric_limits<float>::quiet_NaN())));
}

TEST_CASE("sigmoidf: matches 1 / (1 + exp(-x)) closely, saturates cleanly") {
  double worst = 0.0;
  for (float x = -30.0f; x <= 30.0f; x += 0.01f) {
    const double ref = 1.0 / (1.0 + std::exp(-(double)x));
    worst = std::fmax(worst, std::fabs(sigmoidf(x) - ref) / ref);
  }
  CHECK(worst < 1e-6);
  CHECK(sigmoidf(200.0f) == 1.0f);
  CHECK(sigmoidf(-200.0f) >= 0.0f);
  CHECK(sigmoidf(-200.0f) < 1e-37f);
}

TEST_CASE("layer_norm_rows: same bits as one layer_norm per row, any thread count") {
  const int64_t C = 96;
  std::vector<float> w((size_t)C), b((size_t)C);
  for (int64_t i = 0; i < C; ++i) {
    w[(size_t)i] = 0.5f + 0.01f * (float)i;
    b[(size_t)i] = -0.2f + 0.003f * (float)i;
  }
  for (int64_t T : {1, 3, 4, 9}) {
    std::vector<float> x((size_t)(T * C)), y((size_t)(T * C)), ref((size_t)(T * C));
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * (float)i) * (1.0f + (float)(i % 7));
    for (int64_t t = 0; t < T; ++t) layer_norm(x.data() + t * C, ref.data() + t * C, C, w.data(), b.data());
    for (int threads : {1, 2}) {
      kern::set_num_threads(threads);
      layer_norm_rows(x.data(), y.data(), T, C, w.data(), b.data());
      CAPTURE(T);
      CAPTURE(threads);
      CHECK(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)) == 0);
    }
  }
  kern::set_num_threads(0);
}

}  // namespace
}  // namespace rwkv::detail::test
