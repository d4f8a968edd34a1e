// Tests for the kernels' row conversions: half <-> float (the F16C / NEON ones against the
// portable code in engine/common/fp16.h) and the activation quantisers (bit for bit against
// dtype.h's references).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/kernels.h"
#include "tests/kernels/kernel_test_util.h"

namespace rwkv::kern::test {
namespace {

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

bool is_half_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }

TEST_CASE("fp16: known values") {
  CHECK(fp32_to_fp16(1.0f) == 0x3c00);
  CHECK(fp32_to_fp16(-2.0f) == 0xc000);
  CHECK(fp32_to_fp16(65504.0f) == 0x7bff);                 // largest finite half
  CHECK(fp32_to_fp16(65520.0f) == 0x7c00);                 // halfway to 2^16 rounds to inf
  CHECK(fp32_to_fp16(std::ldexp(1.0f, -24)) == 0x0001);    // smallest subnormal
  CHECK(fp32_to_fp16(std::ldexp(1.0f, -25)) == 0x0000);    // tie, rounds to even (zero)
  CHECK(fp32_to_fp16(std::ldexp(3.0f, -25)) == 0x0002);    // tie, rounds to even (2)
  CHECK(fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);  // tie below, to even
  CHECK(fp32_to_fp16(1.0f + std::ldexp(3.0f, -11)) == 0x3c02);  // tie above, to even
  CHECK(fp16_to_fp32(0x0001) == std::ldexp(1.0f, -24));
  CHECK(fp16_to_fp32(0x3555) == 0.333251953125f);
  CHECK(std::isinf(fp16_to_fp32(0xfc00)));
  CHECK(std::isnan(fp16_to_fp32(0x7e00)));
}

TEST_CASE("fp16: every half round-trips through float in every variant") {
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = (uint16_t)i;
  for (const Kernels* k : variants()) {
    std::vector<float> f(all.size());
    std::vector<uint16_t> back(all.size());
    k->f16_to_f32(all.data(), f.data(), (int64_t)all.size());
    k->f32_to_f16(f.data(), back.data(), (int64_t)f.size());
    for (uint32_t i = 0; i < 65536; ++i) {
      const float want = fp16_to_fp32(all[i]);
      if (is_half_nan(all[i])) {
        REQUIRE_MESSAGE(std::isnan(f[i]), k->name, " h=", i);
        REQUIRE_MESSAGE(is_half_nan(back[i]), k->name, " h=", i);
        REQUIRE(std::signbit(f[i]) == std::signbit(want));
      } else {
        REQUIRE_MESSAGE(bits(f[i]) == bits(want), k->name, " h=", i);
        REQUIRE_MESSAGE(back[i] == all[i], k->name, " h=", i);
      }
    }
  }
}

TEST_CASE("fp16: float -> half agrees with the portable code on random floats") {
  // Random bit patterns cover every exponent (overflow, subnormal halves, underflow); a second
  // set sits exactly on rounding ties of the half grid.
  Rng rng(3);
  std::vector<float> x;
  for (int i = 0; i < 200000; ++i) x.push_back(from_bits((uint32_t)rng.next()));
  for (int i = 0; i < 20000; ++i) {
    const uint32_t h = (uint32_t)(rng.next() % 0x7bff);
    // Midpoint between half h and h + 1: exactly representable in float.
    x.push_back(0.5f * (fp16_to_fp32((uint16_t)h) + fp16_to_fp32((uint16_t)(h + 1))));
  }
  for (int i = 0; i < 1000; ++i) x.push_back(std::ldexp(rng.uniform(), -14 - (int)(rng.next() % 12)));
  for (const Kernels* k : variants()) {
    std::vector<uint16_t> h(x.size());
    k->f32_to_f16(x.data(), h.data(), (int64_t)x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      if (std::isnan(x[i])) {
        REQUIRE(is_half_nan(h[i]));
        continue;
      }
      REQUIRE_MESSAGE(h[i] == fp32_to_fp16(x[i]), k->name, " x bits=", bits(x[i]));
    }
  }
}

TEST_CASE("quantize: every variant's q8_0 / q8_1 blocks equal dtype.h's bit for bit") {
  Rng rng(5);
  const int64_t n = 32 * 64;
  std::vector<float> x((size_t)n);
  for (int64_t i = 0; i < n; ++i) x[(size_t)i] = rng.uniform() * (i < n / 2 ? 1.0f : 1e-3f);
  // Block 0: amax 127 gives d = 1 and id = 1, so x * id lands on exact .5 ties, which round
  // away from zero (lround), not to even.
  for (int j = 0; j < 32; ++j) x[(size_t)j] = (float)(j - 16) + (j % 2 ? 0.5f : -0.5f);
  x[0] = 127.0f;
  // Block 1: all zero (d = 0, id = 0). Block 2: one value, others zero.
  for (int j = 32; j < 96; ++j) x[(size_t)j] = 0.0f;
  x[70] = -3.0f;
  std::vector<BlockQ8_0> q0((size_t)n / 32), q0_ref(q0.size());
  std::vector<BlockQ8_1> q1((size_t)n / 32), q1_ref(q1.size());
  quantize_row_q8_0(x.data(), q0_ref.data(), n);
  quantize_row_q8_1(x.data(), q1_ref.data(), n);
  CHECK(q0_ref[0].qs[2] == -15);  // -14.5: away from zero (half-to-even would give -14)
  CHECK(q0_ref[0].qs[3] == -13);  // -12.5
  for (const Kernels* k : variants()) {
    k->quantize_q8_0(x.data(), q0.data(), n);
    k->quantize_q8_1(x.data(), q1.data(), n);
    for (size_t b = 0; b < q0.size(); ++b) {
      REQUIRE_MESSAGE(std::memcmp(&q0[b], &q0_ref[b], sizeof(BlockQ8_0)) == 0, k->name, " q8_0 block ", b);
      REQUIRE_MESSAGE(std::memcmp(&q1[b], &q1_ref[b], sizeof(BlockQ8_1)) == 0, k->name, " q8_1 block ", b);
    }
  }
}

}  // namespace
}  // namespace rwkv::kern::test
