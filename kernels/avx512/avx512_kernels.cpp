// AVX-512 kernels (compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni on top of -mavx2
// -mfma -mf16c; chosen only on CPUs with all of them whose OS saves the zmm state, see
// kernels.cpp). The "avx512" table.
//
// What it changes over the AVX2 tables (issue #3: "a batch of 8 vectors costs <= 2.5x one
// vector"; issue #5: batched decode):
// - f32 gemm: 16-lane zmm FMAs, and the 32 zmm registers hold tiles of 3 rows x 8 vectors (24
//   accumulators), so each weight is loaded once per 8 vectors instead of once per 4.
// - i1r gemm: the 16 sign bits of a step are the write mask of a masked add,
//   Σ_k ±x_k = 2 Σ_{bit set} x_k - Σ_k x_k: one add per 16 weights and vector, the
//   row-independent Σ_k x_k once per gemm.
// - i8r gemm: the f32 tile with the int8 values widened, 4 rows x 8 vectors.
// - q8_0 gemm with n >= 4: 512-bit vpdpbusd over 8 vectors at once (q8_0_rows8), and the q8_0
//   activation quantiser 16 blocks at a time.
// - wkv5: one pass over a head's state with zmm rows.
// Everything else (f16, whose zmm tile measured slower, see gemm(); q8_0 with n < 4 and the
// other block types; the sparse kernels; the other conversions) is the base table's (avx2-vnni
// or avx2), called through its function pointers.
//
// Everything here has internal linkage and the file instantiates no std:: templates that other
// files also instantiate, so no function compiled with AVX-512 can be picked by the linker for
// code that runs on other CPUs (kernels/internal.h keeps its shared helpers out of line or
// trivially inlined for the same reason).
//
// Numerics: f32 accumulation in 16 lanes, a different reassociation of the scalar sum than the
// AVX2 tables' 8 lanes (kernels.h); i8r / i1r multiply the finished sum by the row scale; q8_0's
// integer block sums are exact, as in every table; wkv5 sums the bonus term's factor apart.
// GCC 12's AVX-512 intrinsics fill "don't care" operands with _mm512_undefined_*(), which it
// then reports as uninitialised wherever they are inlined: false positives, silenced here.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "engine/common/dtype.h"
#include "kernels/internal.h"

namespace rwkv::kern::detail {
namespace {

constexpr int kCacheLine = 64;

// The table this one falls back to (and whose activation quantiser it uses); set once by
// avx512_table() before any use.
const Kernels* g_base = nullptr;

// Lanes [0, rem) set. REQUIRES: 0 <= rem <= 16.
inline __mmask16 tail_mask(int64_t rem) { return (__mmask16)((1u << rem) - 1u); }

// How float_tile reads a row: 16 consecutive weights as f32 (k a multiple of 16 except in
// load_tail), the byte offset of weight k (for prefetches), the bytes of 64 weights, and the
// factor the row's sum is multiplied by. (f32 and i8r use it; see gemm() below for f16.)
struct F32Weights {
  static constexpr int kBytesPer64 = 256;
  static size_t offset(int64_t k) { return 4 * (size_t)k; }
  static float scale(const uint8_t*) { return 1.0f; }
  static __m512 load(const uint8_t* row, int64_t k) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + k);
  }
  // Weights k .. k+rem-1, zero beyond (masked lanes are not read). REQUIRES: 0 < rem < 16.
  static __m512 load_tail(const uint8_t* row, int64_t k, int64_t rem) {
    return _mm512_maskz_loadu_ps(tail_mask(rem), reinterpret_cast<const float*>(row) + k);
  }
};

// i8r: the int8 values widened to f32 (one vpmovsxbd + one vcvtdq2ps per 16 weights); the
// row's scale multiplies the finished sum.
struct I8RWeights {
  static constexpr int kBytesPer64 = 64;
  static size_t offset(int64_t k) { return 4 + (size_t)k; }
  static float scale(const uint8_t* row) { return row_scale(row); }
  static __m512 load(const uint8_t* row, int64_t k) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 4 + k))));
  }
  static __m512 load_tail(const uint8_t* row, int64_t k, int64_t rem) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(tail_mask(rem), row + 4 + k)));
  }
};

// Accumulator sets per (row, vector) pair: a tile with few vectors alternates several so that
// enough FMAs are in flight (latency 4, two ports).
template <int V>
constexpr int acc_sets() {
  return V == 1 ? 4 : V == 2 ? 2 : 1;
}

