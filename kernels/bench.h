// Micro-benchmarks for the kernels: what the memory delivers, and what a gemm gets of it.
//
//   std::vector<uint8_t> buf(dtype_row_bytes(DType::kQ8_0, cols) * rows);
//   kern::fill_random_weights(DType::kQ8_0, rows, cols, buf.data(), /*seed=*/1);
//   kern::MatView w{DType::kQ8_0, rows, cols, buf.data()};
//   double bw = kern::measure_read_bandwidth_gbs(size_t{1} << 30, 2);
//   double gemm = kern::bench_gemm_gbs(w, /*n=*/1, /*iters=*/20);
//   printf("matvec at %.0f%% of read bandwidth\n", 100 * gemm / bw);
//
// Not tests: they print nothing and check nothing. Both allocate and time; call them from a
// quiet process, not from a serving one.
#pragma once

#include <cstddef>

#include "kernels/kernels.h"

namespace rwkv::kern {

// Read bandwidth in GB/s (1e9 bytes per second): `threads` threads (<= 0: num_threads()) each
// sum their contiguous share of a `bytes` buffer, STREAM-style, as 4 concurrent streams (as a
// gemm reads several rows at once); returns the median of 7 timed passes after one untimed one.
// Make `bytes` several times the last-level cache to measure main memory rather than the cache.
// With `prefetch`, each stream also requests the line 2 KiB ahead (software prefetch), as the
// gemm kernels do; on some machines one core then streams noticeably more than its hardware
// prefetchers fetch alone (on the development VM ~25% more with 1 thread), so a gemm can beat
// the plain figure. The plain read is the yardstick the docs and targets use.
double measure_read_bandwidth_gbs(size_t bytes, int threads, bool prefetch = false);

// Weight bytes per second (GB/s) that kernels().gemm streams for `w` with `n` random vectors,
// the median of `iters` timed calls after one untimed one, with num_threads() threads. Only the
// weights are counted (activations and outputs are small and cache-resident).
double bench_gemm_gbs(const MatView& w, int n, int iters);

// The sparse FFN kernels on `w` with a random `fraction` of its rows active (sorted, as an
// activity predictor lists them): GB/s of weight bytes touched (the active rows) by gemv_rows
// and by axpy_rows, medians of `iters` timed calls after one untimed one, num_threads() threads.
// REQUIRES: kernels().gemv_rows supports w.type (f32, f16, q8_0, i8r); 0 < fraction <= 1.
struct SparseGbs {
  double gemv_rows = 0, axpy_rows = 0;
  int64_t active = 0;  // rows used
};
SparseGbs bench_sparse_gbs(const MatView& w, double fraction, int iters);

// Fills `data` (dtype_row_bytes(t, cols) * rows bytes) with deterministic random weights of type
// t: uniform in [-1, 1) for f32 / f16; random quantised values with scales of 0.005 .. 0.03 (and
// mins in [-0.1, 0.1]) for the block types and per row for i8r / i1r, so products stay finite. Fast enough for GiB-sized
// matrices (a few hundred MB/s or better).
void fill_random_weights(DType t, int64_t rows, int64_t cols, void* data, uint64_t seed);

}  // namespace rwkv::kern
