// Tests for the sparse FFN kernels (gemv_rows, axpy_rows): every compiled variant against an
// exact double-precision evaluation and against the scalar reference, over odd shapes and row
// subsets that are empty, one row, all rows, random, and with duplicates (which kernels.h allows).
#include <doctest/doctest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "tests/kernels/kernel_test_util.h"

namespace rwkv::kern::test {
namespace {

// Weight (r, c) in double, decoded from the bytes (not through dtype.cpp).
double weight(const MatView& w, int64_t r, int64_t c) {
  const uint8_t* row = w.row(r);
  switch (w.type) {
    case DType::kF32: {
      float f;
      std::memcpy(&f, row + 4 * c, 4);
      return f;
    }
    case DType::kF16: return half(row + 2 * c);
    case DType::kQ8_0: {
      const DecodedBlock b = decode_block(DType::kQ8_0, row + (size_t)(c / 32) * sizeof(BlockQ8_0));
      return b.d * b.q[c % 32];
    }
    default: return row_scaled_value(w.type, row, c);
  }
}

// The row subsets every shape is tried with.
std::vector<std::vector<int32_t>> subsets(int64_t rows, Rng& rng) {
  std::vector<std::vector<int32_t>> out;
  out.push_back({});                                   // empty
  out.push_back({(int32_t)(rows - 1)});                // one row, the last
  std::vector<int32_t> all((size_t)rows);
  for (int64_t r = 0; r < rows; ++r) all[(size_t)r] = (int32_t)r;
  out.push_back(all);                                  // every row, in order
  std::vector<int32_t> some;
  for (int64_t r = rows - 1; r >= 0; --r) {
    if (rng.next() % 3 == 0) some.push_back((int32_t)r);  // about a third, descending
  }
  out.push_back(some);
  std::vector<int32_t> dup;
  for (int i = 0; i < 7; ++i) dup.push_back((int32_t)(rng.next() % (uint64_t)rows));
  dup.push_back(dup[0]);                               // duplicates, in random order
  dup.push_back(dup[0]);
  out.push_back(dup);
  return out;
}

std::string describe(const Kernels& k, DType t, int64_t rows, int64_t cols, size_t n_rows) {
  return std::string(k.name) + " " + dtype_name(t) + " rows=" + std::to_string(rows) +
         " cols=" + std::to_string(cols) + " n_rows=" + std::to_string(n_rows);
}

const int64_t kRows[] = {1, 3, 8, 37};
const int64_t kFloatCols[] = {1, 7, 8, 9, 33, 100, 257, 1000, 2100};
const int64_t kQuantCols[] = {32, 96, 160, 2080};

// Tolerances in units of FLT_EPSILON * Σ|terms| of one output, as in gemm_test.cpp: gemv_rows
// is gemm with n = 1 (cols products summed in some order; q8_0: exact block sums, one rounding
// per block scale and per block product, nb block terms; i8r: plus the scale). axpy_rows adds
// n_rows terms, each the product of h with a dequantised weight (at most two roundings; the
// SIMD variants fold h * scale first, a different single rounding), to the start value.
double gemv_units(DType t, int64_t cols) {
  return t == DType::kQ8_0 ? (double)cols / 32 + 16.0 : (double)cols + 9.0;
}
double axpy_units(size_t n_rows) { return 2.0 * (double)n_rows + 4.0; }

// Calls f(w, subset, x, h, y0) over the shape grid of sparse type t.
template <class F>
void for_each_case(DType t, const F& f) {
  Rng rng(2000 + (uint64_t)t);
  const bool q = t == DType::kQ8_0;
  const int64_t* cols_list = q ? kQuantCols : kFloatCols;
  const size_t ncols = q ? std::size(kQuantCols) : std::size(kFloatCols);
  for (int64_t rows : kRows) {
    for (size_t ci = 0; ci < ncols; ++ci) {
      const int64_t cols = cols_list[ci];
      const std::vector<uint8_t> buf = random_weights(t, rows, cols, rng);
      const MatView w{t, rows, cols, buf.data()};
      std::vector<float> x((size_t)cols), y0((size_t)cols);
      for (auto& v : x) v = rng.uniform();
      for (auto& v : y0) v = rng.uniform();
      for (const std::vector<int32_t>& sub : subsets(rows, rng)) {
        std::vector<float> h(sub.size());
        for (auto& v : h) v = 4.0f * rng.uniform();
        f(w, sub, x, h, y0);
      }
    }
  }
}

TEST_CASE("gemv_rows: every variant equals the exact dot of each active row") {
  for (const Kernels* k : variants()) {
    for (DType t : kSparseTypes) {
      for_each_case(t, [&](const MatView& w, const std::vector<int32_t>& sub, const std::vector<float>& x,
                           const std::vector<float>&, const std::vector<float>&) {
        // q8_0 multiplies x quantised to q8_0 (kernels.h); the reference does the same.
        std::vector<BlockQ8_0> xq;
        if (t == DType::kQ8_0) {
          xq.resize((size_t)(w.cols / 32));
          quantize_row_q8_0(x.data(), xq.data(), w.cols);
        }
        std::vector<float> y(sub.size() + 1, -7.5f);  // one past the end must stay untouched
        k->gemv_rows(w, sub.data(), (int64_t)sub.size(), x.data(), y.data());
        REQUIRE(y[sub.size()] == -7.5f);
        for (size_t j = 0; j < sub.size(); ++j) {
          double sum = 0, mag = 0;
          for (int64_t c = 0; c < w.cols; ++c) {
            double xc = x[(size_t)c];
            if (t == DType::kQ8_0) xc = (double)fp16_to_fp32(xq[(size_t)(c / 32)].d) * xq[(size_t)(c / 32)].qs[c % 32];
            const double term = weight(w, sub[j], c) * xc;
            sum += term;
            mag += std::fabs(term);
          }
          const double err = std::fabs((double)y[j] - sum);
          if (!(err <= gemv_units(t, w.cols) * FLT_EPSILON * mag)) {
            FAIL(describe(*k, t, w.rows, w.cols, sub.size()), " j=", j, " got ", y[j], " want ", sum);
          }
        }
      });
    }
  }
}

TEST_CASE("gemv_rows: every variant matches gemm on the same rows") {
  // The active rows' results are those of a gemm with one vector, up to reassociation.
  for (const Kernels* k : variants()) {
    for (DType t : kSparseTypes) {
      for_each_case(t, [&](const MatView& w, const std::vector<int32_t>& sub, const std::vector<float>& x,
                           const std::vector<float>&, const std::vector<float>&) {
        std::vector<float> y(sub.size()), full((size_t)w.rows);
        k->gemv_rows(w, sub.data(), (int64_t)sub.size(), x.data(), y.data());
        k->gemm(w, x.data(), w.cols, 1, full.data(), w.rows);
        for (size_t j = 0; j < sub.size(); ++j) {
          double mag = 0;
          for (int64_t c = 0; c < w.cols; ++c) mag += std::fabs(weight(w, sub[j], c) * x[(size_t)c]);
          // q8_0 activations are within half a quantisation step of x, so mag bounds them too.
          const double err = std::fabs((double)y[j] - full[(size_t)sub[j]]);
          CHECK_MESSAGE(err <= 2 * gemv_units(t, w.cols) * FLT_EPSILON * 1.01 * mag,
                        describe(*k, t, w.rows, w.cols, sub.size()), " j=", j);
        }
      });
    }
  }
}

TEST_CASE("axpy_rows: every variant adds the exact weighted sum of the active rows") {
  for (const Kernels* k : variants()) {
    for (DType t : kSparseTypes) {
      for_each_case(t, [&](const MatView& w, const std::vector<int32_t>& sub, const std::vector<float>& x,
                           const std::vector<float>& h, const std::vector<float>& y0) {
        std::vector<float> y(y0);
        y.push_back(-7.5f);  // one past the end must stay untouched
        k->axpy_rows(w, sub.data(), h.data(), (int64_t)sub.size(), y.data());
        REQUIRE(y[(size_t)w.cols] == -7.5f);
        for (int64_t c = 0; c < w.cols; ++c) {
          double sum = y0[(size_t)c], mag = std::fabs(y0[(size_t)c]);
          for (size_t j = 0; j < sub.size(); ++j) {
            const double term = (double)h[j] * weight(w, sub[j], c);
            sum += term;
            mag += std::fabs(term);
          }
          const double err = std::fabs((double)y[(size_t)c] - sum);
          if (!(err <= axpy_units(sub.size()) * FLT_EPSILON * mag)) {
            FAIL(describe(*k, t, w.rows, w.cols, sub.size()), " c=", c, " got ", y[(size_t)c], " want ", sum);
          }
        }
        if (sub.empty()) CHECK(std::memcmp(y.data(), y0.data(), y0.size() * sizeof(float)) == 0);
      });
    }
  }
}

TEST_CASE("sparse: results do not depend on the thread count") {
  // Big enough to go to the team (n_rows * cols above 64k weights); each output is computed by
  // one thread in a fixed order, so 1 and 2 threads give the same bits.
  Rng rng(23);
  for (const Kernels* k : variants()) {
    for (DType t : kSparseTypes) {
      const int64_t rows = 700, cols = 2080;
      const std::vector<uint8_t> buf = random_weights(t, rows, cols, rng);
      const MatView w{t, rows, cols, buf.data()};
      std::vector<int32_t> sub;
      for (int64_t r = 0; r < rows; ++r) {
        if (rng.next() % 2 == 0) sub.push_back((int32_t)r);
      }
      std::vector<float> x((size_t)cols), h(sub.size());
      for (auto& v : x) v = rng.uniform();
      for (auto& v : h) v = rng.uniform();
      std::vector<float> g[2], a[2];
      for (int threads = 1; threads <= 2; ++threads) {
        set_num_threads(threads);
        g[threads - 1].assign(sub.size(), 0.0f);
        a[threads - 1].assign((size_t)cols, 0.5f);
        k->gemv_rows(w, sub.data(), (int64_t)sub.size(), x.data(), g[threads - 1].data());
        k->axpy_rows(w, sub.data(), h.data(), (int64_t)sub.size(), a[threads - 1].data());
      }
      CHECK_MESSAGE(g[0] == g[1], k->name, " ", dtype_name(t), " gemv_rows");
      CHECK_MESSAGE(a[0] == a[1], k->name, " ", dtype_name(t), " axpy_rows");
    }
  }
  set_num_threads(0);
}

TEST_CASE("sparse: the supported types are the documented ones") {
  for (DType t : kSparseTypes) CHECK(sparse_supports(t));
  CHECK_FALSE(sparse_supports(DType::kQ4_0));
  CHECK_FALSE(sparse_supports(DType::kI1R));
  for (DType t : kWeightTypes) CHECK(gemm_supports(t));
  CHECK_FALSE(gemm_supports(DType::kQ8_1));
}

}  // namespace
}  // namespace rwkv::kern::test