// Y[v0+v][r0+r] (+)= W[r0+r, k0:k1] · X[v0+v, k0:k1] for r < R, v < V: every weight load feeds
// V FMAs and every activation load R FMAs. Stores when k0 == 0, adds otherwise. Steps of 64
// weights; each asks for the same lines of the next tile's rows into L2, as the AVX2 tiles do
// (kernels/avx2/avx2_kernels.cpp says why).
// What float_tile and sign_tile start with: the tile's rows, its vectors' activation rows and
// zeroed accumulators (A sets per row and vector).
template <int R, int V, int A>
inline void tile_begin(const RowPtrs& w, int64_t r0, const float* x, int64_t ldx, int64_t v0, const uint8_t* (&wr)[R],
                       const float* (&xv)[V], __m512 (&acc)[A][R][V]) {
  for (int r = 0; r < R; ++r) wr[r] = w(r0 + r);
  for (int v = 0; v < V; ++v) xv[v] = x + (v0 + v) * ldx;
  for (int a = 0; a < A; ++a)
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < V; ++v) acc[a][r][v] = _mm512_setzero_ps();
}

// Row r and vector v's accumulator sets added and reduced to one float.
template <int R, int V, int A>
inline float tile_sum(const __m512 (&acc)[A][R][V], int r, int v) {
  __m512 a = acc[0][r][v];
  for (int u = 1; u < A; ++u) a = _mm512_add_ps(a, acc[u][r][v]);
  return _mm512_reduce_add_ps(a);
}

template <class W, int R, int V>
void float_tile(const RowPtrs& w, int64_t r0, const float* x, int64_t ldx, int64_t v0, float* y,
                int64_t ldy, int64_t k0, int64_t k1) {
  constexpr int A = acc_sets<V>();
  const uint8_t* wr[R];
  const float* xv[V];
  __m512 acc[A][R][V];
  tile_begin(w, r0, x, ldx, v0, wr, xv, acc);
  const int64_t next_tile = R * (int64_t)w.stride;

  // The first vector group fetches; later groups over the same span find the lines there.
  const bool fetch = v0 == 0;
  int64_t k = k0;
  for (; k + 64 <= k1; k += 64) {
    for (int r = 0; r < R && fetch; ++r) {
      // A prefetch past the end of the matrix is a harmless hint.
      const char* ahead = reinterpret_cast<const char*>(wr[r] + next_tile + W::offset(k));
      for (int l = 0; l < W::kBytesPer64 / kCacheLine; ++l) _mm_prefetch(ahead + kCacheLine * l, _MM_HINT_T1);
    }
    for (int u = 0; u < 4; ++u) {
      __m512 wv[R];
      for (int r = 0; r < R; ++r) wv[r] = W::load(wr[r], k + 16 * u);
      for (int v = 0; v < V; ++v) {
        const __m512 xk = _mm512_loadu_ps(xv[v] + k + 16 * u);
        for (int r = 0; r < R; ++r) acc[u % A][r][v] = _mm512_fmadd_ps(wv[r], xk, acc[u % A][r][v]);
      }
    }
  }
  for (; k < k1; k += 16) {
    const int64_t rem = k1 - k;
    __m512 wv[R];
    __m512 xk[V];
    if (rem >= 16) {
      for (int r = 0; r < R; ++r) wv[r] = W::load(wr[r], k);
      for (int v = 0; v < V; ++v) xk[v] = _mm512_loadu_ps(xv[v] + k);
    } else {
      for (int r = 0; r < R; ++r) wv[r] = W::load_tail(wr[r], k, rem);
      for (int v = 0; v < V; ++v) xk[v] = _mm512_maskz_loadu_ps(tail_mask(rem), xv[v] + k);
    }
    for (int v = 0; v < V; ++v)
      for (int r = 0; r < R; ++r) acc[0][r][v] = _mm512_fmadd_ps(wv[r], xk[v], acc[0][r][v]);
  }
  for (int r = 0; r < R; ++r) {
    const float s = W::scale(wr[r]);
    for (int v = 0; v < V; ++v) {
      float& out = y[(v0 + v) * ldy + r0 + r];
      const float sum = s * tile_sum(acc, r, v);
      out = k0 == 0 ? sum : out + sum;
    }
  }
}

// The sign bits of weights k .. k+15 of an i1r row as a lane mask (bit j: weight k+j is +1),
// only the `rem` first when rem < 16, without reading past the row's last byte.
// REQUIRES: k % 16 == 0.
// (kmovw from memory: a load, where a load into a general register and kmovw from it would add
// a port-5 uop per 16 weights.)
inline __mmask16 sign_mask(const uint8_t* row, int64_t k) {
  return _load_mask16(reinterpret_cast<__mmask16*>(const_cast<uint8_t*>(row + 4 + ((size_t)k >> 3))));
}
inline __mmask16 sign_mask_tail(const uint8_t* row, int64_t k, int64_t rem) {
  uint16_t m = 0;
  std::memcpy(&m, row + 4 + ((size_t)k >> 3), (size_t)(rem + 7) / 8);
  return (__mmask16)(m & tail_mask(rem));
}

