// AArch64 Advanced SIMD kernels (every AArch64 core has it: Cortex-A53, A55, A72, A76, ...).
// ARMv8.0 instructions, plus the dot-product extension (sdot) in the quantised block dot when
// the compiler targets it (__ARM_FEATURE_DOTPROD); no fp16 arithmetic. i8r and i1r keep f32
// activations (kernels.h), so they use the float path and no integer dot.
//
// Same tiling as the AVX2 variant (run_tiles in internal.h): tiles of a few rows, vectors a few
// at a time, column spans when there are several vector groups.
//
// Numerics: f32/f16 products are accumulated in 4 f32 lanes (a reassociation of the scalar
// sum). Quantised blocks compute the exact integer dot in int16/int32 lanes, reduce it to the
// block's sumi and add sumi * (d_w * d_x) [+ m_w * s_x] in block order: the scalar reference's
// float operations in its order (equal up to the compiler's choice of fused multiply-adds).
#if defined(__aarch64__)

#include <arm_neon.h>

#include <cassert>
#include <cstring>

#include "engine/common/dtype.h"
#include "engine/common/fp16.h"
#include "kernels/internal.h"

namespace rwkv::kern::detail {
namespace {

// --- float weights ----------------------------------------------------------------------------

// How float_tile reads a row: 4 consecutive weights as f32 (k a multiple of 4), one weight
// (for tails), the byte offset of weight k and the weights per cache line (for prefetches),
// and the factor a row's sum is multiplied by (1, or the i8r / i1r row scale).
struct F32Weights {
  static constexpr int kPerLine = 16;
  static size_t offset(int64_t k) { return 4 * (size_t)k; }
  static float scale(const uint8_t*) { return 1.0f; }
  static float32x4_t load(const uint8_t* row, int64_t k) {
    return vld1q_f32(reinterpret_cast<const float*>(row) + k);
  }
  static float at(const uint8_t* row, int64_t k) { return reinterpret_cast<const float*>(row)[k]; }
};

struct F16Weights {
  static constexpr int kPerLine = 32;
  static size_t offset(int64_t k) { return 2 * (size_t)k; }
  static float scale(const uint8_t*) { return 1.0f; }
  static float32x4_t load(const uint8_t* row, int64_t k) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const uint16_t*>(row) + k)));
  }
  static float at(const uint8_t* row, int64_t k) {
    uint16_t h;
    std::memcpy(&h, row + 2 * k, 2);
    return fp16_to_fp32(h);
  }
};

// i8r: int8 values widened to f32; the row scale multiplies the finished sum. Four bytes are
// read with memcpy so that the last row's last group never reads past the matrix.
struct I8RWeights {
  static constexpr int kPerLine = 64;
  static size_t offset(int64_t k) { return 4 + (size_t)k; }
  static float scale(const uint8_t* row) { return row_scale(row); }
  static float32x4_t load(const uint8_t* row, int64_t k) {
    int32_t u;
    std::memcpy(&u, row + 4 + k, 4);
    const int16x8_t q16 = vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(u)));
    return vcvtq_f32_s32(vmovl_s16(vget_low_s16(q16)));
  }
  static float at(const uint8_t* row, int64_t k) { return (float)reinterpret_cast<const int8_t*>(row + 4)[k]; }
};

// i1r: bits k .. k+3 of the signs as ±1.0f lanes (set: +1).
struct I1RWeights {
  static constexpr int kPerLine = 512;
  static size_t offset(int64_t k) { return 4 + (size_t)k / 8; }
  static float scale(const uint8_t* row) { return row_scale(row); }
  static float32x4_t load(const uint8_t* row, int64_t k) {
    static const uint32_t kBits[4] = {1, 2, 4, 8};
    const uint32x4_t nib = vdupq_n_u32((uint32_t)(row[4 + k / 8] >> (k % 8)));
    return vbslq_f32(vtstq_u32(nib, vld1q_u32(kBits)), vdupq_n_f32(1.0f), vdupq_n_f32(-1.0f));
  }
  static float at(const uint8_t* row, int64_t k) { return (row[4 + k / 8] >> (k % 8)) & 1 ? 1.0f : -1.0f; }
};

