// The kernel interface: every matrix product of the engine goes through this table.
//
//   const kern::Kernels& k = kern::kernels();
//   kern::MatView w{DType::kF16, rows, cols, data};
//   k.gemm(w, x, /*ldx=*/cols, /*n=*/1, y, /*ldy=*/rows);   // y = W x
//
// The implementation (scalar reference, AVX-512, AVX2+FMA+F16C with or without AVX-VNNI, NEON)
// is chosen once at start-up from the CPU's features (for AVX-512 also the OS's support of the
// zmm state) and checked against the scalar reference with a known-answer test;
// RWKV_EDGE_KERNELS=scalar forces the reference (RWKV_EDGE_KERNELS=avx2, avx2-vnni, avx512 a
// given variant, for comparisons). Callers never name an ISA.
//
// Thread-safety: the table is immutable after the first call to kernels(). Functions may be
// called from several threads at once; gemm parallelises its outer row loop over a persistent
// team of set_num_threads() threads (the caller included). One gemm uses the team at a time; a
// concurrent one runs on its caller's thread alone.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/common/dtype.h"

namespace rwkv::kern {

// A row-major weight matrix W[rows, cols] in one of the weight types (f32, f16, q4_0, q4_1,
// q5_0, q5_1, q8_0, i8r, i1r). Row r starts at data + r * row_bytes(); quantised rows are whole
// blocks; i8r / i1r rows start with their f32 scale (dtype.h).
struct MatView {
  DType type = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;
  size_t row_bytes() const { return dtype_row_bytes(type, cols); }
  const uint8_t* row(int64_t r) const { return static_cast<const uint8_t*>(data) + (size_t)r * row_bytes(); }
};

struct Kernels {
  const char* name;  // "scalar", "avx2", "avx2-vnni", "avx512", "neon"

  // Y[n, rows] = X[n, cols] · W[rows, cols]^T, i.e. y_t = W x_t for each of n vectors.
  // X rows are `ldx` floats apart, Y rows `ldy` floats apart. Any n >= 1.
  // Numerics: f32 and f16 weights multiply f32 activations with f32 accumulation; each variant
  // sums in its own order (lanes of 8 or 16, tiles, column spans), so variants agree with the
  // scalar reference to within float reassociation, not bit for bit (for a given variant and n
  // the order, and so the result, does not depend on the thread count). Quantised
  // weights multiply activations quantised per block of 32 the way ggml does (q8_1 for
  // q4_1/q5_1, q8_0 otherwise), so results agree with rwkv.cpp / llama.cpp.
  // The row-scaled types keep the activations in f32 (choice (a) of issue #3, as RWKV-Lite's
  // INT8 does): y = s_r * Σ_k q_rk x_k for i8r, y = s_r * Σ_k ±x_k for i1r, each sum in f32.
  // Quantising the activations per block of 32 instead (choice (b)) would let batches use the
  // integer dot products (AVX-VNNI, sdot) and cost less compute per weight; (a) is as fast for a
  // matrix-vector product (both are bound by memory) and slower for batches: figures in
  // docs/PERFORMANCE.md.
  // REQUIRES: cols % 32 == 0 for the block types (q4_0 .. q8_0); any cols for f32, f16, i8r,
  // i1r; X, Y do not overlap.
  void (*gemm)(const MatView& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy);

  // y[n] = dequantised row r of w, for embedding look-ups.
  void (*get_row)(const MatView& w, int64_t r, float* y);

  // Added entries: row conversions the engine may use on its own, exposed mainly so tests can
  // check each variant bit for bit against the portable code in engine/common.
  //
  // y[n] = half -> float of x[n]; exact, same as fp16_to_fp32() (F16C / NEON where available).
  void (*f16_to_f32)(const uint16_t* x, float* y, int64_t n);
  // y[n] = float -> half of x[n], round to nearest even; same bits as fp32_to_fp16() except
  // that a NaN's payload may differ (it stays a NaN of the same sign).
  void (*f32_to_f16)(const float* x, uint16_t* y, int64_t n);
  // The activation quantisers gemm uses: same bits as quantize_row_q8_0 / quantize_row_q8_1
  // in dtype.h for finite input. REQUIRES: n % 32 == 0.
  void (*quantize_q8_0)(const float* x, BlockQ8_0* y, int64_t n);
  void (*quantize_q8_1)(const float* x, BlockQ8_1* y, int64_t n);

