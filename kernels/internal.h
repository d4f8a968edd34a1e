// Private to kernels/: the per-ISA tables and the helpers every variant shares.
//
// Each variant file defines one table; kernels.cpp chooses among them. Nothing outside
// kernels/ includes this header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/kernels.h"

namespace rwkv::kern::detail {

// The scalar reference (kernels/scalar/). Always compiled.
const Kernels& scalar_table();
#if defined(RWKV_EDGE_HAVE_AVX2)
// AVX2 + FMA + F16C (kernels/avx2/). Only call after the CPU check in kernels.cpp.
const Kernels& avx2_table();
// The same plus AVX-VNNI (kernels/avx2/avxvnni_kernels.cpp). Only call after the CPU check.
const Kernels& avxvnni_table();
#endif
#if defined(RWKV_EDGE_HAVE_AVX512)
// AVX-512 F/BW/VL/VNNI on top of AVX2 + FMA + F16C (kernels/avx512/); entries it does not
// improve are `base`'s (the avx2-vnni or avx2 table). Only call after the CPU and OS check in
// kernels.cpp; `base` is fixed by the first call.
const Kernels& avx512_table(const Kernels& base);
#endif
#if defined(RWKV_EDGE_HAVE_NEON) && defined(__aarch64__)
// AArch64 Advanced SIMD (kernels/neon/). Every AArch64 CPU has it.
const Kernels& neon_table();
#endif

// Below this many multiply-adds (rows * cols * vectors) a gemm runs on the calling thread:
// handing work to the team costs a few microseconds, about what 64k multiply-adds take. (It
// counted weights only until a batch of 8 over a 256 x 256 matrix, 0.5M multiply-adds, ran on
// one thread: the default model's batched decode was 2.2x one sequence.)
constexpr int64_t kParallelMinWeights = int64_t{1} << 16;

// The thread count for a product of `macs` multiply-adds (for the sparse kernels: weights
// read): num_threads() when it is worth it, else 1.
inline int gemm_threads(int64_t macs) {
  return macs > kParallelMinWeights ? num_threads() : 1;
}

// fn(ctx, begin, end) for contiguous chunks covering [0, count), on up to `threads` threads: the
// caller and the kernels' persistent team (parallel.cpp, which says why not OpenMP). Chunks are
// claimed dynamically; returns when all are done. fn must not throw.
// REQUIRES: 0 <= count < 2^32.
using kern::RangeFn;
void parallel_run(int64_t count, int threads, RangeFn fn, void* ctx);

// Calls f(i) for i in [0, count) on up to `threads` threads (serially when threads <= 1).
// f must not throw.
template <class F>
void parallel_for(int64_t count, int threads, const F& f) {
  if (threads <= 1 || count <= 1) {
    for (int64_t i = 0; i < count; ++i) f(i);
    return;
  }
  parallel_run(count, threads, [](void* ctx, int64_t begin, int64_t end) {
    const F& g = *static_cast<const F*>(ctx);
    for (int64_t i = begin; i < end; ++i) g(i);
  }, const_cast<void*>(static_cast<const void*>(&f)));
}

// A weight matrix's rows with the stride computed once. (MatView::row() asks engine/common for
// the row size on every call, which showed up at ~4% of q8_0 decode: the model's 768-wide
// matrices make tiles short.)
struct RowPtrs {
  const uint8_t* base;
  size_t stride;  // bytes per row
  explicit RowPtrs(const MatView& w)
      : base(static_cast<const uint8_t*>(w.data)), stride(w.row_bytes()) {}
  const uint8_t* operator()(int64_t r) const { return base + (size_t)r * stride; }
};

// Tiling shared by the SIMD variants: compile-time tile shapes passed as values.
template <int N>
using Int = std::integral_constant<int, N>;

// Calls tile(Int<R>{}, Int<V>{}, r0, v0, k0, k1) with V == nv. REQUIRES: 1 <= nv <= VM.
template <int R, int VM, class Tile>
void call_tile(int nv, int64_t r0, int64_t v0, int64_t k0, int64_t k1, const Tile& tile) {
  if constexpr (VM > 1) {
    if (nv < VM) return call_tile<R, VM - 1>(nv, r0, v0, k0, k1, tile);
  }
  tile(Int<R>{}, Int<VM>{}, r0, v0, k0, k1);
}

// Y[n, rows] = X[n, cols] · W[rows, cols]^T by tiles of RT rows. Each thread takes a contiguous
// run of tiles. In a tile the vectors go by groups of up to VM; when there is more than one
// group, the columns go by spans of KC so that the tile's weights and the activations of the
// span stay in L1 while every group passes over them. Calls
// tile(Int<R>, Int<V>, r0, v0, k0, k1) for rows r0..r0+R-1, vectors v0..v0+V-1, columns
// k0..k1-1; a partial tile at the bottom goes one row at a time. KC must keep spans whole
// (a multiple of the block size for quantised weights).
template <int RT, int VM, int KC, class Tile>
void run_tiles(const MatView& w, int64_t n, const Tile& tile) {
  const int64_t tiles = (w.rows + RT - 1) / RT;
  const int64_t span = n > VM ? KC : w.cols;
  parallel_for(tiles, gemm_threads(w.rows * w.cols * n), [&](int64_t t) {
    const int64_t r0 = t * RT;
    const int64_t nr = w.rows - r0 < RT ? w.rows - r0 : RT;
    for (int64_t k0 = 0; k0 < w.cols; k0 += span) {
      const int64_t k1 = w.cols - k0 < span ? w.cols : k0 + span;
      for (int64_t v0 = 0; v0 < n;) {
        const int nv = n - v0 < VM ? (int)(n - v0) : VM;
        if (nr == RT) {
          call_tile<RT, VM>(nv, r0, v0, k0, k1, tile);
        } else {
          for (int64_t r = r0; r < r0 + nr; ++r) call_tile<1, VM>(nv, r, v0, k0, k1, tile);
        }
        v0 += nv;
      }
    }
  });
}


// A per-thread byte buffer of at least `bytes`, reused across calls on the same thread (the
// quantised activations of a gemm live here). Valid until the next call on this thread.
// Defined in kernels.cpp, which is compiled for the baseline ISA: an inline definition here
// would instantiate std::vector code in every variant's file, and the linker may keep the copy
// compiled with -mavx2 or -mavx512f for all callers (a SIGILL on older CPUs).
uint8_t* thread_scratch(size_t bytes);

// The scalar WKV step (kernels.h, wkv5) for value columns [i0, S) only: the SIMD variants' tail
// and the scalar table's whole step. Out of line in kernels/scalar, compiled without ISA flags.
void wkv5_columns(int64_t S, int64_t i0, float* st, const float* r, const float* k, const float* v, const float* w,
                  const float* u, float* y);

// Is `t` one of the weight types gemm accepts?
inline bool is_weight_type(DType t) {
  switch (t) {
    case DType::kF32: case DType::kF16: case DType::kQ4_0: case DType::kQ4_1:
    case DType::kQ5_0: case DType::kQ5_1: case DType::kQ8_0: case DType::kI8R: case DType::kI1R:
      return true;
    default:
      return false;
  }
}

// Is `t` one of the weight types gemv_rows and axpy_rows accept?
inline bool is_sparse_type(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kQ8_0 || t == DType::kI8R;
}

// The f32 scale at the start of an i8r / i1r row.
inline float row_scale(const uint8_t* row) {
  float s;
  std::memcpy(&s, row, 4);
  return s;
}

// Below this many weights touched, a sparse product runs on the calling thread (as gemm).
inline int sparse_threads(int64_t weights) { return gemm_threads(weights); }

// The column chunks of axpy_rows: about two per thread so that a descheduled thread's share can
// be taken over, a multiple of 32 columns (whole q8_0 blocks, whole SIMD vectors), and at most
// 2048 columns so that a chunk of y (8 KiB) stays in L1 while every active row passes over it.
inline int64_t axpy_chunk_cols(int64_t cols, int threads) {
  const int64_t parts = threads > 1 ? 2 * (int64_t)threads : 1;
  int64_t c = (cols + parts - 1) / parts;
  c = (c + 31) / 32 * 32;
  return c < 2048 ? (c > 0 ? c : 32) : 2048;
}

// Does a quantised weight type pair with q8_1 activations (q4_1, q5_1) rather than q8_0?
inline bool uses_q8_1(DType t) { return t == DType::kQ4_1 || t == DType::kQ5_1; }

}  // namespace rwkv::kern::detail