// i1r: Y[v0+v][r0+r] (+)= s_r Σ_{k0 <= k < k1} ±x_k as 2 s_r Σ_{bit set} x_k, minus s_r xsum[v]
// (Σ_k x_k over the whole row) when k0 == 0: one masked add per 16 weights and vector, where a
// ±1.0f vector and an FMA would take two. Prefetches like float_tile, once per 512 weights
// (a line of signs).
template <int R, int V>
void sign_tile(const RowPtrs& w, int64_t r0, const float* x, int64_t ldx, const float* xsum, int64_t v0,
               float* y, int64_t ldy, int64_t k0, int64_t k1) {
  constexpr int A = acc_sets<V>();
  const uint8_t* wr[R];
  const float* xv[V];
  __m512 acc[A][R][V];
  tile_begin(w, r0, x, ldx, v0, wr, xv, acc);
  const int64_t next_tile = R * (int64_t)w.stride;

  const bool fetch = v0 == 0;
  int64_t k = k0;
  for (; k + 64 <= k1; k += 64) {
    if (fetch && (k - k0) % 512 == 0) {
      for (int r = 0; r < R; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(wr[r] + next_tile + 4 + ((size_t)k >> 3)), _MM_HINT_T1);
      }
    }
    for (int u = 0; u < 4; ++u) {
      __mmask16 m[R];
      for (int r = 0; r < R; ++r) m[r] = sign_mask(wr[r], k + 16 * u);
      for (int v = 0; v < V; ++v) {
        const __m512 xk = _mm512_loadu_ps(xv[v] + k + 16 * u);
        for (int r = 0; r < R; ++r) {
          acc[u % A][r][v] = _mm512_mask_add_ps(acc[u % A][r][v], m[r], acc[u % A][r][v], xk);
        }
      }
    }
  }
  for (; k < k1; k += 16) {
    const int64_t rem = k1 - k < 16 ? k1 - k : 16;
    __mmask16 m[R];
    for (int r = 0; r < R; ++r) m[r] = rem == 16 ? sign_mask(wr[r], k) : sign_mask_tail(wr[r], k, rem);
    for (int v = 0; v < V; ++v) {
      const __m512 xk = _mm512_maskz_loadu_ps(tail_mask(rem), xv[v] + k);
      for (int r = 0; r < R; ++r) acc[0][r][v] = _mm512_mask_add_ps(acc[0][r][v], m[r], acc[0][r][v], xk);
    }
  }
  for (int r = 0; r < R; ++r) {
    const float s = row_scale(wr[r]);
    for (int v = 0; v < V; ++v) {
      const float twice = 2.0f * tile_sum(acc, r, v);
      float& out = y[(v0 + v) * ldy + r0 + r];
      out = k0 == 0 ? s * (twice - xsum[v0 + v]) : out + s * twice;
    }
  }
}

// --- driving the tiles ------------------------------------------------------------------------

// Tiles of 3 rows x up to 8 vectors: 24 zmm accumulators, 3 weight vectors and an activation
// fit the 32 registers. Span: 3 rows x 512 f32 (6 KiB) and 8 vectors' 512 activations (16 KiB)
// stay in L1 while a second vector group passes (n > 8).
constexpr int kTileRows = 3, kTileVecs = 8, kSpan = 512;

// i8r tiles of 4 rows x up to 8 vectors: each widened weight vector (vpmovsxbd + vcvtdq2ps)
// then feeds 8 FMAs. 2 threads, 512 MiB i8r matrix of 4096 columns, time of 8 vectors over one,
// three runs each, alternating: 2 rows 3.10, 2.79, 2.60x; 3 rows 2.61, 2.50, 2.78, 2.49, 2.35,
// 2.33x; 4 rows 1.97, 2.33, 2.01, 2.05, 2.03, 2.14x; 5 rows 2.33, 2.22, 2.18x; 6 rows 2.35, 2.40,
// 2.50x (4 x 8 accumulators do not all fit the registers; the compiler's spills cost less than
// the extra activation loads of smaller tiles).
constexpr int kI8rTileRows = 4;

template <class W, int TR = kTileRows>
void gemm_float(const MatView& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy) {
  const RowPtrs wr(w);
  run_tiles<TR, kTileVecs, kSpan>(w, n, [&](auto rows, auto vecs, int64_t r0, int64_t v0, int64_t k0, int64_t k1) {
    float_tile<W, decltype(rows)::value, decltype(vecs)::value>(wr, r0, x, ldx, v0, y, ldy, k0, k1);
  });
}

