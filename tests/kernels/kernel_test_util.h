// Shared by the kernel tests: deterministic random data and an independent decoder of the
// quantised block layouts (written from the layout table in shared/models/rwkv-cpp-tiny/README.md,
// not from dtype.cpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "engine/common/dtype.h"
#include "engine/common/fp16.h"
#include "kernels/kernels.h"

namespace rwkv::kern::test {

// xorshift64*: the same sequence on every platform.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    s ^= s >> 12; s ^= s << 25; s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  // Uniform in [-1, 1).
  float uniform() { return (float)((next() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }
};

inline const DType kWeightTypes[] = {DType::kF32,  DType::kF16,  DType::kQ4_0, DType::kQ4_1, DType::kQ5_0,
                                     DType::kQ5_1, DType::kQ8_0, DType::kI8R, DType::kI1R};
// The weight types of gemv_rows / axpy_rows.
inline const DType kSparseTypes[] = {DType::kF32, DType::kF16, DType::kQ8_0, DType::kI8R};

// Block-quantised (q4_0 .. q8_0: activations quantised, cols % 32 == 0)?
// Every kernel table this binary has that the CPU can run (scalar first).
inline std::vector<const Kernels*> variants() {
  const Kernels* list[8];
  const int n = available_kernels(list, 8);
  return std::vector<const Kernels*>(list, list + n);
}

inline bool is_quantised(DType t) {
  return t != DType::kF32 && t != DType::kF16 && t != DType::kI8R && t != DType::kI1R;
}
inline bool is_row_scaled(DType t) { return t == DType::kI8R || t == DType::kI1R; }
inline bool has_min(DType t) { return t == DType::kQ4_1 || t == DType::kQ5_1; }

// Random weights of type t. Quantised blocks get random bytes (every nibble and high-bit pattern
// occurs) and scales of either sign, |d| in [0.005, 0.03]; mins in [-0.1, 0.1].
inline std::vector<uint8_t> random_weights(DType t, int64_t rows, int64_t cols, Rng& rng) {
  std::vector<uint8_t> buf(dtype_row_bytes(t, cols) * (size_t)rows);
  if (t == DType::kF32) {
    for (size_t i = 0; i < buf.size(); i += 4) {
      const float f = rng.uniform();
      std::memcpy(&buf[i], &f, 4);
    }
  } else if (t == DType::kF16) {
    for (size_t i = 0; i < buf.size(); i += 2) {
      const uint16_t h = fp32_to_fp16(rng.uniform());
      std::memcpy(&buf[i], &h, 2);
    }
  } else if (is_row_scaled(t)) {
    // Random payload bytes (every int8 value, -128 included, and every sign pattern; the i1r
    // bits past a row's end too, which must not matter); a scale of either sign per row.
    for (auto& b : buf) b = (uint8_t)rng.next();
    const size_t rb = dtype_row_bytes(t, cols);
    for (size_t off = 0; off < buf.size(); off += rb) {
      const float s = (0.005f + 0.025f * std::fabs(rng.uniform())) * (rng.next() & 1 ? 1.0f : -1.0f);
      std::memcpy(&buf[off], &s, 4);
    }
  } else {
    for (auto& b : buf) b = (uint8_t)rng.next();
    const size_t bb = dtype_block_bytes(t);
    for (size_t off = 0; off < buf.size(); off += bb) {
      const float d = (0.005f + 0.025f * std::fabs(rng.uniform())) * (rng.next() & 1 ? 1.0f : -1.0f);
      const uint16_t hd = fp32_to_fp16(d);
      std::memcpy(&buf[off], &hd, 2);
      if (has_min(t)) {
        const uint16_t hm = fp32_to_fp16(0.1f * rng.uniform());
        std::memcpy(&buf[off + 2], &hm, 2);
      }
    }
  }
  return buf;
}

// A quantised block decoded straight from its bytes: weight j = d * q[j] + m (m = 0 for _0 types).
struct DecodedBlock {
  double d = 0, m = 0;
  int q[32] = {};
};

inline double half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_fp32(h);
}

// Decodes block `b` of type t (q4_0 .. q8_0) from raw bytes.
inline DecodedBlock decode_block(DType t, const uint8_t* b) {
  DecodedBlock out;
  out.d = half(b);
  const uint8_t* p = b + 2;
  if (has_min(t)) {
    out.m = half(p);
    p += 2;
  }
  uint32_t qh = 0;
  if (t == DType::kQ5_0 || t == DType::kQ5_1) {
    qh = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    p += 4;
  }
  for (int j = 0; j < 32; ++j) {
    if (t == DType::kQ8_0) {
      out.q[j] = (int8_t)p[j];
      continue;
    }
    const int nib = (p[j % 16] >> (j < 16 ? 0 : 4)) & 0xf;
    const int hi = (int)((qh >> j) & 1u);
    switch (t) {
      case DType::kQ4_0: out.q[j] = nib - 8; break;
      case DType::kQ4_1: out.q[j] = nib; break;
      case DType::kQ5_0: out.q[j] = nib + 16 * hi - 16; break;
      case DType::kQ5_1: out.q[j] = nib + 16 * hi; break;
      default: break;
    }
  }
  return out;
}

// Weight c of an i8r / i1r row decoded straight from its bytes (scale s, then the payload):
// i8r s * q[c]; i1r +s if bit c % 8 of byte c / 8 is set, else -s.
inline double row_scaled_value(DType t, const uint8_t* row, int64_t c) {
  float s;
  std::memcpy(&s, row, 4);
  if (t == DType::kI8R) return (double)s * (double)(int8_t)row[4 + c];
  return ((row[4 + c / 8] >> (c % 8)) & 1) ? (double)s : -(double)s;
}

}  // namespace rwkv::kern::test
