// Tests for kernels/: every compiled gemm variant against the scalar reference, and the scalar
// reference against an independent double-precision evaluation of the ggml formula.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "kernels/kernels.h"
#include "tests/kernels/kernel_test_util.h"

namespace rwkv::kern::test {
namespace {

// Tolerances, in units of FLT_EPSILON * Σ|terms| of one output (the first-order bound on the
// error of a float sum of those terms). A wrong index, nibble or scale is off by a sizeable
// fraction of Σ|terms|, far above these.
//
// f32 / f16: `cols` rounded products summed left to right (scalar) or in 8 lanes plus a final
// tree (SIMD); each is within (cols + 8) of the exact sum, so two variants within twice that.
double float_tol_units(int64_t cols) { return (double)cols + 8.0; }
// Quantised: the integer block sums are exact in every variant; what remains is one rounding of
// the scale product d_w * d_x, one of the product with the block sum (per lane in SIMD), and
// the f32 sum over nb blocks (8 lanes, then a tree, in SIMD), plus the m_w * s_x terms.
double quant_tol_units(int64_t nb) { return (double)nb + 16.0; }

// i8r / i1r: a float sum of `cols` products q x (or ±x, exact) like f32, then one rounding for
// the multiplication by the row scale.
double tol_units(DType t, int64_t cols) {
  if (is_row_scaled(t)) return float_tol_units(cols) + 1.0;
  return is_quantised(t) ? quant_tol_units(cols / 32) : float_tol_units(cols);
}

// One gemm problem with strided X and Y, and its exact reference.
struct Problem {
  DType type;
  int64_t rows, cols, n, ldx, ldy;
  std::vector<uint8_t> wbuf;
  std::vector<float> x;
  std::vector<double> ref, mag;  // [n * rows]: exact value and Σ|terms| of each output