// Σ_k x[k] for k < cols, in 16 lanes.
float sum_floats(const float* x, int64_t cols) {
  __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= cols; k += 32) {
    a = _mm512_add_ps(a, _mm512_loadu_ps(x + k));
    b = _mm512_add_ps(b, _mm512_loadu_ps(x + k + 16));
  }
  for (; k < cols; k += 16) {
    const int64_t rem = cols - k < 16 ? cols - k : 16;
    a = _mm512_add_ps(a, _mm512_maskz_loadu_ps(tail_mask(rem), x + k));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(a, b));
}

void gemm_sign(const MatView& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy) {
  // Σ_k x_k of every vector, once, on the calling thread; the team only reads them.
  float* xsum = reinterpret_cast<float*>(thread_scratch((size_t)n * sizeof(float)));
  for (int64_t v = 0; v < n; ++v) xsum[v] = sum_floats(x + v * ldx, w.cols);
  const RowPtrs wr(w);
  run_tiles<kTileRows, kTileVecs, kSpan>(w, n, [&](auto rows, auto vecs, int64_t r0, int64_t v0, int64_t k0, int64_t k1) {
    sign_tile<decltype(rows)::value, decltype(vecs)::value>(wr, r0, x, ldx, xsum, v0, y, ldy, k0, k1);
  });
}

// --- q8_0 activations -----------------------------------------------------------------------------

// x * id rounded half away from zero (lround), for |x * id| well inside the int32 range.
inline __m512i round_half_away(__m512 v) {
  const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __mmask16 bump = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(v, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  // ±1 with v's sign (integer and/or: AVX512DQ is not required).
  const __m512 one = _mm512_castsi512_ps(_mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(INT32_MIN)),
                                                         _mm512_castps_si512(_mm512_set1_ps(1.0f))));
  return _mm512_cvttps_epi32(_mm512_mask_add_ps(t, bump, t, one));
}

// y[n/32] = x[n] quantised to q8_0 blocks, bit for bit as quantize_row_q8_0 for finite x: 16
// blocks at a time, so d = amax / 127, id = 1 / d and the f16 rounding of d are one vector
// operation each (IEEE division and round-to-nearest-even conversion, as the scalar code) instead
// of two scalar divisions and a software conversion per block.
void quantize_q8_0(const float* x, BlockQ8_0* y, int64_t n) {
  assert(n % kQK == 0);
  const int64_t nb = n / kQK;
  for (int64_t b0 = 0; b0 < nb; b0 += 16) {
    const int m = nb - b0 < 16 ? (int)(nb - b0) : 16;
    alignas(64) float amax[16] = {};
    for (int j = 0; j < m; ++j) {
      const float* p = x + (b0 + j) * kQK;
      amax[j] = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(p)), _mm512_abs_ps(_mm512_loadu_ps(p + 16))));
    }
    const __m512 d = _mm512_div_ps(_mm512_load_ps(amax), _mm512_set1_ps(127.0f));
    const __mmask16 nonzero = _mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_NEQ_OQ);
    alignas(64) float id[16];
    _mm512_store_ps(id, _mm512_maskz_div_ps(nonzero, _mm512_set1_ps(1.0f), d));
    alignas(32) uint16_t dh[16];
    _mm256_store_si256(reinterpret_cast<__m256i*>(dh), _mm512_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (int j = 0; j < m; ++j) {
      const float* p = x + (b0 + j) * kQK;
      const __m512 s = _mm512_set1_ps(id[j]);
      BlockQ8_0& blk = y[b0 + j];
      blk.d = dh[j];
      _mm_storeu_si128(reinterpret_cast<__m128i*>(blk.qs), _mm512_cvtsepi32_epi8(round_half_away(_mm512_mul_ps(_mm512_loadu_ps(p), s))));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(blk.qs + 16),
                       _mm512_cvtsepi32_epi8(round_half_away(_mm512_mul_ps(_mm512_loadu_ps(p + 16), s))));
    }
  }
}

// --- q8_0, 8 vectors at a time ------------------------------------------------------------------

// The q8_0-quantised activations of a gemm for q8_0_rows8, by groups of 8 vectors (the last
// padded with zero vectors) and pairs of blocks (2j, 2j+1; an odd last block is paired with a
// zero block): per (group, pair), eight 64-byte registers, where lane 2v (int32) of register p
// holds dword kPairChunk[p] of vector v's block 2j and lane 2v+1 the same dword of its block
// 2j+1; then per lane the block's scale d (f32 of the fp16) and the offset -128 Σq.
struct Acts8 {
  const int8_t* q;     // [groups * np * 512]
  const float* d;      // [groups * np * 16]
  const int32_t* off;  // [groups * np * 16]
  int64_t np;          // pairs of blocks: (nb + 1) / 2
  int64_t nb;          // blocks per row
};

