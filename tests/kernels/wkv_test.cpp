// Tests for the WKV step kernel (wkv5): every compiled variant against a double-precision
// evaluation of rwkv-math.md §5 over several tokens, for head sizes that are and are not
// multiples of the vector widths (4, 8, 16, 32 columns per step).
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "tests/kernels/kernel_test_util.h"

namespace rwkv::kern::test {
namespace {

struct Token {
  std::vector<float> r, k, v, w, u;
};

Token random_token(int64_t S, Rng& rng) {
  Token t;
  for (auto* vec : {&t.r, &t.k, &t.v, &t.u}) {
    vec->resize((size_t)S);
    for (auto& x : *vec) x = rng.uniform();
  }
  // Decays in (0, 1), as exp(-exp(.)) gives.
  t.w.resize((size_t)S);
  for (auto& x : t.w) x = 0.5f + 0.49f * rng.uniform();
  return t;
}

// The recurrence in double, straight from the equations (not from any kernel).
void wkv5_double(int64_t S, std::vector<double>& st, const Token& t, std::vector<double>& y) {
  y.assign((size_t)S, 0.0);
  for (int64_t i = 0; i < S; ++i) {
    for (int64_t j = 0; j < S; ++j) {
      const double kv = (double)t.k[(size_t)j] * t.v[(size_t)i];
      y[(size_t)i] += (double)t.r[(size_t)j] * ((double)t.u[(size_t)j] * kv + st[(size_t)(j * S + i)]);
    }
  }
  for (int64_t j = 0; j < S; ++j) {
    for (int64_t i = 0; i < S; ++i) {
      double& s = st[(size_t)(j * S + i)];
      s = (double)t.k[(size_t)j] * t.v[(size_t)i] + (double)t.w[(size_t)j] * s;
    }
  }
}

TEST_CASE("wkv5: every variant follows the recurrence over several tokens") {
  for (const Kernels* kv : variants()) {
    for (int64_t S : {1, 3, 4, 7, 8, 13, 16, 31, 32, 40, 64, 65, 100}) {
      CAPTURE(std::string(kv->name));
      CAPTURE(S);
      Rng rng((uint64_t)(S * 131 + 7));
      std::vector<double> st_ref((size_t)(S * S));
      std::vector<float> st((size_t)(S * S));
      for (size_t i = 0; i < st.size(); ++i) {
        st[i] = rng.uniform();
        st_ref[i] = st[i];
      }
      std::vector<double> y_ref;
      std::vector<float> y((size_t)S + 1, 12345.0f);  // one extra: must stay untouched
      for (int step = 0; step < 5; ++step) {
        const Token t = random_token(S, rng);
        wkv5_double(S, st_ref, t, y_ref);
        kv->wkv5(S, st.data(), t.r.data(), t.k.data(), t.v.data(), t.w.data(), t.u.data(), y.data());
        for (int64_t i = 0; i < S; ++i) {
          // Each y[i] sums 2S products of magnitude <= ~S; allow f32 rounding of that sum.
          REQUIRE(std::fabs(y[(size_t)i] - y_ref[(size_t)i]) <= 1e-5 * (double)(S + 4) * (1.0 + std::fabs(y_ref[(size_t)i])));
        }
        REQUIRE(y[(size_t)S] == 12345.0f);
      }
      for (size_t i = 0; i < st.size(); ++i) {
        REQUIRE(std::fabs(st[i] - st_ref[i]) <= 1e-5 * (1.0 + std::fabs(st_ref[i])));
      }
    }
  }
}

}  // namespace
}  // namespace rwkv::kern::test