// Y[v0+v][r0+r] (+)= W[r0+r, k0:k1] · X[v0+v, k0:k1] for r < R, v < V; stores when k0 == 0,
// adds otherwise. With V == 1 the k loop is unrolled twice to keep the FMA pipes busy.
template <class W, int R, int V>
void float_tile(const RowPtrs& w, int64_t r0, const float* x, int64_t ldx, int64_t v0, float* y,
                int64_t ldy, int64_t k0, int64_t k1) {
  constexpr int U = V == 1 ? 2 : 1;
  const uint8_t* wr[R];
  for (int r = 0; r < R; ++r) wr[r] = w(r0 + r);
  const float* xv[V];
  for (int v = 0; v < V; ++v) xv[v] = x + (v0 + v) * ldx;

  float32x4_t acc[U][R][V];
  for (int u = 0; u < U; ++u)
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < V; ++v) acc[u][r][v] = vdupq_n_f32(0.0f);

  int64_t k = k0;
  for (; k + 4 * U <= k1; k += 4 * U) {
    for (int u = 0; u < U; ++u) {
      float32x4_t wv[R];
      for (int r = 0; r < R; ++r) wv[r] = W::load(wr[r], k + 4 * u);
      for (int v = 0; v < V; ++v) {
        const float32x4_t xk = vld1q_f32(xv[v] + k + 4 * u);
        for (int r = 0; r < R; ++r) acc[u][r][v] = vfmaq_f32(acc[u][r][v], wv[r], xk);
      }
    }
  }
  for (; k + 4 <= k1; k += 4) {
    for (int r = 0; r < R; ++r) {
      const float32x4_t wv = W::load(wr[r], k);
      for (int v = 0; v < V; ++v) acc[0][r][v] = vfmaq_f32(acc[0][r][v], wv, vld1q_f32(xv[v] + k));
    }
  }
  for (int r = 0; r < R; ++r) {
    const float s = W::scale(wr[r]);
    for (int v = 0; v < V; ++v) {
      float32x4_t a = acc[0][r][v];
      for (int u = 1; u < U; ++u) a = vaddq_f32(a, acc[u][r][v]);
      float sum = vaddvq_f32(a);
      for (int64_t t = k; t < k1; ++t) sum += W::at(wr[r], t) * xv[v][t];
      float& out = y[(v0 + v) * ldy + r0 + r];
      out = k0 == 0 ? s * sum : out + s * sum;
    }
  }
}

// --- quantised weights ------------------------------------------------------------------------

// A block's 32 weights as two int8x16 halves (weights 0..15, 16..31).
struct Int8x32 {
  int8x16_t lo, hi;
};

inline Int8x32 unpack_nibbles(const uint8_t qs[16]) {
  const uint8x16_t raw = vld1q_u8(qs);
  return {vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(0x0f))), vreinterpretq_s8_u8(vshrq_n_u8(raw, 4))};
}

// 0xff in byte j where bit j of the little-endian qh is set, for j in 0..15 (lo) and 16..31 (hi).
struct Mask32 {
  uint8x16_t lo, hi;
};

inline Mask32 expand_bits(const uint8_t qh[4]) {
  static const uint8_t kBits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const uint8x16_t bits = vld1q_u8(kBits);
  const uint8x16_t lo = vcombine_u8(vdup_n_u8(qh[0]), vdup_n_u8(qh[1]));
  const uint8x16_t hi = vcombine_u8(vdup_n_u8(qh[2]), vdup_n_u8(qh[3]));
  return {vtstq_u8(lo, bits), vtstq_u8(hi, bits)};
}