// The dword of a block that the p-th 8-byte group of a decoded pair holds (the order of the
// AVX2-era unpacklo/hi decode, kept: the decode's vpermt2d can produce any order).
constexpr int kPairChunk[8] = {0, 1, 4, 5, 2, 3, 6, 7};

// Y[8g+v][r0+r] = the q8_0 dot over all columns for r < R, every group g < groups and v with
// 8g + v < n. A run of blocks of each row is decoded first into `dec`: the weights as unsigned
// u = w + 128 (w xor 0x80), each pair of blocks as 64 bytes whose 8-byte groups hold one dword
// of block 2j and the same dword of block 2j+1, and the blocks' d_w as f32. The main loop
// broadcasts each 8-byte group to every 64-bit lane (a plain load), so one 512-bit vpdpbusd
// multiplies 4 weights of each of the two blocks with 8 vectors' activations: lane 2v sums block
// 2j, lane 2v+1 block 2j+1. Eight of them, in two chains of four per row (vpdpbusd's latency is six
// cycles, and the tile's rows and the next pairs' chains are independent of these, so two per
// row keep the ports busy; four chains cost two more adds and measured 3% slower), give Σ u x per lane, which starts from -128 Σx, so
// the lanes hold Σ w x exactly in int32; then lanes * (d_w d_x) are accumulated in f32 and the
// two lanes of each vector added at the end. Every lane does useful work, so one conversion and
// one multiply-add cover two blocks. Every group of 8 vectors passes over the decoded run, so a
// prefill chunk decodes each weight once. When `fetch` > 0, asks for the weights `fetch` bytes
// ahead of each row into L2.
template <int R>
void q8_0_rows8(const RowPtrs& w, int64_t r0, const Acts8& xa, int64_t groups, int64_t n, float* y, int64_t ldy,
                int64_t fetch);

// Byte offsets of 16 consecutive q8_0 blocks.
inline __m512i block_offsets() {
  return _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                            _mm512_set1_epi32((int)sizeof(BlockQ8_0)));
}

inline __m512i bcast8(const uint8_t* p) { return _mm512_broadcastq_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))); }