  // Sparse FFN products (issue #3): only the active neurons' rows of a weight matrix are read.
  // Weight types: f32, f16, q8_0, i8r. `rows` holds n_rows indices in [0, w.rows), in any order;
  // duplicates are allowed (a duplicated row is simply used twice). n_rows == 0 does nothing.
  // Work above a few tens of thousands of weights is shared with the thread team; each output
  // is computed by one thread in a fixed order, so the thread count does not change the bits.
  //
  // y[j] = W[rows[j], :] · x for j < n_rows: the channel-mix key's active rows. Numerics as
  // gemm with n = 1 (q8_0 quantises x to q8_0 blocks first, like gemm; i8r keeps x in f32).
  // REQUIRES: x has w.cols floats, y n_rows; cols % 32 == 0 for q8_0; x, y do not overlap.
  void (*gemv_rows)(const MatView& w, const int32_t* rows, int64_t n_rows, const float* x, float* y);
  // y[0..cols) += Σ_j h[j] * W[rows[j], :] for j < n_rows: the channel-mix value matrix stored
  // transposed (neuron-major), so neuron i's output column is row i. Per output element the
  // terms are added in j order, in f32; the weights are used dequantised (f32 activations h).
  // REQUIRES: h has n_rows floats, y w.cols; cols % 32 == 0 for q8_0; y overlaps neither h nor W.
  void (*axpy_rows)(const MatView& w, const int32_t* rows, const float* h, int64_t n_rows, float* y);

  // The v5/v6 WKV recurrence of one head for one token (rwkv-math.md §5), S x S state
  // st[j][i] (key j, value i), updated in place:
  //   y[i] = Σ_j (r[j] u[j] k[j]) v[i] + r[j] st[j][i],   then   st[j][i] = k[j] v[i] + w[j] st[j][i].
  // Each y[i] sums over j in order, in f32; variants may fuse multiply-adds, so they agree with
  // the scalar reference within float rounding, not bit for bit. Any S >= 1.
  // REQUIRES: y overlaps none of the inputs or the state.
  void (*wkv5)(int64_t S, float* st, const float* r, const float* k, const float* v, const float* w, const float* u,
               float* y);
};

// The best implementation for this CPU (or the one RWKV_EDGE_KERNELS names, e.g. scalar).
const Kernels& kernels();
// The scalar reference; always available. Tests compare every variant with it.
const Kernels& scalar_kernels();
// Every implementation compiled into this binary that the CPU can run (scalar first).
int available_kernels(const Kernels** out, int max);

// Is `t` a weight type of gemm (every type but q8_1) / of gemv_rows and axpy_rows (f32, f16,
// q8_0, i8r)?
bool gemm_supports(DType t);
bool sparse_supports(DType t);

// Threads used by gemm (the caller included). n <= 0 means the default: physical cores.
void set_num_threads(int n);
int num_threads();

// How long (microseconds) an idle team thread polls for the next job before it sleeps. Short
// polls suit shared machines (a polling worker takes CPU from other processes); long ones suit
// a dedicated server, whose batched steps have serial gaps between parallel regions longer than
// 30 us (each sleep makes the next job's caller pay a futex wake-up). us < 0 restores the
// default. Thread-safe; applies from a worker's next idle period.
constexpr int64_t kDefaultPollUs = 30;
void set_poll_us(int64_t us);
int64_t poll_us();

// The engine's own row work (WKV heads, per-sequence loops of a batched step) on the gemm team:
// fn(ctx, begin, end) over contiguous chunks covering [0, count), on up to num_threads()
// threads, the caller included; returns when every chunk is done. Each index is processed once,
// by one thread, so results that depend only on the index do not depend on the thread count.
// Runs on the caller alone when count < 2, with one thread, or when the team is busy with
// another caller's job. fn must not throw.
using RangeFn = void (*)(void* ctx, int64_t begin, int64_t end);
void parallel_ranges(int64_t count, RangeFn fn, void* ctx);

// f(i) for every i in [0, count), shared out as parallel_ranges() does.
template <class F>
void parallel_each(int64_t count, const F& f) {
  parallel_ranges(count, [](void* ctx, int64_t begin, int64_t end) {
    const F& g = *static_cast<const F*>(ctx);
    for (int64_t i = begin; i < end; ++i) g(i);
  }, const_cast<void*>(static_cast<const void*>(&f)));
}

}  // namespace rwkv::kern