struct Q4_0Weights {
  using Block = BlockQ4_0;
  static constexpr bool kMin = false;
  static Int8x32 decode(const Block& b) {
    Int8x32 q = unpack_nibbles(b.qs);
    return {vsubq_s8(q.lo, vdupq_n_s8(8)), vsubq_s8(q.hi, vdupq_n_s8(8))};
  }
};
struct Q4_1Weights {
  using Block = BlockQ4_1;
  static constexpr bool kMin = true;
  static Int8x32 decode(const Block& b) { return unpack_nibbles(b.qs); }
};
struct Q5_0Weights {
  using Block = BlockQ5_0;
  static constexpr bool kMin = false;
  // q - 16 with q = nib + 16 * bit: nib where the bit is set, nib | 0xf0 (== nib - 16) where not.
  static Int8x32 decode(const Block& b) {
    const Int8x32 q = unpack_nibbles(b.qs);
    const Mask32 m = expand_bits(b.qh);
    const uint8x16_t f0 = vdupq_n_u8(0xf0);
    return {vorrq_s8(q.lo, vreinterpretq_s8_u8(vbicq_u8(f0, m.lo))),
            vorrq_s8(q.hi, vreinterpretq_s8_u8(vbicq_u8(f0, m.hi)))};
  }
};
struct Q5_1Weights {
  using Block = BlockQ5_1;
  static constexpr bool kMin = true;
  static Int8x32 decode(const Block& b) {
    const Int8x32 q = unpack_nibbles(b.qs);
    const Mask32 m = expand_bits(b.qh);
    const uint8x16_t b4 = vdupq_n_u8(0x10);
    return {vorrq_s8(q.lo, vreinterpretq_s8_u8(vandq_u8(b4, m.lo))),
            vorrq_s8(q.hi, vreinterpretq_s8_u8(vandq_u8(b4, m.hi)))};
  }
};
struct Q8_0Weights {
  using Block = BlockQ8_0;
  static constexpr bool kMin = false;
  static Int8x32 decode(const Block& b) { return {vld1q_s8(b.qs), vld1q_s8(b.qs + 16)}; }
};

template <class Q>
using ActBlock = std::conditional_t<Q::kMin, BlockQ8_1, BlockQ8_0>;

// sumi = Σ_j w_j x_j of one block, exact. With the dot-product extension (ARMv8.2 sdot, when
// the compiler targets it, e.g. -march=armv8.2-a+dotprod) four products go into each int32
// lane; otherwise each int16 lane adds two products of at most 128 * 127 in magnitude (the
// activations stay within [-127, 127]), which fits.
inline int32_t block_dot(const Int8x32& w, const int8_t* xq) {
  const int8x16_t x0 = vld1q_s8(xq), x1 = vld1q_s8(xq + 16);
#if defined(__ARM_FEATURE_DOTPROD)
  return vaddvq_s32(vdotq_s32(vdotq_s32(vdupq_n_s32(0), w.lo, x0), w.hi, x1));
#endif
  int16x8_t p0 = vmull_s8(vget_low_s8(w.lo), vget_low_s8(x0));
  p0 = vmlal_high_s8(p0, w.lo, x0);
  int16x8_t p1 = vmull_s8(vget_low_s8(w.hi), vget_low_s8(x1));
  p1 = vmlal_high_s8(p1, w.hi, x1);
  return vaddvq_s32(vpadalq_s16(vpaddlq_s16(p0), p1));
}

