// The scalar reference kernels: plain loops that every other variant is tested against.
//
// Numerics (the contract in kernels.h):
// - f32 / f16 weights: f32 products accumulated left to right in f32.
// - quantised weights: ggml's scheme. Each activation row is quantised per block of 32 to
//   q8_0 (for q4_0, q5_0, q8_0 weights) or q8_1 (for q4_1, q5_1); per block the integer dot
//   sumi is exact and the row sum is
//     sum += sumi * (fp16(d_w) * fp16(d_x))  [+ fp16(m_w) * fp16(s_x) for the _1 types]
//   accumulated over blocks in f32.
#include <cassert>
#include <cstring>

#include "engine/common/dtype.h"
#include "engine/common/fp16.h"
#include "kernels/internal.h"

namespace rwkv::kern::detail {
namespace {

// --- float weights ----------------------------------------------------------------------------

// Y[n, rows] = X[n, cols] · W[rows, cols]^T, W in f32 or f16.
void gemm_float(const MatView& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy) {
  const int64_t cols = w.cols;
  parallel_for(w.rows, gemm_threads(w.rows * w.cols), [&](int64_t r) {
    const float* wr;
    if (w.type == DType::kF32) {
      wr = reinterpret_cast<const float*>(w.row(r));
    } else {
      // Dequantise the f16 row once, then reuse it for every vector.
      float* buf = reinterpret_cast<float*>(thread_scratch((size_t)cols * sizeof(float)));
      dequantize_row(w.type, w.row(r), buf, cols);
      wr = buf;
    }
    for (int64_t v = 0; v < n; ++v) {
      const float* xv = x + v * ldx;
      float sum = 0.0f;
      for (int64_t k = 0; k < cols; ++k) sum += wr[k] * xv[k];
      y[v * ldy + r] = sum;
    }
  });
}

// --- quantised weights: per-block integer dots ----------------------------------------------

// Weight j (0..31) of a 4-bit block: byte j % 16, low nibble for j < 16, high nibble otherwise.
inline int nibble(const uint8_t qs[16], int j) {
  return j < 16 ? (qs[j] & 0x0f) : (qs[j - 16] >> 4);
}

// Bit 4 of weight j of a 5-bit block: bit j of the little-endian uint32 qh.
inline int high_bit(const uint8_t qh[4], int j) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
  return (int)((h >> j) & 1u);
}

// sumi = Σ_j q_j · xq_j for one block; q_j the signed (_0) or unsigned (_1) weight value.
inline int block_dot(const BlockQ4_0& b, const int8_t* xq) {
  int s = 0;
  for (int j = 0; j < kQK; ++j) s += (nibble(b.qs, j) - 8) * xq[j];
  return s;
}
inline int block_dot(const BlockQ4_1& b, const int8_t* xq) {
  int s = 0;
  for (int j = 0; j < kQK; ++j) s += nibble(b.qs, j) * xq[j];
  return s;
}
inline int block_dot(const BlockQ5_0& b, const int8_t* xq) {
  int s = 0;
  for (int j = 0; j < kQK; ++j) s += ((nibble(b.qs, j) | (high_bit(b.qh, j) << 4)) - 16) * xq[j];
  return s;
}
inline int block_dot(const BlockQ5_1& b, const int8_t* xq) {
  int s = 0;
  for (int j = 0; j < kQK; ++j) s += (nibble(b.qs, j) | (high_bit(b.qh, j) << 4)) * xq[j];
  return s;
}
inline int block_dot(const BlockQ8_0& b, const int8_t* xq) {
  int s = 0;
  for (int j = 0; j < kQK; ++j) s += b.qs[j] * xq[j];
  return s;
}

// The offset term of a block: m_w * s_x for the _1 types, nothing for the _0 types.
template <class B>
inline float block_offset(const B&, const BlockQ8_0&) { return 0.0f; }
template <class B>
inline float block_offset(const B& b, const BlockQ8_1& xb) {
  return fp16_to_fp32(b.m) * fp16_to_fp32(xb.s);
}

// Y[n, rows] = X[n, cols] · W[rows, cols]^T for a quantised W of blocks B, activations quantised
// to XB (BlockQ8_0 or BlockQ8_1) by `quantize`.
template <class B, class XB>
void gemm_quant(const MatView& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy,
                void (*quantize)(const float*, XB*, int64_t)) {
  assert(w.cols % kQK == 0);
  const int64_t nb = w.cols / kQK;
  // Quantise every activation row once, on the calling thread.
  XB* xq = reinterpret_cast<XB*>(thread_scratch((size_t)(n * nb) * sizeof(XB)));
  for (int64_t v = 0; v < n; ++v) quantize(x + v * ldx, xq + v * nb, w.cols);

  parallel_for(w.rows, gemm_threads(w.rows * w.cols), [&](int64_t r) {
    const B* wb = reinterpret_cast<const B*>(w.row(r));
    for (int64_t v = 0; v < n; ++v) {
      const XB* xb = xq + v * nb;
      float sum = 0.0f;
      for (int64_t i = 0; i < nb; ++i) {
        const int sumi = block_dot(wb[i], xb[i].qs);
        sum += (float)sumi * (fp16_to_fp32(wb[i].d) * fp16_to_fp32(xb[i].d));
        sum += block_offset(wb[i], xb[i]);
      }
      y[v * ldy + r] = sum;
    }
  });
}

// --- the table ----------------------------------------------------------------------------------

// Y[n, rows] = X[n, cols] · W[rows, cols]^T (see kernels.h).
void gemm(const MatView& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy) {
  assert(is_weight_type(w.type));
  switch (w.type) {
    case DType::kF32:
    case DType::kF16: gemm_float(w, x, ldx, n, y, ldy); return;
    case DType::kQ4_0: gemm_quant<BlockQ4_0, BlockQ8_0>(w, x, ldx, n, y, ldy, quantize_row_q8_0); return;
    case DType::kQ4_1: gemm_quant<BlockQ4_1, BlockQ8_1>(w, x, ldx, n, y, ldy, quantize_row_q8_1); return;
    case DType::kQ5_0: gemm_quant<BlockQ5_0, BlockQ8_0>(w, x, ldx, n, y, ldy, quantize_row_q8_0); return;
    case DType::kQ5_1: gemm_quant<BlockQ5_1, BlockQ8_1>(w, x, ldx, n, y, ldy, quantize_row_q8_1); return;
    case DType::kQ8_0: gemm_quant<BlockQ8_0, BlockQ8_0>(w, x, ldx, n, y, ldy, quantize_row_q8_0); return;
    default: return;
  }
}

// y[cols] = row r of W[rows, cols], dequantised.
void get_row(const MatView& w, int64_t r, float* y) {
  assert(r >= 0 && r < w.rows);
  dequantize_row(w.type, w.row(r), y, w.cols);
}

// y[n] = float(x[n]).
void f16_to_f32(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_fp32(x[i]);
}

// y[n] = half(x[n]), round to nearest even.
void f32_to_f16(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_fp16(x[i]);
}

}  // namespace

const Kernels& scalar_table() {
  static const Kernels k{"scalar", gemm, get_row, f16_to_f32, f32_to_f16,
                         quantize_row_q8_0, quantize_row_q8_1};
  return k;
}

}  // namespace rwkv::kern::detail