template <int R>
void q8_0_rows8(const RowPtrs& w, int64_t r0, const Acts8& xa, int64_t groups, int64_t n, float* y, int64_t ldy,
                int64_t fetch) {
  // kRun blocks (kRun / 2 pairs) per run; the groups' accumulators wait in `accm` between runs
  // (up to kMaxGroups at a time).
  constexpr int kRun = 32, kMaxGroups = 16;
  alignas(64) uint8_t dec[R][kRun / 2][2 * kQK];
  alignas(64) float dwf[R][kRun + 16];  // a 16-wide store may fill up to 16 past the run
  alignas(64) float accm[kMaxGroups][R][16];
  const int64_t np = xa.np, nb = xa.nb;
  const BlockQ8_0* wb[R];
  for (int r = 0; r < R; ++r) wb[r] = reinterpret_cast<const BlockQ8_0*>(w(r0 + r));
  const __m512i flip = _mm512_set1_epi8((char)0x80);
  // Dword k of the result: dword kPairChunk[k / 2] of block 2j (k even) or 2j+1 (k odd); as
  // vpermt2d indices, 0-7 pick from the first block, 16-23 from the second.
  const __m512i pair_order = _mm512_setr_epi32(0, 16, 1, 17, 4, 20, 5, 21, 2, 18, 3, 19, 6, 22, 7, 23);

  for (int64_t g_lo = 0; g_lo < groups; g_lo += kMaxGroups) {
    const int64_t gn = groups - g_lo < kMaxGroups ? groups - g_lo : kMaxGroups;
    for (int64_t gi = 0; gi < gn; ++gi) {
      for (int r = 0; r < R; ++r) _mm512_store_ps(accm[gi][r], _mm512_setzero_ps());
    }
    for (int64_t run = 0; run < nb; run += kRun) {
      const int64_t run_end = nb - run < kRun ? nb : run + kRun;
      const int64_t pairs = (run_end - run + 1) / 2;
      for (int r = 0; r < R; ++r) {
        for (int64_t j = 0; j < pairs; ++j) {
          const int64_t i = run + 2 * j;
          // One two-source permute interleaves the blocks' dwords in kPairChunk order, one xor
          // makes them unsigned (the zero block's weights become 0x80, i.e. w = 0).
          const __m512i a = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb[r][i].qs)));
          const __m512i b = i + 1 < run_end
                                ? _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb[r][i + 1].qs)))
                                : _mm512_setzero_si512();
          _mm512_store_si512(dec[r][j], _mm512_xor_si512(_mm512_permutex2var_epi32(a, pair_order, b), flip));
        }
        // The scales 16 blocks at a time: one gather of the blocks' first 4 bytes (d and two
        // weights, inside the block), the low halves packed, one conversion; a zero scale for
        // the zero block that pads an odd run. (Copying the halves out with scalar loads and
        // stores instead: 768 x 768, 8 vectors, one thread, 47.1 -> 50.4 us.)
        for (int64_t i = run; i < run_end; i += 16) {
          const __mmask16 m = tail_mask(run_end - i < 16 ? run_end - i : 16);
          const __m512i raw = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, block_offsets(),
                                                          reinterpret_cast<const void*>(wb[r] + i), 1);
          _mm512_storeu_ps(dwf[r] + (i - run), _mm512_cvtph_ps(_mm512_cvtepi32_epi16(raw)));
        }
      }
      const int64_t p0 = run / 2;
      for (int64_t gi = 0; gi < gn; ++gi) {
        const int64_t g = g_lo + gi;
        __m512 acc[R];
        for (int r = 0; r < R; ++r) acc[r] = _mm512_load_ps(accm[gi][r]);
        for (int64_t j = 0; j < pairs; ++j) {
          const int64_t xi = g * np + p0 + j;
          const int8_t* xq = xa.q + xi * 512;
          __m512i x8[8];
          for (int p = 0; p < 8; ++p) x8[p] = _mm512_load_si512(xq + 64 * p);
          const __m512i neg_off = _mm512_load_si512(xa.off + xi * 16);
          const __m512 dx = _mm512_load_ps(xa.d + xi * 16);
          if (fetch > 0 && gi == 0) {
            // Two blocks per pair: 68 bytes, within two cache lines. A prefetch past the end of
            // the matrix is a harmless hint.
            for (int r = 0; r < R; ++r) {
              _mm_prefetch(reinterpret_cast<const char*>(wb[r] + run + 2 * j) + fetch, _MM_HINT_T1);
              _mm_prefetch(reinterpret_cast<const char*>(wb[r] + run + 2 * j) + fetch + 64, _MM_HINT_T1);
            }
          }
          for (int r = 0; r < R; ++r) {
            const uint8_t* u = dec[r][j];
            __m512i c0 = _mm512_dpbusd_epi32(neg_off, bcast8(u), x8[0]);
            __m512i c1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), bcast8(u + 8), x8[1]);
            c0 = _mm512_dpbusd_epi32(c0, bcast8(u + 16), x8[2]);
            c1 = _mm512_dpbusd_epi32(c1, bcast8(u + 24), x8[3]);
            c0 = _mm512_dpbusd_epi32(c0, bcast8(u + 32), x8[4]);
            c1 = _mm512_dpbusd_epi32(c1, bcast8(u + 40), x8[5]);
            c0 = _mm512_dpbusd_epi32(c0, bcast8(u + 48), x8[6]);
            c1 = _mm512_dpbusd_epi32(c1, bcast8(u + 56), x8[7]);
            const __m512i dot = _mm512_add_epi32(c0, c1);
            double dw2;  // d_w of blocks 2j and 2j+1, for lanes 2v and 2v+1
            std::memcpy(&dw2, dwf[r] + 2 * j, 8);
            const __m512 d = _mm512_mul_ps(_mm512_castpd_ps(_mm512_set1_pd(dw2)), dx);
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), d, acc[r]);
          }
        }
        for (int r = 0; r < R; ++r) _mm512_store_ps(accm[gi][r], acc[r]);
      }
    }
    for (int64_t gi = 0; gi < gn; ++gi) {
      const int64_t g = g_lo + gi;
      const int nv = n - 8 * g < 8 ? (int)(n - 8 * g) : 8;
      for (int r = 0; r < R; ++r) {
        for (int v = 0; v < nv; ++v) y[(8 * g + v) * ldy + r0 + r] = accm[gi][r][2 * v] + accm[gi][r][2 * v + 1];
      }
    }
  }
}

// Tiles of 8 rows: their decoded runs take 8 KiB of L1, and each group's activation registers
// (ten loads per pair of blocks) serve eight rows, whose own loads are nine per pair; with 4 rows
// the loads nearly matched the vector ops and both ports ran full. 4 -> 8 rows, one thread, hot
// L2, minimum of 200 calls: 3072 x 768 n=64 1231 -> 1074 us, 768 x 3072 n=64 971 -> 928 us,
// 3072 x 768 n=8 184 -> 169 us; engine prefill and batched decode gained likewise (docs/PERFORMANCE.md).
constexpr int kQuantTileRows = 8;