// Y[v0+v][r0+r] (+)= the quantised dot over columns k0..k1 (whole blocks) for r < R, v < V,
// with the scalar reference's float operations in its order: a span continues the running sum
// of the previous one (stored in Y) rather than adding a separate partial sum.
template <class Q, int R, int V>
void quant_tile(const RowPtrs& w, int64_t r0, const ActBlock<Q>* xq, int64_t nb, int64_t v0,
                float* y, int64_t ldy, int64_t k0, int64_t k1) {
  using Block = typename Q::Block;
  const Block* wb[R];
  for (int r = 0; r < R; ++r) wb[r] = reinterpret_cast<const Block*>(w(r0 + r));
  float sum[R][V];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) sum[r][v] = k0 == 0 ? 0.0f : y[(v0 + v) * ldy + r0 + r];
  for (int64_t i = k0 / kQK; i < k1 / kQK; ++i) {
    Int8x32 wq[R];
    float dw[R];
    for (int r = 0; r < R; ++r) {
      wq[r] = Q::decode(wb[r][i]);
      dw[r] = fp16_to_fp32(wb[r][i].d);
    }
    for (int v = 0; v < V; ++v) {
      const ActBlock<Q>& xb = xq[(v0 + v) * nb + i];
      const float dx = fp16_to_fp32(xb.d);
      for (int r = 0; r < R; ++r) {
        sum[r][v] += (float)block_dot(wq[r], xb.qs) * (dw[r] * dx);
        if constexpr (Q::kMin) sum[r][v] += fp16_to_fp32(wb[r][i].m) * fp16_to_fp32(xb.s);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < V; ++v) {
      y[(v0 + v) * ldy + r0 + r] = sum[r][v];
    }
  }
}

// --- driving the tiles ------------------------------------------------------------------------

// 4 rows x 4 vectors: 16 accumulators of the 32 q registers. Spans of 1024 columns keep a float
// tile (16 KiB) or a quantised one and up to 16 vectors' activations in a 32 KiB L1 + L2.
constexpr int kFloatTileRows = 4, kFloatTileVecs = 4, kFloatSpan = 1024;
constexpr int kQuantTileRows = 4, kQuantTileVecs = 4, kQuantSpan = 1024;

template <class W>
void gemm_float(const MatView& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy) {
  const RowPtrs wr(w);
  run_tiles<kFloatTileRows, kFloatTileVecs, kFloatSpan>(
      w, n, [&](auto rows, auto vecs, int64_t r0, int64_t v0, int64_t k0, int64_t k1) {
        float_tile<W, decltype(rows)::value, decltype(vecs)::value>(wr, r0, x, ldx, v0, y, ldy, k0, k1);
      });
}

template <class Q>
void gemm_quant(const MatView& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy) {
  assert(w.cols % kQK == 0);
  using XB = ActBlock<Q>;
  const int64_t nb = w.cols / kQK;
  // Quantise every activation row once, on the calling thread; the team only reads them.
  XB* xq = reinterpret_cast<XB*>(thread_scratch((size_t)(n * nb) * sizeof(XB)));
  for (int64_t v = 0; v < n; ++v) {
    if constexpr (Q::kMin) {
      quantize_row_q8_1(x + v * ldx, xq + v * nb, w.cols);
    } else {
      quantize_row_q8_0(x + v * ldx, xq + v * nb, w.cols);
    }
  }
  const RowPtrs wr(w);
  run_tiles<kQuantTileRows, kQuantTileVecs, kQuantSpan>(
      w, n, [&](auto rows, auto vecs, int64_t r0, int64_t v0, int64_t k0, int64_t k1) {
        quant_tile<Q, decltype(rows)::value, decltype(vecs)::value>(wr, r0, xq, nb, v0, y, ldy, k0, k1);
      });
}

// --- the table ----------------------------------------------------------------------------------

// Y[n, rows] = X[n, cols] · W[rows, cols]^T (see kernels.h).
void gemm(const MatView& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy) {
  assert(is_weight_type(w.type));
  switch (w.type) {
    case DType::kF32: gemm_float<F32Weights>(w, x, ldx, n, y, ldy); return;
    case DType::kF16: gemm_float<F16Weights>(w, x, ldx, n, y, ldy); return;
    case DType::kQ4_0: gemm_quant<Q4_0Weights>(w, x, ldx, n, y, ldy); return;
    case DType::kQ4_1: gemm_quant<Q4_1Weights>(w, x, ldx, n, y, ldy); return;
    case DType::kQ5_0: gemm_quant<Q5_0Weights>(w, x, ldx, n, y, ldy); return;
    case DType::kQ5_1: gemm_quant<Q5_1Weights>(w, x, ldx, n, y, ldy); return;
    case DType::kQ8_0: gemm_quant<Q8_0Weights>(w, x, ldx, n, y, ldy); return;
    case DType::kI8R: gemm_float<I8RWeights>(w, x, ldx, n, y, ldy); return;
    case DType::kI1R: gemm_float<I1RWeights>(w, x, ldx, n, y, ldy); return;
    default: return;
  }
}

