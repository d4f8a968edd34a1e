#include "engine/common/dtype.h"

#include <cassert>
#include <cmath>
#include <cstring>

#include "engine/common/fp16.h"

namespace rwkv {

bool dtype_is_known(uint32_t id) {
  switch (id) {
    case 0: case 1: case 2: case 3: case 6: case 7: case 8: case 100: case 101: return true;
    default: return false;
  }
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kF32: return "f32";
    case DType::kF16: return "f16";
    case DType::kQ4_0: return "q4_0";
    case DType::kQ4_1: return "q4_1";
    case DType::kQ5_0: return "q5_0";
    case DType::kQ5_1: return "q5_1";
    case DType::kQ8_0: return "q8_0";
    case DType::kQ8_1: return "q8_1";
    case DType::kI8R: return "i8r";
    case DType::kI1R: return "i1r";
  }
  return "?";
}

bool dtype_is_row_scaled(DType t) { return t == DType::kI8R || t == DType::kI1R; }

int dtype_block_size(DType t) {
  return (t == DType::kF32 || t == DType::kF16 || dtype_is_row_scaled(t)) ? 1 : kQK;
}

size_t dtype_block_bytes(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kQ4_0: return sizeof(BlockQ4_0);
    case DType::kQ4_1: return sizeof(BlockQ4_1);
    case DType::kQ5_0: return sizeof(BlockQ5_0);
    case DType::kQ5_1: return sizeof(BlockQ5_1);
    case DType::kQ8_0: return sizeof(BlockQ8_0);
    case DType::kQ8_1: return sizeof(BlockQ8_1);
    case DType::kI8R: case DType::kI1R: return 0;  // rows carry a scale; see dtype_row_bytes
  }
  return 0;
}

size_t dtype_row_bytes(DType t, int64_t n) {
  if (t == DType::kI8R) return 4 + (size_t)n;
  if (t == DType::kI1R) return 4 + (size_t)(n + 7) / 8;
  const int bs = dtype_block_size(t);
  assert(n % bs == 0);
  return (size_t)(n / bs) * dtype_block_bytes(t);
}

namespace {

// 5-bit value j of a Q5 block: low nibble from qs, bit 4 from qh.
inline int q5_value(const uint8_t qs[16], const uint8_t qh_bytes[4], int j) {
  uint32_t qh;
  std::memcpy(&qh, qh_bytes, 4);
  const int nib = j < 16 ? (qs[j] & 0x0f) : (qs[j - 16] >> 4);
  const int hi = (qh >> j) & 1;
  return nib | (hi << 4);
}

inline int q4_value(const uint8_t qs[16], int j) {
  return j < 16 ? (qs[j] & 0x0f) : (qs[j - 16] >> 4);
}

}  // namespace

void dequantize_row(DType t, const void* row, float* y, int64_t n) {
  const int64_t nb = n / kQK;
  switch (t) {
    case DType::kF32:
      std::memcpy(y, row, (size_t)n * 4);
      return;
    case DType::kF16: {
      const uint16_t* h = static_cast<const uint16_t*>(row);
      for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_fp32(h[i]);
      return;
    }
    case DType::kQ4_0: {
      const BlockQ4_0* b = static_cast<const BlockQ4_0*>(row);
      for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < kQK; ++j) y[i * kQK + j] = (float)(q4_value(b[i].qs, j) - 8) * d;
      }
      return;
    }
    case DType::kQ4_1: {
      const BlockQ4_1* b = static_cast<const BlockQ4_1*>(row);
      for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
        for (int j = 0; j < kQK; ++j) y[i * kQK + j] = (float)q4_value(b[i].qs, j) * d + m;
      }
      return;
    }
    case DType::kQ5_0: {
      const BlockQ5_0* b = static_cast<const BlockQ5_0*>(row);
      for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < kQK; ++j) y[i * kQK + j] = (float)(q5_value(b[i].qs, b[i].qh, j) - 16) * d;
      }
      return;
    }
    case DType::kQ5_1: {
      const BlockQ5_1* b = static_cast<const BlockQ5_1*>(row);
      for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
        for (int j = 0; j < kQK; ++j) y[i * kQK + j] = (float)q5_value(b[i].qs, b[i].qh, j) * d + m;
      }
      return;
    }
    case DType::kQ8_0: {
      const BlockQ8_0* b = static_cast<const BlockQ8_0*>(row);
      for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < kQK; ++j) y[i * kQK + j] = (float)b[i].qs[j] * d;
      }
      return;
    }
    case DType::kQ8_1: {
      const BlockQ8_1* b = static_cast<const BlockQ8_1*>(row);
      for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_fp32(b[i].d);
        for (int j = 0; j < kQK; ++j) y[i * kQK + j] = (float)b[i].qs[j] * d;
      }
      return;
    }
    case DType::kI8R: {
      const uint8_t* p = static_cast<const uint8_t*>(row);
      float s;
      std::memcpy(&s, p, 4);
      const int8_t* q = reinterpret_cast<const int8_t*>(p + 4);
      for (int64_t i = 0; i < n; ++i) y[i] = s * (float)q[i];
      return;
    }
    case DType::kI1R: {
      const uint8_t* p = static_cast<const uint8_t*>(row);
      float s;
      std::memcpy(&s, p, 4);
      for (int64_t i = 0; i < n; ++i) y[i] = (p[4 + i / 8] >> (i % 8)) & 1 ? s : -s;
      return;
    }
  }
}

void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n) {
  assert(n % kQK == 0);
  for (int64_t i = 0; i < n / kQK; ++i) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(x[i * kQK + j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < kQK; ++j) y[i].qs[j] = (int8_t)std::lround(x[i * kQK + j] * id);
  }
}

void quantize_row_q8_1(const float* x, BlockQ8_1* y, int64_t n) {
  assert(n % kQK == 0);
  for (int64_t i = 0; i < n / kQK; ++i) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(x[i * kQK + j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
      const int q = (int)std::lround(x[i * kQK + j] * id);
      y[i].qs[j] = (int8_t)q;
      sum += q;
    }
    y[i].d = fp32_to_fp16(d);
    y[i].s = fp32_to_fp16((float)sum * d);
  }
}

void quantize_row_i8r(const float* x, void* row, int64_t n) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::fmax(amax, std::fabs(x[i]));
  const float s = amax / 127.0f;
  const float is = s != 0.0f ? 1.0f / s : 0.0f;
  uint8_t* p = static_cast<uint8_t*>(row);
  std::memcpy(p, &s, 4);
  int8_t* q = reinterpret_cast<int8_t*>(p + 4);
  // |x * is| <= 127 up to one rounding of is; the clamp keeps a value a hair above 127.5 in range.
  for (int64_t i = 0; i < n; ++i) {
    const long v = std::lround(x[i] * is);
    q[i] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
  }
}

void quantize_row_i1r(const float* x, void* row, int64_t n) {
  // Mean |x| in double: rows of the FFN are up to tens of thousands long.
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::fabs((double)x[i]);
  const float s = n > 0 ? (float)(sum / (double)n) : 0.0f;
  uint8_t* p = static_cast<uint8_t*>(row);
  std::memcpy(p, &s, 4);
  std::memset(p + 4, 0, (size_t)(n + 7) / 8);
  for (int64_t i = 0; i < n; ++i) {
    if (x[i] > 0.0f) p[4 + i / 8] |= (uint8_t)(1u << (i % 8));
  }
}

}  // namespace rwkv
