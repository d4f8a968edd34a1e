// The scalar reference kernels: plain loops that every other variant is tested against.
//
// Numerics (the contract in kernels.h):
// - f32 / f16 weights: f32 products accumulated left to right in f32.
// - quantised weights: ggml's scheme. Each activation row is quantised per block of 32 to
//   q8_0 (for q4_0, q5_0, q8_0 weights) or q8_1 (for q4_1, q5_1); per block the integer dot
//   sumi is exact and the row sum is
//     sum += sumi * (fp16(d_w) * fp16(d_x))  [+ fp16(m_w) * fp16(s_x) for the _1 types]
//   accumulated over blocks in f32.
// - i8r / i1r weights: f32 activations; y = s * Σ_k q_k x_k (i8r) or s * Σ_k ±x_k (i1r), the
//   sum left to right in f32, then one multiplication by the row's scale s.
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
  parallel_for(w.rows, gemm_threads(w.rows * w.cols * n), [&](int64_t r) {
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

// --- row-scaled weights --------------------------------------------------------------------------

// Σ_k q_k x_k (i8r) or Σ_k ±x_k (i1r) over row `row`'s payload, left to right in f32.
float row_scaled_sum(DType t, const uint8_t* row, const float* x, int64_t cols) {
  float sum = 0.0f;
  if (t == DType::kI8R) {
    const int8_t* q = reinterpret_cast<const int8_t*>(row + 4);
    for (int64_t k = 0; k < cols; ++k) sum += (float)q[k] * x[k];
  } else {
    const uint8_t* bits = row + 4;
    for (int64_t k = 0; k < cols; ++k) sum += (bits[k / 8] >> (k % 8)) & 1 ? x[k] : -x[k];
  }
  return sum;
}

// Y[n, rows] = X[n, cols] · W[rows, cols]^T, W in i8r or i1r.
void gemm_row_scaled(const MatView& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy) {
  parallel_for(w.rows, gemm_threads(w.rows * w.cols * n), [&](int64_t r) {
    const uint8_t* row = w.row(r);
    const float s = row_scale(row);
    for (int64_t v = 0; v < n; ++v) y[v * ldy + r] = s * row_scaled_sum(w.type, row, x + v * ldx, w.cols);
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

  parallel_for(w.rows, gemm_threads(w.rows * w.cols * n), [&](int64_t r) {
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
    case DType::kI8R:
    case DType::kI1R: gemm_row_scaled(w, x, ldx, n, y, ldy); return;
    default: return;
  }
}

// --- sparse rows ----------------------------------------------------------------------------------

// W[r, :] · x with gemm's numerics for n = 1; xq: x quantised to q8_0 blocks (q8_0 weights only).
float row_dot(const MatView& w, int64_t r, const float* x, const BlockQ8_0* xq) {
  const uint8_t* row = w.row(r);
  switch (w.type) {
    case DType::kF32: {
      const float* wr = reinterpret_cast<const float*>(row);
      float sum = 0.0f;
      for (int64_t k = 0; k < w.cols; ++k) sum += wr[k] * x[k];
      return sum;
    }
    case DType::kF16: {
      const uint16_t* wr = reinterpret_cast<const uint16_t*>(row);
      float sum = 0.0f;
      for (int64_t k = 0; k < w.cols; ++k) sum += fp16_to_fp32(wr[k]) * x[k];
      return sum;
    }
    case DType::kQ8_0: {
      const BlockQ8_0* wb = reinterpret_cast<const BlockQ8_0*>(row);
      float sum = 0.0f;
      for (int64_t i = 0; i < w.cols / kQK; ++i) {
        sum += (float)block_dot(wb[i], xq[i].qs) * (fp16_to_fp32(wb[i].d) * fp16_to_fp32(xq[i].d));
      }
      return sum;
    }
    case DType::kI8R: return row_scale(row) * row_scaled_sum(w.type, row, x, w.cols);
    default: return 0.0f;
  }
}

// y[j] = W[rows[j], :] · x (see kernels.h).
void gemv_rows(const MatView& w, const int32_t* rows, int64_t n_rows, const float* x, float* y) {
  assert(is_sparse_type(w.type));
  const BlockQ8_0* xq = nullptr;
  if (w.type == DType::kQ8_0) {
    assert(w.cols % kQK == 0);
    BlockQ8_0* buf = reinterpret_cast<BlockQ8_0*>(thread_scratch((size_t)(w.cols / kQK) * sizeof(BlockQ8_0)));
    quantize_row_q8_0(x, buf, w.cols);
    xq = buf;
  }
  parallel_for(n_rows, sparse_threads(n_rows * w.cols), [&](int64_t j) {
    assert(rows[j] >= 0 && rows[j] < w.rows);
    y[j] = row_dot(w, rows[j], x, xq);
  });
}

// y[c0, c1) += Σ_j h[j] * W[rows[j], c0:c1), one row at a time, the weights dequantised.
void axpy_chunk(const MatView& w, const int32_t* rows, const float* h, int64_t n_rows, float* y,
                int64_t c0, int64_t c1) {
  for (int64_t j = 0; j < n_rows; ++j) {
    assert(rows[j] >= 0 && rows[j] < w.rows);
    const uint8_t* row = w.row(rows[j]);
    const float hj = h[j];
    switch (w.type) {
      case DType::kF32: {
        const float* wr = reinterpret_cast<const float*>(row);
        for (int64_t c = c0; c < c1; ++c) y[c] += hj * wr[c];
        break;
      }
      case DType::kF16: {
        const uint16_t* wr = reinterpret_cast<const uint16_t*>(row);
        for (int64_t c = c0; c < c1; ++c) y[c] += hj * fp16_to_fp32(wr[c]);
        break;
      }
      case DType::kQ8_0: {
        const BlockQ8_0* wb = reinterpret_cast<const BlockQ8_0*>(row);
        for (int64_t c = c0; c < c1; ++c) {
          const BlockQ8_0& b = wb[c / kQK];
          y[c] += hj * ((float)b.qs[c % kQK] * fp16_to_fp32(b.d));
        }
        break;
      }
      case DType::kI8R: {
        const float s = row_scale(row);
        const int8_t* q = reinterpret_cast<const int8_t*>(row + 4);
        for (int64_t c = c0; c < c1; ++c) y[c] += hj * (s * (float)q[c]);
        break;
      }
      default: break;
    }
  }
}

// y[0..cols) += Σ_j h[j] * W[rows[j], :] (see kernels.h), by column chunks over the team.
void axpy_rows(const MatView& w, const int32_t* rows, const float* h, int64_t n_rows, float* y) {
  assert(is_sparse_type(w.type));
  assert(w.type != DType::kQ8_0 || w.cols % kQK == 0);
  if (n_rows <= 0) return;
  const int threads = sparse_threads(n_rows * w.cols);
  const int64_t chunk = axpy_chunk_cols(w.cols, threads);
  parallel_for((w.cols + chunk - 1) / chunk, threads, [&](int64_t i) {
    const int64_t c0 = i * chunk, c1 = c0 + chunk < w.cols ? c0 + chunk : w.cols;
    axpy_chunk(w, rows, h, n_rows, y, c0, c1);
  });
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

void wkv5(int64_t S, float* st, const float* r, const float* k, const float* v, const float* w, const float* u,
          float* y) {
  wkv5_columns(S, 0, st, r, k, v, w, u, y);
}

}  // namespace

void wkv5_columns(int64_t S, int64_t i0, float* st, const float* r, const float* k, const float* v, const float* w,
                  const float* u, float* y) {
  for (int64_t i = i0; i < S; ++i) y[i] = 0.0f;
  for (int64_t j = 0; j < S; ++j) {
    const float rj = r[j], kj = k[j], wj = w[j], ruk = rj * u[j] * kj;
    float* row = st + j * S;
    for (int64_t i = i0; i < S; ++i) {
      y[i] += ruk * v[i] + rj * row[i];
      row[i] = kj * v[i] + wj * row[i];
    }
  }
}

const Kernels& scalar_table() {
  static const Kernels k{"scalar", gemm, get_row, f16_to_f32, f32_to_f16,
                         quantize_row_q8_0, quantize_row_q8_1, gemv_rows, axpy_rows, wkv5};
  return k;
}

}  // namespace rwkv::kern::detail