// --- sparse rows ------------------------------------------------------------------------------

// W[row] · x over all `cols` for f32, f16, i8r rows (W::scale applied), asking for the same
// lines of `next` (the next active row, or null) as it goes: active rows are scattered, so the
// hardware prefetcher cannot guess them.
template <class W>
float sparse_dot(const uint8_t* row, const uint8_t* next, const float* x, int64_t cols) {
  float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
  int64_t k = 0;
  for (; k + 8 <= cols; k += 8) {
    if (next != nullptr && k % W::kPerLine == 0) __builtin_prefetch(next + W::offset(k));
    acc0 = vfmaq_f32(acc0, W::load(row, k), vld1q_f32(x + k));
    acc1 = vfmaq_f32(acc1, W::load(row, k + 4), vld1q_f32(x + k + 4));
  }
  if (k + 4 <= cols) {
    acc0 = vfmaq_f32(acc0, W::load(row, k), vld1q_f32(x + k));
    k += 4;
  }
  float sum = vaddvq_f32(vaddq_f32(acc0, acc1));
  for (; k < cols; ++k) sum += W::at(row, k) * x[k];
  return W::scale(row) * sum;
}

template <class W>
void gemv_rows_float(const MatView& w, const int32_t* rows, int64_t n_rows, const float* x, float* y) {
  const RowPtrs wr(w);
  parallel_for(n_rows, sparse_threads(n_rows * w.cols), [&](int64_t j) {
    assert(rows[j] >= 0 && rows[j] < w.rows);
    const uint8_t* next = j + 1 < n_rows ? wr(rows[j + 1]) : nullptr;
    y[j] = sparse_dot<W>(wr(rows[j]), next, x, w.cols);
  });
}

// y[j] = W[rows[j], :] · x (see kernels.h). q8_0: the scalar reference's float operations in
// its order, as gemm.
void gemv_rows(const MatView& w, const int32_t* rows, int64_t n_rows, const float* x, float* y) {
  assert(is_sparse_type(w.type));
  switch (w.type) {
    case DType::kF32: gemv_rows_float<F32Weights>(w, rows, n_rows, x, y); return;
    case DType::kF16: gemv_rows_float<F16Weights>(w, rows, n_rows, x, y); return;
    case DType::kI8R: gemv_rows_float<I8RWeights>(w, rows, n_rows, x, y); return;
    case DType::kQ8_0: {
      assert(w.cols % kQK == 0);
      const int64_t nb = w.cols / kQK;
      BlockQ8_0* xq = reinterpret_cast<BlockQ8_0*>(thread_scratch((size_t)nb * sizeof(BlockQ8_0)));
      quantize_row_q8_0(x, xq, w.cols);
      const RowPtrs wr(w);
      parallel_for(n_rows, sparse_threads(n_rows * w.cols), [&](int64_t j) {
        assert(rows[j] >= 0 && rows[j] < w.rows);
        const BlockQ8_0* wb = reinterpret_cast<const BlockQ8_0*>(wr(rows[j]));
        const uint8_t* next = j + 1 < n_rows ? wr(rows[j + 1]) : nullptr;
        float sum = 0.0f;
        for (int64_t i = 0; i < nb; ++i) {
          if (next != nullptr && i % 2 == 0) __builtin_prefetch(next + (size_t)i * sizeof(BlockQ8_0));
          const float d = fp16_to_fp32(wb[i].d) * fp16_to_fp32(xq[i].d);
          sum += (float)block_dot(Q8_0Weights::decode(wb[i]), xq[i].qs) * d;
        }
        y[j] = sum;
      });
      return;
    }
    default: return;
  }
}

// The rows of one axpy group: y is loaded and stored once per group.
constexpr int kAxpyRows = 4;

