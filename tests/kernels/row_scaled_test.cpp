// Tests for the row-scaled weight types of engine/common/dtype.h (i8r, i1r): ids, names, row
// sizes, and the quantisers' round trip through dequantize_row.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "engine/common/dtype.h"
#include "tests/kernels/kernel_test_util.h"

namespace rwkv::kern::test {
namespace {

float scale_of(const std::vector<uint8_t>& row) {
  float s;
  std::memcpy(&s, row.data(), 4);
  return s;
}

TEST_CASE("dtype: i8r and i1r ids, names and row sizes") {
  CHECK(dtype_is_known(100));
  CHECK(dtype_is_known(101));
  CHECK_FALSE(dtype_is_known(102));
  CHECK_FALSE(dtype_is_known(9));  // q8_1 is for activations only
  CHECK(static_cast<uint32_t>(DType::kI8R) == 100);
  CHECK(static_cast<uint32_t>(DType::kI1R) == 101);
  CHECK(std::string(dtype_name(DType::kI8R)) == "i8r");
  CHECK(std::string(dtype_name(DType::kI1R)) == "i1r");
  CHECK(dtype_block_size(DType::kI8R) == 1);
  CHECK(dtype_block_size(DType::kI1R) == 1);
  CHECK(dtype_is_row_scaled(DType::kI8R));
  CHECK_FALSE(dtype_is_row_scaled(DType::kQ8_0));
  CHECK(dtype_row_bytes(DType::kI8R, 1) == 5);
  CHECK(dtype_row_bytes(DType::kI8R, 4096) == 4100);
  CHECK(dtype_row_bytes(DType::kI1R, 1) == 5);
  CHECK(dtype_row_bytes(DType::kI1R, 8) == 5);
  CHECK(dtype_row_bytes(DType::kI1R, 9) == 6);
  CHECK(dtype_row_bytes(DType::kI1R, 4096) == 516);
}

TEST_CASE("quantize_row_i8r: scale max|x| / 127, every value within half a step") {
  Rng rng(31);
  for (int64_t n : {1, 2, 7, 31, 32, 33, 100, 4097}) {
    std::vector<float> x((size_t)n), back((size_t)n);
    for (auto& v : x) v = 3.0f * rng.uniform();
    x[(size_t)(n / 2)] = n > 1 ? -5.0f : 5.0f;  // the largest magnitude, negative when possible
    std::vector<uint8_t> row(dtype_row_bytes(DType::kI8R, n));
    quantize_row_i8r(x.data(), row.data(), n);
    const float s = scale_of(row);
    CHECK(s == 5.0f / 127.0f);
    // The extreme maps to ±127 exactly.
    CHECK((int)(int8_t)row[4 + n / 2] == (n > 1 ? -127 : 127));
    dequantize_row(DType::kI8R, row.data(), back.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const int q = (int8_t)row[4 + (size_t)i];
      CHECK(q >= -127);
      CHECK(q <= 127);
      CHECK(back[(size_t)i] == s * (float)q);
      // Round to nearest: within half a step, plus the rounding of x / s.
      CHECK(std::fabs(back[(size_t)i] - x[(size_t)i]) <= 0.5f * s * (1.0f + 1e-5f));
    }
  }
}

TEST_CASE("quantize_row_i8r: an all-zero row has scale 0 and dequantises to zeros") {
  std::vector<float> x(13, 0.0f), back(13, 1.0f);
  std::vector<uint8_t> row(dtype_row_bytes(DType::kI8R, 13), 0xAB);
  quantize_row_i8r(x.data(), row.data(), 13);
  CHECK(scale_of(row) == 0.0f);
  dequantize_row(DType::kI8R, row.data(), back.data(), 13);
  for (float v : back) CHECK(v == 0.0f);
}

TEST_CASE("quantize_row_i1r: scale mean |x|, signs kept, padding bits clear") {
  Rng rng(37);
  for (int64_t n : {1, 5, 8, 9, 31, 64, 1001}) {
    std::vector<float> x((size_t)n), back((size_t)n);
    double mean = 0;
    for (auto& v : x) {
      v = rng.uniform();
      mean += std::fabs(v);
    }
    mean /= (double)n;
    std::vector<uint8_t> row(dtype_row_bytes(DType::kI1R, n), 0xFF);
    quantize_row_i1r(x.data(), row.data(), n);
    const float s = scale_of(row);
    CHECK(std::fabs(s - mean) <= 1e-6 * mean);
    dequantize_row(DType::kI1R, row.data(), back.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      CHECK(back[(size_t)i] == (x[(size_t)i] > 0.0f ? s : -s));
    }
    // Bits past the end are zero (the writer's choice; readers must not depend on it).
    if (n % 8 != 0) CHECK((row.back() >> (n % 8)) == 0);
  }
}

TEST_CASE("quantize_row_i1r: zero maps to -s, an all-zero row to scale 0") {
  const float x[3] = {0.0f, 2.0f, -1.0f};
  std::vector<uint8_t> row(dtype_row_bytes(DType::kI1R, 3));
  quantize_row_i1r(x, row.data(), 3);
  CHECK(scale_of(row) == 1.0f);
  CHECK(row[4] == 0x02);
  const float z[4] = {0, 0, 0, 0};
  quantize_row_i1r(z, row.data(), 3);
  CHECK(scale_of(row) == 0.0f);
}

}  // namespace
}  // namespace rwkv::kern::test
