// AArch64 Advanced SIMD kernels (every AArch64 core has it: Cortex-A53, A55, A72, A76, ...).
// Only ARMv8.0 instructions, so no dot-product (sdot) or fp16 arithmetic extensions.
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

struct F32Weights {
  static float32x4_t load(const uint8_t* row, int64_t k) {
    return vld1q_f32(reinterpret_cast<const float*>(row) + k);
  }
  static float at(const uint8_t* row, int64_t k) { return reinterpret_cast<const float*>(row)[k]; }
};

struct F16Weights {
  static float32x4_t load(const uint8_t* row, int64_t k) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const uint16_t*>(row) + k)));
  }
  static float at(const uint8_t* row, int64_t k) {
    uint16_t h;
    std::memcpy(&h, row + 2 * k, 2);
    return fp16_to_fp32(h);
  }
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
    for (int v = 0; v < V; ++v) {
      float32x4_t a = acc[0][r][v];
      for (int u = 1; u < U; ++u) a = vaddq_f32(a, acc[u][r][v]);
      float sum = vaddvq_f32(a);
      for (int64_t t = k; t < k1; ++t) sum += W::at(wr[r], t) * xv[v][t];
      float& out = y[(v0 + v) * ldy + r0 + r];
      out = k0 == 0 ? sum : out + sum;
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

// sumi = Σ_j w_j x_j of one block, exact: each int16 lane adds two products of at most
// 128 * 127 in magnitude (the activations stay within [-127, 127]), which fits.
inline int32_t block_dot(const Int8x32& w, const int8_t* xq) {
  const int8x16_t x0 = vld1q_s8(xq), x1 = vld1q_s8(xq + 16);
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
    default: return;
  }
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

}  // namespace

const Kernels& neon_table() {
  // The activation quantisers are the portable ones: they run once per vector, not per weight.
  static const Kernels k{"neon", gemm, scalar_table().get_row, f16_to_f32, f32_to_f16,
                         quantize_row_q8_0, quantize_row_q8_1};
  return k;
}

}  // namespace rwkv::kern::detail

#endif  // __aarch64__