// y[c0:c1) += Σ_j h[j] W[rows[j], c0:c1) for f32, f16, i8r rows, kAxpyRows rows at a time
// (coefficient h[j] * scale), terms added in j order; asks for the next group's lines ahead.
template <class W>
void axpy_chunk_float(const RowPtrs& wr, const int32_t* rows, const float* h, int64_t n_rows, float* y,
                      int64_t c0, int64_t c1) {
  for (int64_t j = 0; j < n_rows; j += kAxpyRows) {
    const int nr = n_rows - j < kAxpyRows ? (int)(n_rows - j) : kAxpyRows;
    const uint8_t* row[kAxpyRows];
    const uint8_t* next[kAxpyRows];
    float coef[kAxpyRows];
    for (int r = 0; r < nr; ++r) {
      row[r] = wr(rows[j + r]);
      coef[r] = h[j + r] * W::scale(row[r]);
      next[r] = j + kAxpyRows + r < n_rows ? wr(rows[j + kAxpyRows + r]) : nullptr;
    }
    int64_t c = c0;
    for (; c + 4 <= c1; c += 4) {
      if ((c - c0) % W::kPerLine == 0) {
        for (int r = 0; r < nr; ++r) {
          if (next[r] != nullptr) __builtin_prefetch(next[r] + W::offset(c));
        }
      }
      float32x4_t acc = vld1q_f32(y + c);
      for (int r = 0; r < nr; ++r) acc = vfmaq_n_f32(acc, W::load(row[r], c), coef[r]);
      vst1q_f32(y + c, acc);
    }
    for (; c < c1; ++c) {
      float acc = y[c];
      for (int r = 0; r < nr; ++r) acc += coef[r] * W::at(row[r], c);
      y[c] = acc;
    }
  }
}

// The same for q8_0 rows, block by block (c0, c1 multiples of 32): coefficient h[j] * d.
void axpy_chunk_q8_0(const RowPtrs& wr, const int32_t* rows, const float* h, int64_t n_rows, float* y,
                     int64_t c0, int64_t c1) {
  for (int64_t j = 0; j < n_rows; j += kAxpyRows) {
    const int nr = n_rows - j < kAxpyRows ? (int)(n_rows - j) : kAxpyRows;
    const BlockQ8_0* row[kAxpyRows];
    const uint8_t* next[kAxpyRows];
    for (int r = 0; r < nr; ++r) {
      row[r] = reinterpret_cast<const BlockQ8_0*>(wr(rows[j + r]));
      next[r] = j + kAxpyRows + r < n_rows ? wr(rows[j + kAxpyRows + r]) : nullptr;
    }
    for (int64_t i = c0 / kQK; i < c1 / kQK; ++i) {
      float32x4_t acc[8];
      for (int u = 0; u < 8; ++u) acc[u] = vld1q_f32(y + i * kQK + 4 * u);
      for (int r = 0; r < nr; ++r) {
        if (next[r] != nullptr && i % 2 == 0) __builtin_prefetch(next[r] + (size_t)i * sizeof(BlockQ8_0));
        const BlockQ8_0& b = row[r][i];
        const float coef = h[j + r] * fp16_to_fp32(b.d);
        for (int half = 0; half < 2; ++half) {
          const int16x8_t lo = vmovl_s8(vld1_s8(b.qs + 16 * half));
          const int16x8_t hi = vmovl_s8(vld1_s8(b.qs + 16 * half + 8));
          const int16x4_t q4[4] = {vget_low_s16(lo), vget_high_s16(lo), vget_low_s16(hi), vget_high_s16(hi)};
          for (int u = 0; u < 4; ++u) {
            acc[4 * half + u] = vfmaq_n_f32(acc[4 * half + u], vcvtq_f32_s32(vmovl_s16(q4[u])), coef);
          }
        }
      }
      for (int u = 0; u < 8; ++u) vst1q_f32(y + i * kQK + 4 * u, acc[u]);
    }
  }
}