// q8_0 gemm for n >= 4, groups of 8 vectors (the last padded with zero vectors). Fewer than 4
// go to the base table, whose per-vector tiles suit them: minimum of 200 x 50 calls on a
// 768 x 3072 matrix, one thread, base n = 1, 2, 3, 4, 5, 7: 88, 124, 173, 215, 287, 382 us,
// this one (any n <= 8): 198 us.
void gemm_q8_0(const MatView& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy) {
  assert(w.cols % kQK == 0);
  const int64_t nb = w.cols / kQK, np = (nb + 1) / 2, groups = (n + 7) / 8;
  // Quantise every activation row once (bit for bit the scalar quantiser), then interleave,
  // both on the team from two groups of vectors on: on one thread they were 4% of a 64-row
  // prefill chunk with the other thread waiting (two threads, 768 x 3072 n=64: 560 -> 490 us);
  // for one group the two hand-offs cost what they save.
  const size_t nq = (size_t)(n * nb), ng = (size_t)(groups * np);
  uint8_t* scratch = thread_scratch(nq * sizeof(BlockQ8_0) + ng * (512 + 16 * 4 + 16 * 4) + 64);
  int8_t* q = reinterpret_cast<int8_t*>(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
  float* d = reinterpret_cast<float*>(q + ng * 512);
  int32_t* off = reinterpret_cast<int32_t*>(d + ng * 16);
  BlockQ8_0* blocks = reinterpret_cast<BlockQ8_0*>(off + ng * 16);
  const int threads = gemm_threads(w.rows * w.cols * n), prep_threads = groups > 1 ? threads : 1;
  parallel_for(n, prep_threads, [&](int64_t v) { quantize_q8_0(x + v * ldx, blocks + v * nb, w.cols); });
  // Interleave (Acts8): per (group, pair), dword c of vector v's block 2j + h goes to lane
  // 2v + h of the register p with kPairChunk[p] == c, i.e. bytes 8v + 4h .. +3 of the register;
  // Σq from a sum of absolute differences against -128 (Σ(q+128) - 32*128). Padding vectors and
  // the zero block of an odd pair are zero (q, d and offset), so they add exact zeros.
  const __m256i flip = _mm256_set1_epi8((char)0x80);
  parallel_for((int64_t)ng, prep_threads, [&](int64_t gp) {
    const int64_t g = gp / np, j = gp % np;
    int8_t* qd = q + gp * 512;
    alignas(64) float dv[16] = {};
    alignas(64) int32_t ov[16] = {};
    for (int v = 0; v < 8; ++v) {
      for (int h = 0; h < 2; ++h) {
        const int64_t src = 8 * g + v, b = 2 * j + h;
        alignas(32) int32_t dw[8] = {};
        if (src < n && b < nb) {
          const BlockQ8_0& blk = blocks[src * nb + b];
          const __m256i qs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qs));
          const __m256i sad = _mm256_sad_epu8(_mm256_xor_si256(qs, flip), _mm256_setzero_si256());
          const __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(sad), _mm256_extracti128_si256(sad, 1));
          const int32_t sum = (int32_t)(_mm_cvtsi128_si64(s2) + _mm_extract_epi64(s2, 1)) - 32 * 128;
          dv[2 * v + h] = _cvtsh_ss(blk.d);
          ov[2 * v + h] = -128 * sum;
          _mm256_store_si256(reinterpret_cast<__m256i*>(dw), qs);
        }
        for (int p = 0; p < 8; ++p) std::memcpy(qd + 64 * p + 8 * v + 4 * h, &dw[kPairChunk[p]], 4);
      }
    }
    _mm512_store_ps(d + gp * 16, _mm512_load_ps(dv));
    _mm512_store_si512(off + gp * 16, _mm512_load_si512(ov));
  });
  const Acts8 xa{q, d, off, np, nb};
  const RowPtrs wr(w);
  // Tiles of kQuantTileRows rows over all columns and all groups (a partial tile at the
  // bottom goes one row at a time); each thread takes contiguous tiles.
  constexpr int R = kQuantTileRows;
  const int64_t tiles = (w.rows + R - 1) / R;
  parallel_for(tiles, threads, [&](int64_t t) {
    const int64_t r0 = t * R;
    if (w.rows - r0 >= R) {
      q8_0_rows8<R>(wr, r0, xa, groups, n, y, ldy, R * (int64_t)wr.stride);
    } else {
      for (int64_t r = r0; r < w.rows; ++r) q8_0_rows8<1>(wr, r, xa, groups, n, y, ldy, 0);
    }
  });
}

// --- WKV -----------------------------------------------------------------------------------------

