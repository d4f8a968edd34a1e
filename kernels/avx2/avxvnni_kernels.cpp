// The "avx2-vnni" table: avx2_kernels.cpp compiled once more with AVX-VNNI enabled, for CPUs
// with AVX2 + FMA + F16C + AVX-VNNI (Intel Alder Lake / Sapphire Rapids and later, AMD Zen 5).
//
// Only the batched quantised gemm differs (quant_rows8 under RWKV_EDGE_AVX2_VNNI): vpdpbusd does
// what maddubs + madd + add do, in one instruction. On the development VM (Sapphire Rapids) that
// took a batch of 8 vectors on a 1 GiB q8_0 matrix from 2.6x to under 2.5x the time of one
// vector (issue #3; docs/PERFORMANCE.md). Compiling the same source twice, rather than copying
// it, keeps one implementation; tests and the known-answer check run both tables.
//
// The pragma adds AVX-VNNI to this file's -mavx2 -mfma -mf16c; kernels.cpp uses the table only
// after __builtin_cpu_supports("avxvnni").
#pragma GCC target("avxvnni")
#define RWKV_EDGE_AVX2_VNNI 1
#include "kernels/avx2/avx2_kernels.cpp"  // NOLINT(bugprone-suspicious-include)
