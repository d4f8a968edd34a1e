// Tensor element types (ggml / GGUF type ids) and their block layouts.
//
// Quantised types store blocks of 32 weights consecutive along a row (dimension 0). The
// layouts are ggml's, so rwkv.cpp files, GGUF files and our kernels share them bit for bit.
//
// Two row-scaled types are our own (GGUF ids 100 and 101, outside ggml's range; issues #3, #6):
// a row is an f32 scale followed by its payload, so any row length works (block size 1):
// - i8r: f32 scale s, then int8 q[cols]; weight j = s * q[j]. Row bytes: 4 + cols.
// - i1r: f32 scale s, then (cols + 7) / 8 bytes of signs; weight j = +s if bit j % 8 of byte
//   j / 8 is set, else -s. Row bytes: 4 + (cols + 7) / 8. Bits past the row's end are zero.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rwkv {

// Values are the GGUF / ggml type ids. rwkv.cpp's ggmf files use other codes; their loader
// maps them (formats/rwkvcpp.cpp).
enum class DType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,  // activations only (ggml's vec_dot type for Q4_1 / Q5_1)
  kI8R = 100,  // int8, one f32 scale per row (see above)
  kI1R = 101,  // 1-bit signs, one f32 scale per row (see above)
};

constexpr int kQK = 32;  // weights per quantised block

#pragma pack(push, 1)
struct BlockQ4_0 { uint16_t d; uint8_t qs[16]; };
struct BlockQ4_1 { uint16_t d; uint16_t m; uint8_t qs[16]; };
struct BlockQ5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; };
struct BlockQ5_1 { uint16_t d; uint16_t m; uint8_t qh[4]; uint8_t qs[16]; };
struct BlockQ8_0 { uint16_t d; int8_t qs[32]; };
// d = scale, s = d * sum(qs): lets a Q4_1/Q5_1 dot product add the weights' offset m cheaply.
struct BlockQ8_1 { uint16_t d; uint16_t s; int8_t qs[32]; };
#pragma pack(pop)
static_assert(sizeof(BlockQ4_0) == 18, "ggml layout");
static_assert(sizeof(BlockQ4_1) == 20, "ggml layout");
static_assert(sizeof(BlockQ5_0) == 22, "ggml layout");
static_assert(sizeof(BlockQ5_1) == 24, "ggml layout");
static_assert(sizeof(BlockQ8_0) == 34, "ggml layout");
static_assert(sizeof(BlockQ8_1) == 36, "ggml layout");

// True for the types a weight tensor may have.
bool dtype_is_known(uint32_t id);
const char* dtype_name(DType t);  // "f32", "f16", "q4_0", ..., "i8r", "i1r"
// Weights per block (1 for f32/f16/i8r/i1r) and bytes per block. The row-scaled types have no
// fixed bytes per block (their rows carry a 4-byte scale): dtype_block_bytes returns 0 for them;
// use dtype_row_bytes.
int dtype_block_size(DType t);
size_t dtype_block_bytes(DType t);
// Does every row carry its own f32 scale (i8r, i1r)?
bool dtype_is_row_scaled(DType t);
// Bytes of a row of `n` elements. REQUIRES: n % dtype_block_size(t) == 0.
size_t dtype_row_bytes(DType t, int64_t n);

// y[n] = dequantised row. REQUIRES: n % dtype_block_size(t) == 0.
void dequantize_row(DType t, const void* row, float* y, int64_t n);

// Reference quantisers (round to nearest, ggml's rules). REQUIRES: n % 32 == 0.
void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n);
void quantize_row_q8_1(const float* x, BlockQ8_1* y, int64_t n);

// One i8r row (dtype_row_bytes(kI8R, n) bytes at `row`) from x[n], symmetric: s = max|x| / 127,
// q[j] = round-half-away(x[j] / s) (all zero, s = 0, for an all-zero row). Any n >= 1.
// REQUIRES: x finite.
void quantize_row_i8r(const float* x, void* row, int64_t n);
// One i1r row (dtype_row_bytes(kI1R, n) bytes) from x[n]: s = mean |x|, bit j set iff x[j] > 0
// (zero and negative values get -s). Any n >= 1. REQUIRES: x finite.
void quantize_row_i1r(const float* x, void* row, int64_t n);

}  // namespace rwkv