// The v5/v6 WKV step (kernels.h) for value columns [i0, i0 + 16 B), in one pass over the key rows:
// y[i] = Σ_j r_j st[j][i] + (Σ_j r_j u_j k_j) v_i, the bonus term's scalar factor summed apart
// (the same value as the reference's per-term sum, up to rounding), so each row costs one
// multiply-add into y and a multiply and a multiply-add for the state. Even and odd rows
// accumulate into separate sets, halving the dependency chain through y. With S = 64 a head's
// state (16 KiB) is read and written once; the AVX2 entry walked it twice, 32 columns at a time.
// 64 x 64 heads, one thread, cycling through 0.1 / 18.9 MB of states: AVX2 0.51 / 0.96 us per
// head at 16-byte aligned states; 64-byte aligned states (engine/state.h): AVX2 0.58-0.63 / 0.86-0.99,
// this one 0.41-0.42 / 0.76-0.79 us per head.
template <int B>
void wkv5_cols(int64_t S, int64_t i0, float* st, const float* r, const float* k, const float* v, const float* w,
               float bonus, float* y) {
  __m512 acc[2][B], vv[B];
  for (int b = 0; b < B; ++b) {
    acc[0][b] = acc[1][b] = _mm512_setzero_ps();
    vv[b] = _mm512_loadu_ps(v + i0 + 16 * b);
  }
  const auto row_step = [&](int64_t j, __m512 (&a)[B]) {
    const __m512 rj = _mm512_set1_ps(r[j]), kj = _mm512_set1_ps(k[j]), wj = _mm512_set1_ps(w[j]);
    float* row = st + j * S + i0;
    for (int b = 0; b < B; ++b) {
      const __m512 sv = _mm512_loadu_ps(row + 16 * b);
      a[b] = _mm512_fmadd_ps(rj, sv, a[b]);
      _mm512_storeu_ps(row + 16 * b, _mm512_fmadd_ps(wj, sv, _mm512_mul_ps(kj, vv[b])));
    }
  };
  int64_t j = 0;
  for (; j + 2 <= S; j += 2) {
    row_step(j, acc[0]);
    row_step(j + 1, acc[1]);
  }
  if (j < S) row_step(j, acc[0]);
  const __m512 bv = _mm512_set1_ps(bonus);
  for (int b = 0; b < B; ++b) _mm512_storeu_ps(y + i0 + 16 * b, _mm512_fmadd_ps(bv, vv[b], _mm512_add_ps(acc[0][b], acc[1][b])));
}

void wkv5(int64_t S, float* st, const float* r, const float* k, const float* v, const float* w, const float* u,
          float* y) {
  // Σ_j r_j u_j k_j, in 16 lanes (a scalar chain of S dependent adds cost a quarter of a head).
  __m512 b16 = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= S; j += 16) {
    b16 = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_loadu_ps(r + j), _mm512_loadu_ps(u + j)), _mm512_loadu_ps(k + j), b16);
  }
  float bonus = _mm512_reduce_add_ps(b16);
  for (; j < S; ++j) bonus += r[j] * u[j] * k[j];
  int64_t i0 = 0;
  for (; i0 + 64 <= S; i0 += 64) wkv5_cols<4>(S, i0, st, r, k, v, w, bonus, y);
  for (; i0 + 16 <= S; i0 += 16) wkv5_cols<1>(S, i0, st, r, k, v, w, bonus, y);
  if (i0 < S) wkv5_columns(S, i0, st, r, k, v, w, u, y);
}

// --- the table ----------------------------------------------------------------------------------

// Y[n, rows] = X[n, cols] · W[rows, cols]^T (see kernels.h).
void gemm(const MatView& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy) {
  assert(is_weight_type(w.type));
  switch (w.type) {
    case DType::kF32: gemm_float<F32Weights>(w, x, ldx, n, y, ldy); return;
    case DType::kI8R: gemm_float<I8RWeights, kI8rTileRows>(w, x, ldx, n, y, ldy); return;
    // f16 stays with the base table: its zmm tile (vcvtph2ps zmm, 3 rows x 8 vectors) made a
    // batch of 8 slower on the development VM (2.1-2.5x the time of one vector against 1.7-1.8x,
    // three runs each; docs/PERFORMANCE.md). The i8r tile measured the same way before the
    // activations were 64-byte aligned; with aligned activations and 4 rows it is the faster.
    case DType::kI1R: gemm_sign(w, x, ldx, n, y, ldy); return;
    case DType::kQ8_0:
      if (n >= 4) {
        gemm_q8_0(w, x, ldx, n, y, ldy);
      } else {
        g_base->gemm(w, x, ldx, n, y, ldy);
      }
      return;
    default: g_base->gemm(w, x, ldx, n, y, ldy); return;
  }
}

}  // namespace

const Kernels& avx512_table(const Kernels& base) {
  static const Kernels k = [&] {
    g_base = &base;
    Kernels t = base;
    t.name = "avx512";
    t.gemm = gemm;
    t.quantize_q8_0 = quantize_q8_0;
    t.wkv5 = wkv5;
    return t;
  }();
  return k;
}

}  // namespace rwkv::kern::detail
