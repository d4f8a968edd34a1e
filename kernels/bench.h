// Micro-benchmarks for the kernels: what the memory delivers, and what a gemm gets of it.
//
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
// gemm reads several rows at once); returns the median of 7 timed passes after one untimed one. Make `bytes` several times the last-level cache to measure
// main memory rather than the cache.
double measure_read_bandwidth_gbs(size_t bytes, int threads);

// Weight bytes per second (GB/s) that kernels().gemm streams for `w` with `n` random vectors,
// the median of `iters` timed calls after one untimed one, with num_threads() threads. Only the
// weights are counted (activations and outputs are small and cache-resident).
double bench_gemm_gbs(const MatView& w, int n, int iters);

}  // namespace rwkv::kern