  MatView w() const { return MatView{type, rows, cols, wbuf.data()}; }
};

// Activations in [-1, 1), some vectors scaled by 100, and (when cols >= 64) one all-zero block
// in vector 1 to exercise the d = 0 path of the activation quantiser.
std::vector<float> random_activations(int64_t n, int64_t cols, int64_t ldx, Rng& rng) {
  std::vector<float> x((size_t)(n * ldx), 1e30f);  // gaps hold junk the kernels must not read
  for (int64_t v = 0; v < n; ++v) {
    const float scale = v % 3 == 2 ? 100.0f : 1.0f;
    for (int64_t c = 0; c < cols; ++c) x[v * ldx + c] = scale * rng.uniform();
  }
  if (n > 1 && cols >= 64) {
    for (int64_t c = 32; c < 64; ++c) x[1 * ldx + c] = 0.0f;
  }
  return x;
}

// The ggml formula evaluated in double: f32/f16 Σ w x; quantised Σ_blocks Σ_j (d_w q_j)(d_x xq_j)
// [+ m_w s_x], with xq, d_x, s_x from dtype.h's quantisers (those define the activations).
void compute_reference(Problem& p) {
  p.ref.assign((size_t)(p.n * p.rows), 0.0);
  p.mag.assign(p.ref.size(), 0.0);
  const MatView w = p.w();
  const int64_t nb = p.cols / 32;
  for (int64_t v = 0; v < p.n; ++v) {
    const float* xv = p.x.data() + v * p.ldx;
    std::vector<BlockQ8_0> q0;
    std::vector<BlockQ8_1> q1;
    if (is_quantised(p.type)) {
      if (has_min(p.type)) {
        q1.resize((size_t)nb);
        quantize_row_q8_1(xv, q1.data(), p.cols);
      } else {
        q0.resize((size_t)nb);
        quantize_row_q8_0(xv, q0.data(), p.cols);
      }
    }
    for (int64_t r = 0; r < p.rows; ++r) {
      double sum = 0, mag = 0;
      const uint8_t* row = w.row(r);
      if (is_row_scaled(p.type)) {
        for (int64_t c = 0; c < p.cols; ++c) {
          const double term = row_scaled_value(p.type, row, c) * xv[c];
          sum += term;
          mag += std::fabs(term);
        }
      } else if (p.type == DType::kF32 || p.type == DType::kF16) {
        for (int64_t c = 0; c < p.cols; ++c) {
          double wc;
          if (p.type == DType::kF32) {
            float f;
            std::memcpy(&f, row + 4 * c, 4);
            wc = f;
          } else {
            wc = half(row + 2 * c);
          }
          sum += wc * xv[c];
          mag += std::fabs(wc * xv[c]);
        }
      } else {
        const size_t bb = dtype_block_bytes(p.type);
        for (int64_t i = 0; i < nb; ++i) {
          const DecodedBlock b = decode_block(p.type, row + i * bb);
          const int8_t* xq = has_min(p.type) ? q1[(size_t)i].qs : q0[(size_t)i].qs;
          const double dx = fp16_to_fp32(has_min(p.type) ? q1[(size_t)i].d : q0[(size_t)i].d);
          for (int j = 0; j < 32; ++j) {
            const double term = (b.d * b.q[j]) * (dx * xq[j]);
            sum += term;
            mag += std::fabs(term);
          }
          if (has_min(p.type)) {
            const double off = b.m * fp16_to_fp32(q1[(size_t)i].s);
            sum += off;
            mag += std::fabs(off);
          }
        }
      }
      p.ref[(size_t)(v * p.rows + r)] = sum;
      p.mag[(size_t)(v * p.rows + r)] = mag;
    }
  }
}

Problem make_problem(DType t, int64_t rows, int64_t cols, int64_t n, Rng& rng) {
  Problem p{t, rows, cols, n, cols + 3, rows + 5, {}, {}, {}, {}};
  p.wbuf = random_weights(t, rows, cols, rng);
  p.x = random_activations(n, cols, p.ldx, rng);
  compute_reference(p);
  return p;
}

constexpr float kSentinel = -12345.25f;

// Runs k.gemm on p; checks that the gaps between Y rows are untouched.
std::vector<float> run(const Kernels& k, const Problem& p) {
  std::vector<float> y((size_t)(p.n * p.ldy), kSentinel);
  k.gemm(p.w(), p.x.data(), p.ldx, p.n, y.data(), p.ldy);
  for (int64_t v = 0; v < p.n; ++v)
    for (int64_t r = p.rows; r < p.ldy; ++r) REQUIRE(y[(size_t)(v * p.ldy + r)] == kSentinel);
  return y;
}

std::string describe(const Kernels& k, const Problem& p) {
  return std::string(k.name) + " " + dtype_name(p.type) + " rows=" + std::to_string(p.rows) +
         " cols=" + std::to_string(p.cols) + " n=" + std::to_string(p.n);
}

const int64_t kRows[] = {1, 2, 3, 4, 5, 7, 8, 13, 31, 64, 67};
// 1000 and 2080 exceed the column spans of the SIMD kernels (n > 4 in AVX2, n > 8 in AVX-512
// goes span by span); 16, 17 and 65 straddle the 16-lane vectors and 64-weight steps of AVX-512.
const int64_t kFloatCols[] = {1, 7, 8, 9, 16, 17, 33, 65, 100, 256, 1000};
const int64_t kQuantCols[] = {32, 64, 96, 160, 512, 2080};
// Every vector-group remainder of the 4- and 8-vector tiles, and two groups (16).
const int64_t kNs[] = {1, 2, 3, 5, 8, 9, 13, 16};

// Calls f(problem) over the shape grid for type t.
template <class F>
void for_each_problem(DType t, const F& f) {
  Rng rng(1000 + (uint64_t)t);
  const bool q = is_quantised(t);
  const int64_t* cols = q ? kQuantCols : kFloatCols;
  const size_t ncols = q ? std::size(kQuantCols) : std::size(kFloatCols);
  for (int64_t rows : kRows)
    for (size_t ci = 0; ci < ncols; ++ci)
      for (int64_t n : kNs) f(make_problem(t, rows, cols[ci], n, rng));
}

TEST_CASE("gemm: the scalar reference equals the ggml formula evaluated in double") {
  const Kernels& k = scalar_kernels();
  for (DType t : kWeightTypes) {
    for_each_problem(t, [&](const Problem& p) {
      const std::vector<float> y = run(k, p);
      const double units = tol_units(t, p.cols);
      for (int64_t v = 0; v < p.n; ++v) {
        for (int64_t r = 0; r < p.rows; ++r) {
          const size_t i = (size_t)(v * p.rows + r);
          const double err = std::fabs((double)y[(size_t)(v * p.ldy + r)] - p.ref[i]);
          if (!(err <= units * FLT_EPSILON * p.mag[i])) {
            FAIL(describe(k, p), " v=", v, " r=", r, " got ", y[(size_t)(v * p.ldy + r)],
                 " want ", p.ref[i]);
          }
        }
      }
    });
  }
}

TEST_CASE("gemm: every compiled variant matches the scalar reference") {
  const std::vector<const Kernels*> ks = variants();
  REQUIRE(ks.size() >= 1);
  CHECK(std::string(ks[0]->name) == "scalar");
  for (DType t : kWeightTypes) {
    for_each_problem(t, [&](const Problem& p) {
      const std::vector<float> y_ref = run(scalar_kernels(), p);
      // Two results each within `units` of the exact value are within 2 * units of each other.
      const double units = 2.0 * tol_units(t, p.cols);
      for (const Kernels* k : ks) {
        const std::vector<float> y = run(*k, p);
        for (int64_t v = 0; v < p.n; ++v) {
          for (int64_t r = 0; r < p.rows; ++r) {
            const size_t iy = (size_t)(v * p.ldy + r), im = (size_t)(v * p.rows + r);
            const double err = std::fabs((double)y[iy] - y_ref[iy]);
            if (!(err <= units * FLT_EPSILON * p.mag[im])) {
              FAIL(describe(*k, p), " v=", v, " r=", r, " got ", y[iy], " scalar ", y_ref[iy]);
            }
          }
        }
      }
    });
  }
}

TEST_CASE("gemm: prefill-sized batches (many groups of 8 vectors) match the scalar reference") {
  // The AVX-512 q8_0 tile keeps up to 16 groups' accumulators per decoded run of weights: 137
  // vectors take two passes over the groups, 70 one with a partial last group.
  for (DType t : {DType::kQ8_0, DType::kF16}) {
    Rng rng(4242 + (uint64_t)t);
    for (int64_t rows : {5, 67}) {
      for (int64_t cols : {96, 2080}) {
        for (int64_t n : {24, 70, 137}) {
          const Problem p = make_problem(t, rows, cols, n, rng);
          const std::vector<float> y_ref = run(scalar_kernels(), p);
          const double units = 2.0 * tol_units(t, p.cols);
          for (const Kernels* k : variants()) {
            const std::vector<float> y = run(*k, p);
            for (int64_t v = 0; v < p.n; ++v) {
              for (int64_t r = 0; r < p.rows; ++r) {
                const size_t iy = (size_t)(v * p.ldy + r), im = (size_t)(v * p.rows + r);
                if (!(std::fabs((double)y[iy] - y_ref[iy]) <= units * FLT_EPSILON * p.mag[im])) {
                  FAIL(describe(*k, p), " v=", v, " r=", r, " got ", y[iy], " scalar ", y_ref[iy]);
                }
              }
            }
          }
        }
      }
    }
  }
}

TEST_CASE("gemm: results do not depend on the thread count") {
  // Each output row is computed by one thread in a fixed order, so 1 and 2 threads give the
  // same bits. The shape is above the size where the row loop goes parallel.
  Rng rng(7);
  for (const Kernels* k : variants()) {
    for (DType t : kWeightTypes) {
      for (int64_t n : {1, 5}) {
        const Problem p = make_problem(t, 261, 512, n, rng);
        set_num_threads(1);
        const std::vector<float> y1 = run(*k, p);
        set_num_threads(2);
        const std::vector<float> y2 = run(*k, p);
        CHECK_MESSAGE(std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(float)) == 0,
                      describe(*k, p));
      }
    }
  }
  set_num_threads(0);
}

TEST_CASE("gemm: concurrent and back-to-back calls give the single-threaded bits") {
  // One gemm at a time uses the kernels' thread team; a concurrent one computes on its caller's
  // thread. Hundreds of calls in a row, some after a pause long enough for the team's workers to
  // go to sleep, exercise the hand-over between jobs. Every result must equal a 1-thread call.
  Rng rng(13);
  const Kernels& k = kernels();
  for (DType t : {DType::kF16, DType::kQ8_0}) {
    const Problem p = make_problem(t, 261, 512, 9, rng);
    set_num_threads(1);
    const std::vector<float> want = run(k, p);
    set_num_threads(3);  // more than this machine may have: the job must finish all the same
    std::atomic<int> mismatches{0};
    std::vector<std::thread> callers;
    for (int c = 0; c < 3; ++c) {
      callers.emplace_back([&, c] {
        std::vector<float> y(want.size());
        for (int i = 0; i < 150; ++i) {
          if (i % 50 == 49) std::this_thread::sleep_for(std::chrono::milliseconds(2 + c));
          k.gemm(p.w(), p.x.data(), p.ldx, p.n, y.data(), p.ldy);
          for (int64_t v = 0; v < p.n; ++v) {
            const size_t at = (size_t)(v * p.ldy), bytes = (size_t)p.rows * sizeof(float);
            if (std::memcmp(&y[at], &want[at], bytes) != 0) ++mismatches;
          }
        }
      });
    }
    for (std::thread& th : callers) th.join();
    CHECK_MESSAGE(mismatches.load() == 0, describe(k, p));
  }
  set_num_threads(0);
}

TEST_CASE("get_row: every variant returns the dequantised row") {
  Rng rng(11);
  for (const Kernels* k : variants()) {
    for (DType t : kWeightTypes) {
      const int64_t rows = 5, cols = 96;
      const std::vector<uint8_t> buf = random_weights(t, rows, cols, rng);
      const MatView w{t, rows, cols, buf.data()};
      std::vector<float> y((size_t)cols);
      for (int64_t r = 0; r < rows; ++r) {
        k->get_row(w, r, y.data());
        for (int64_t c = 0; c < cols; ++c) {
          float want;
          if (t == DType::kF32) {
            std::memcpy(&want, w.row(r) + 4 * c, 4);
          } else if (t == DType::kF16) {
            want = (float)half(w.row(r) + 2 * c);
          } else if (is_row_scaled(t)) {
            // s * q is s times a small integer: exact in f32 only up to one rounding, which
            // dequantize_row does the same way (one f32 multiplication).
            want = (float)row_scaled_value(t, w.row(r), c);
          } else {
            const DecodedBlock b = decode_block(t, w.row(r) + (size_t)(c / 32) * dtype_block_bytes(t));
            // q * d is exact in f32 (at most 8 + 11 significant bits); + m rounds once, in f32.
            want = (float)b.q[c % 32] * (float)b.d + (float)b.m;
          }
          REQUIRE_MESSAGE(y[(size_t)c] == want, k->name, " ", dtype_name(t), " r=", r, " c=", c);
        }
      }
    }
  }
}

TEST_CASE("gemm and dequantize_row agree: W e_c is column c of the dequantised W") {
  // With a unit vector the only product is one weight: for f32, f16, i8r and i1r the result is
  // that weight exactly (s * (q * 1) and s * (±1) are the dequantiser's single rounding). Block
  // types quantise e_c itself (d = 1/127 rounded to fp16, relative error < 2^-11), and the _1
  // types add m * s_x with s_x rounded to fp16 too, which can cancel against d * q: a relative
  // bound plus an absolute 2e-4 (|m| <= 0.1 here; a wrong weight is off by ~0.01 or more).
  Rng rng(17);
  for (const Kernels* k : variants()) {
    for (DType t : kWeightTypes) {
      const int64_t rows = 9, cols = is_quantised(t) ? 96 : 77;
      const std::vector<uint8_t> buf = random_weights(t, rows, cols, rng);
      const MatView w{t, rows, cols, buf.data()};
      std::vector<float> deq((size_t)(rows * cols)), x((size_t)cols), y((size_t)rows);
      for (int64_t r = 0; r < rows; ++r) dequantize_row(t, w.row(r), deq.data() + r * cols, cols);
      for (int64_t c : {int64_t{0}, int64_t{1}, int64_t{8}, cols / 2, cols - 1}) {
        std::fill(x.begin(), x.end(), 0.0f);
        x[(size_t)c] = 1.0f;
        k->gemm(w, x.data(), cols, 1, y.data(), rows);
        for (int64_t r = 0; r < rows; ++r) {
          const float want = deq[(size_t)(r * cols + c)];
          if (is_quantised(t)) {
            CHECK_MESSAGE(std::fabs(y[(size_t)r] - want) <= 2e-3f * std::fabs(want) + 2e-4f,
                          k->name, " ", dtype_name(t), " r=", r, " c=", c);
          } else {
            CHECK_MESSAGE(y[(size_t)r] == want, k->name, " ", dtype_name(t), " r=", r, " c=", c);
          }
        }
      }
    }
  }
}

TEST_CASE("dispatch: the chosen table is one of the available ones") {
  const Kernels& k = kernels();
  bool found = false;
  for (const Kernels* v : variants()) found = found || v == &k;
  CHECK(found);
  CHECK(std::string(scalar_kernels().name) == "scalar");
  const Kernels* one[1];
  CHECK(available_kernels(one, 1) == 1);
  CHECK(one[0] == &scalar_kernels());
}

TEST_CASE("threads: set_num_threads overrides the default, <= 0 restores it") {
  const int def = num_threads();
  CHECK(def >= 1);
  set_num_threads(3);
  CHECK(num_threads() == 3);
  set_num_threads(-1);
  CHECK(num_threads() == def);
  set_num_threads(0);
  CHECK(num_threads() == def);
}

TEST_CASE("threads: set_poll_us sets the idle poll time, < 0 restores the default; results unchanged") {
  CHECK(poll_us() == kDefaultPollUs);
  Rng rng(99);
  const Problem p = make_problem(DType::kQ8_0, 67, 96, 9, rng);
  set_num_threads(2);
  const std::vector<float> y0 = run(kernels(), p);
  for (int64_t us : {0, 2000}) {
    set_poll_us(us);
    CHECK(poll_us() == us);
    // Jobs with idle gaps longer than the poll time, and back to back.
    for (int i = 0; i < 3; ++i) {
      if (i == 1) std::this_thread::sleep_for(std::chrono::milliseconds(3));
      CHECK(run(kernels(), p) == y0);
    }
  }
  set_poll_us(-5);
  CHECK(poll_us() == kDefaultPollUs);
  set_num_threads(0);
}

}  // namespace
}  // namespace rwkv::kern::test