// y[0..cols) += Σ_j h[j] * W[rows[j], :] (see kernels.h), by column chunks over the team.
void axpy_rows(const MatView& w, const int32_t* rows, const float* h, int64_t n_rows, float* y) {
  assert(is_sparse_type(w.type));
  assert(w.type != DType::kQ8_0 || w.cols % kQK == 0);
  if (n_rows <= 0) return;
  for (int64_t j = 0; j < n_rows; ++j) assert(rows[j] >= 0 && rows[j] < w.rows);
  const int threads = sparse_threads(n_rows * w.cols);
  const int64_t chunk = axpy_chunk_cols(w.cols, threads);
  const RowPtrs wr(w);
  parallel_for((w.cols + chunk - 1) / chunk, threads, [&](int64_t i) {
    const int64_t c0 = i * chunk, c1 = c0 + chunk < w.cols ? c0 + chunk : w.cols;
    switch (w.type) {
      case DType::kF32: axpy_chunk_float<F32Weights>(wr, rows, h, n_rows, y, c0, c1); return;
      case DType::kF16: axpy_chunk_float<F16Weights>(wr, rows, h, n_rows, y, c0, c1); return;
      case DType::kI8R: axpy_chunk_float<I8RWeights>(wr, rows, h, n_rows, y, c0, c1); return;
      case DType::kQ8_0: axpy_chunk_q8_0(wr, rows, h, n_rows, y, c0, c1); return;
      default: return;
    }
  });
}

// y[n] = float(x[n]), 4 at a time (FCVTL).
void f16_to_f32(const uint16_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(x + i))));
  for (; i < n; ++i) y[i] = fp16_to_fp32(x[i]);
}

// y[n] = half(x[n]), round to nearest even (FCVTN under the default FPCR rounding mode).
void f32_to_f16(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
  for (; i < n; ++i) y[i] = fp32_to_fp16(x[i]);
}

// wkv5 for value columns [i0, i0 + 4B): the B accumulators of y stay in registers while j walks
// the state's rows.
template <int B>
void wkv5_cols(int64_t S, int64_t i0, float* st, const float* r, const float* k, const float* v, const float* w,
               const float* u, float* y) {
  float32x4_t acc[B], vv[B];
  for (int b = 0; b < B; ++b) {
    acc[b] = vdupq_n_f32(0.0f);
    vv[b] = vld1q_f32(v + i0 + 4 * b);
  }
  for (int64_t j = 0; j < S; ++j) {
    const float rj = r[j], kj = k[j], wj = w[j], ruk = rj * u[j] * kj;
    float* row = st + j * S + i0;
    for (int b = 0; b < B; ++b) {
      const float32x4_t sv = vld1q_f32(row + 4 * b);
      acc[b] = vaddq_f32(acc[b], vfmaq_n_f32(vmulq_n_f32(vv[b], ruk), sv, rj));
      vst1q_f32(row + 4 * b, vfmaq_n_f32(vmulq_n_f32(vv[b], kj), sv, wj));
    }
  }
  for (int b = 0; b < B; ++b) vst1q_f32(y + i0 + 4 * b, acc[b]);
}

void wkv5(int64_t S, float* st, const float* r, const float* k, const float* v, const float* w, const float* u,
          float* y) {
  int64_t i0 = 0;
  for (; i0 + 16 <= S; i0 += 16) wkv5_cols<4>(S, i0, st, r, k, v, w, u, y);
  for (; i0 + 4 <= S; i0 += 4) wkv5_cols<1>(S, i0, st, r, k, v, w, u, y);
  if (i0 < S) wkv5_columns(S, i0, st, r, k, v, w, u, y);
}

}  // namespace

const Kernels& neon_table() {
  // The activation quantisers are the portable ones: they run once per vector, not per weight.
  static const Kernels k{"neon", gemm, scalar_table().get_row, f16_to_f32, f32_to_f16,
                         quantize_row_q8_0, quantize_row_q8_1, gemv_rows, axpy_rows, wkv5};
  return k;
}

}  // namespace rwkv::kern::detail

#endif  // __aarch64__
