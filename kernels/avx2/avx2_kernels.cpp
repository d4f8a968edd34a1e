// AVX2 + FMA + F16C kernels (compiled with -mavx2 -mfma -mf16c; chosen only on CPUs that have
// all three, see kernels.cpp).
//
// Layout of the work: the weight matrix is cut into tiles of a few rows; threads take
// contiguous runs of tiles. Within a tile the n activation vectors go a few at a time and each
// (row, vector) pair keeps its own 8-lane accumulator, so one pass over a tile's weights serves
// several vectors. For n larger than one group the columns go by spans that stay in L1 while
// every group passes over them, so main memory delivers each weight once per gemm whatever n is.
//
// Numerics: f32/f16 products are accumulated in 8 f32 lanes (a reassociation of the scalar
// sum). Quantised blocks compute the same exact integer dot as the scalar reference, spread
// over int32 lanes, then lanes * (d_w * d_x) are accumulated in f32.
#include <immintrin.h>

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "engine/common/dtype.h"
#include "engine/common/fp16.h"
#include "kernels/internal.h"

namespace rwkv::kern::detail {
namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x1));
  return _mm_cvtsi128_si32(s);
}

inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

// Lanes [0, rem) all ones, the rest zero. REQUIRES: 0 <= rem <= 8.
inline __m256i lane_mask(int64_t rem) {
  static const int32_t kBits[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kBits + 8 - rem));
}

// --- float weights ----------------------------------------------------------------------------

// Loads 8 consecutive weights of a row as f32.
struct F32Weights {
  static __m256 load(const uint8_t* row, int64_t k) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + k);
  }
  // Weights k .. k+rem-1, zero beyond. REQUIRES: 0 < rem < 8.
  static __m256 load_tail(const uint8_t* row, int64_t k, int64_t rem) {
    return _mm256_maskload_ps(reinterpret_cast<const float*>(row) + k, lane_mask(rem));
  }
};

struct F16Weights {
  static __m256 load(const uint8_t* row, int64_t k) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k)));
  }
  static __m256 load_tail(const uint8_t* row, int64_t k, int64_t rem) {
    uint16_t h[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::memcpy(h, row + 2 * k, (size_t)rem * 2);
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h)));
  }
};

// Y[v0+v][r0+r] (+)= W[r0+r, k0:k1] · X[v0+v, k0:k1] for r < R, v < V: every weight load feeds
// V FMAs and every activation load R FMAs. Stores when k0 == 0, adds otherwise. With V == 1 the
// k loop is unrolled twice (two accumulator sets) to keep enough FMAs in flight.
template <class W, int R, int V>
void float_tile(const MatView& w, int64_t r0, const float* x, int64_t ldx, int64_t v0, float* y,
                int64_t ldy, int64_t k0, int64_t k1) {
  constexpr int U = V == 1 ? 2 : 1;
  const uint8_t* wr[R];
  for (int r = 0; r < R; ++r) wr[r] = w.row(r0 + r);
  const float* xv[V];
  for (int v = 0; v < V; ++v) xv[v] = x + (v0 + v) * ldx;

  __m256 acc[U][R][V];
  for (int u = 0; u < U; ++u)
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < V; ++v) acc[u][r][v] = _mm256_setzero_ps();

  int64_t k = k0;
  for (; k + 8 * U <= k1; k += 8 * U) {
    for (int u = 0; u < U; ++u) {
      __m256 wv[R];
      for (int r = 0; r < R; ++r) wv[r] = W::load(wr[r], k + 8 * u);
      for (int v = 0; v < V; ++v) {
        const __m256 xk = _mm256_loadu_ps(xv[v] + k + 8 * u);
        for (int r = 0; r < R; ++r) acc[u][r][v] = _mm256_fmadd_ps(wv[r], xk, acc[u][r][v]);
      }
    }
  }
  for (; k < k1; k += 8) {
    const int64_t rem = k1 - k;
    __m256 wv[R];
    __m256 xk[V];
    if (rem >= 8) {
      for (int r = 0; r < R; ++r) wv[r] = W::load(wr[r], k);
      for (int v = 0; v < V; ++v) xk[v] = _mm256_loadu_ps(xv[v] + k);
    } else {
      for (int r = 0; r < R; ++r) wv[r] = W::load_tail(wr[r], k, rem);
      for (int v = 0; v < V; ++v) xk[v] = _mm256_maskload_ps(xv[v] + k, lane_mask(rem));
    }
    for (int v = 0; v < V; ++v)
      for (int r = 0; r < R; ++r) acc[0][r][v] = _mm256_fmadd_ps(wv[r], xk[v], acc[0][r][v]);
  }
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < V; ++v) {
      __m256 a = acc[0][r][v];
      for (int u = 1; u < U; ++u) a = _mm256_add_ps(a, acc[u][r][v]);
      float& out = y[(v0 + v) * ldy + r0 + r];
      out = k0 == 0 ? hsum(a) : out + hsum(a);
    }
  }
}

// --- quantised weights ------------------------------------------------------------------------

// One block's 32 weights as int8 lanes: signed values for the _0 types, unsigned for _1.
inline __m256i unpack_nibbles(const uint8_t qs[16]) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  // Weights 0..15 are the low nibbles, 16..31 the high nibbles.
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

// Byte j = 0xff where bit j of the little-endian qh is set, else 0.
inline __m256i expand_bits(const uint8_t qh[4]) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32((int)h),
      _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                       2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
}

struct Q4_0Weights {
  using Block = BlockQ4_0;
  static constexpr bool kSigned = true;
  static __m256i decode(const Block& b) {
    return _mm256_sub_epi8(unpack_nibbles(b.qs), _mm256_set1_epi8(8));
  }
};
struct Q4_1Weights {
  using Block = BlockQ4_1;
  static constexpr bool kSigned = false;
  static __m256i decode(const Block& b) { return unpack_nibbles(b.qs); }
};
struct Q5_0Weights {
  using Block = BlockQ5_0;
  static constexpr bool kSigned = true;
  // q - 16 with q = nib + 16 * bit: nib itself where the bit is set, and nib - 16, which in
  // two's complement is nib | 0xf0, where it is clear.
  static __m256i decode(const Block& b) {
    const __m256i hi = _mm256_andnot_si256(expand_bits(b.qh), _mm256_set1_epi8((char)0xf0));
    return _mm256_or_si256(unpack_nibbles(b.qs), hi);
  }
};
struct Q5_1Weights {
  using Block = BlockQ5_1;
  static constexpr bool kSigned = false;
  static __m256i decode(const Block& b) {
    const __m256i hi = _mm256_and_si256(expand_bits(b.qh), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(unpack_nibbles(b.qs), hi);
  }
};
struct Q8_0Weights {
  using Block = BlockQ8_0;
  static constexpr bool kSigned = true;
  static __m256i decode(const Block& b) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs));
  }
};

// Which activation block pairs with weight blocks Q: q8_1 when the weights carry a min.
template <class Q>
using ActBlock = std::conditional_t<Q::kSigned, BlockQ8_0, BlockQ8_1>;

// The quantised activations of a gemm: n rows of nb blocks, plus their fp16 scales (and for
// q8_1 the sums s) already widened to f32, so four consecutive blocks' scales are one load.
template <class XB>
struct QuantActs {
  const XB* q;     // [n * nb]
  const float* d;  // [n * nb]
  const float* s;  // [n * nb], q8_1 only
  int64_t nb;
};

// The integer dot of one block as 8 int32 lanes summing to sumi. maddubs multiplies unsigned by
// signed bytes: unsigned weights go in as they are; signed ones as |w| * (x * sign(w)) == w * x,
// where `aw` = |w|. The activations are in [-127, 127] (the quantiser's range), so negating them
// cannot overflow, and no pair sum reaches the int16 limit (a -128 weight reads as |w| = 128).
template <class Q>
inline __m256i block_dot(__m256i wq, __m256i aw, __m256i xk) {
  const __m256i p16 = Q::kSigned ? _mm256_maddubs_epi16(aw, _mm256_sign_epi8(xk, wq))
                                 : _mm256_maddubs_epi16(wq, xk);
  return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

// The fp16 fields at byte offset `off` of four consecutive blocks, as f32 in lanes 0..3.
template <class B>
inline __m128 four_halves(const B* b, size_t off) {
  uint16_t h[4];
  for (int j = 0; j < 4; ++j) std::memcpy(&h[j], reinterpret_cast<const uint8_t*>(b + j) + off, 2);
  return _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(h)));
}

// How far ahead (in blocks) quant_tile prefetches each weight row.
constexpr int kPrefetchBlocks = 32;

// Y[v0+v][r0+r] (+)= the quantised dot over columns k0..k1 (whole blocks) for r < R, v < V;
// stores when k0 == 0, adds otherwise.
//
// Four blocks go together: their 4 x 8 lanes of integer dots are folded by two rounds of hadd
// into one vector [b0 b1 b2 b3 | b0 b1 b2 b3] (low / high half of each block), converted once
// and scaled by [d0 d1 d2 d3 | d0 d1 d2 d3] with d_i = d_w * d_x of block i. That halves the
// conversions and multiply-adds per block, which is what bounds the batched case. The _1
// types add m_w * s_x with a [m0 m1 m2 m3 | 0 0 0 0] vector. Leftover blocks go one at a time.
template <class Q, int R, int V>
void quant_tile(const MatView& w, int64_t r0, const QuantActs<ActBlock<Q>>& xa, int64_t v0,
                float* y, int64_t ldy, int64_t k0, int64_t k1) {
  using Block = typename Q::Block;
  constexpr bool kMin = !Q::kSigned;
  const int64_t nb = xa.nb, b0 = k0 / kQK, b1 = k1 / kQK;
  const Block* wb[R];
  for (int r = 0; r < R; ++r) wb[r] = reinterpret_cast<const Block*>(w.row(r0 + r));

  __m256 acc[R][V];
  float off[R][V];  // m_w * s_x of the leftover blocks
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) acc[r][v] = _mm256_setzero_ps(), off[r][v] = 0.0f;

  int64_t i = b0;
  for (; i + 4 <= b1; i += 4) {
    __m256i wq[R][4], aw[R][4];
    __m256 dw[R], mw[R];
    for (int r = 0; r < R; ++r) {
      // The decode keeps the core busy enough that the hardware prefetcher alone falls behind
      // on rows streamed from memory; fetching ~1 KiB ahead took a 16384^2 q5_0 matvec from about
      // 50 to 25-35 ms here (noisy shared machine).
      // (Prefetches past the end of the matrix are harmless hints.)
      const uintptr_t ahead = reinterpret_cast<uintptr_t>(wb[r] + i) + kPrefetchBlocks * sizeof(Block);
      _mm_prefetch(reinterpret_cast<const char*>(ahead), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(ahead + 64), _MM_HINT_T0);
      for (int b = 0; b < 4; ++b) {
        wq[r][b] = Q::decode(wb[r][i + b]);
        aw[r][b] = Q::kSigned ? _mm256_sign_epi8(wq[r][b], wq[r][b]) : wq[r][b];
      }
      const __m128 d4 = four_halves(wb[r] + i, offsetof(Block, d));
      dw[r] = _mm256_set_m128(d4, d4);
      if constexpr (kMin) {
        mw[r] = _mm256_set_m128(_mm_setzero_ps(), four_halves(wb[r] + i, offsetof(Block, m)));
      }
    }
    for (int v = 0; v < V; ++v) {
      const int64_t xi = (v0 + v) * nb + i;
      const __m128 dx4 = _mm_loadu_ps(xa.d + xi);
      const __m256 dx = _mm256_set_m128(dx4, dx4);
      for (int r = 0; r < R; ++r) {
        __m256i m[4];
        for (int b = 0; b < 4; ++b) {
          const __m256i xk = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xa.q[xi + b].qs));
          m[b] = block_dot<Q>(wq[r][b], aw[r][b], xk);
        }
        const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(m[0], m[1]), _mm256_hadd_epi32(m[2], m[3]));
        acc[r][v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), _mm256_mul_ps(dw[r], dx), acc[r][v]);
        if constexpr (kMin) {
          const __m128 sx4 = _mm_loadu_ps(xa.s + xi);
          acc[r][v] = _mm256_fmadd_ps(mw[r], _mm256_set_m128(sx4, sx4), acc[r][v]);
        }
      }
    }
  }
  for (; i < b1; ++i) {
    for (int r = 0; r < R; ++r) {
      const __m256i wq = Q::decode(wb[r][i]);
      const __m256i aw = Q::kSigned ? _mm256_sign_epi8(wq, wq) : wq;
      const float dw = half_to_float(wb[r][i].d);
      for (int v = 0; v < V; ++v) {
        const int64_t xi = (v0 + v) * nb + i;
        const __m256i xk = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xa.q[xi].qs));
        const __m256 p = _mm256_cvtepi32_ps(block_dot<Q>(wq, aw, xk));
        acc[r][v] = _mm256_fmadd_ps(_mm256_set1_ps(dw * xa.d[xi]), p, acc[r][v]);
        if constexpr (kMin) off[r][v] += half_to_float(wb[r][i].m) * xa.s[xi];
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < V; ++v) {
      float& out = y[(v0 + v) * ldy + r0 + r];
      const float sum = hsum(acc[r][v]) + off[r][v];
      out = k0 == 0 ? sum : out + sum;
    }
  }
}

// --- activation quantisers (bit-exact with dtype.cpp) ------------------------------------------

// lround(v) for 8 lanes: round half away from zero. v - trunc(v) is exact for |v| < 2^23.
inline __m256i round_half_away(__m256 v) {
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 frac = _mm256_sub_ps(v, t);
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  const __m256 abs_frac = _mm256_andnot_ps(sign_bit, frac);
  const __m256 step = _mm256_or_ps(_mm256_and_ps(v, sign_bit), _mm256_set1_ps(1.0f));
  const __m256 bump = _mm256_and_ps(_mm256_cmp_ps(abs_frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), step);
  return _mm256_cvtps_epi32(_mm256_add_ps(t, bump));
}

// Quantises one block of 32 floats to int8 like dtype.cpp; returns d and the sum of the qs.
inline float quantize_block(const float* x, int8_t* qs, int* qsum) {
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  __m256 v[4];
  __m256 amax = _mm256_setzero_ps();
  for (int j = 0; j < 4; ++j) {
    v[j] = _mm256_loadu_ps(x + 8 * j);
    amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign_bit, v[j]));
  }
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  const float d = _mm_cvtss_f32(m) / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const __m256 vid = _mm256_set1_ps(id);
  __m256i q[4];
  for (int j = 0; j < 4; ++j) q[j] = round_half_away(_mm256_mul_ps(v[j], vid));
  *qsum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
  // packs works within 128-bit lanes; the permute restores the element order.
  const __m256i q01 = _mm256_packs_epi32(q[0], q[1]);
  const __m256i q23 = _mm256_packs_epi32(q[2], q[3]);
  const __m256i q8 = _mm256_packs_epi16(q01, q23);
  const __m256i fixed = _mm256_permutevar8x32_epi32(q8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), fixed);
  return d;
}

// y[n/32] = x[n] quantised to q8_0 blocks.
void quantize_q8_0(const float* x, BlockQ8_0* y, int64_t n) {
  assert(n % kQK == 0);
  for (int64_t i = 0; i < n / kQK; ++i) {
    int sum;
    y[i].d = fp32_to_fp16(quantize_block(x + i * kQK, y[i].qs, &sum));
  }
}

// y[n/32] = x[n] quantised to q8_1 blocks.
void quantize_q8_1(const float* x, BlockQ8_1* y, int64_t n) {
  assert(n % kQK == 0);
  for (int64_t i = 0; i < n / kQK; ++i) {
    int sum;
    const float d = quantize_block(x + i * kQK, y[i].qs, &sum);
    y[i].d = fp32_to_fp16(d);
    y[i].s = fp32_to_fp16((float)sum * d);
  }
}

// --- driving the tiles ------------------------------------------------------------------------

// Tile shapes, chosen by timing on a Sapphire Rapids core (L2-resident 128 x 4096, n = 1..16):
// float tiles of 3 rows x 4 vectors keep 12 accumulators and 3 weight vectors in the 16 ymm
// registers; quantised tiles of 2 rows x 4 vectors are bound by the integer dot ports, not by
// registers. Spans: 3 rows x 512 f32 (6 KiB) or 2 rows x 1024 quantised columns plus the
// activations of up to 16 vectors over the span stay within a 48 KiB L1.
constexpr int kFloatTileRows = 3, kFloatTileVecs = 4, kFloatSpan = 512;
constexpr int kQuantTileRows = 2, kQuantTileVecs = 4, kQuantSpan = 1024;

template <class W>
void gemm_float(const MatView& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy) {
  run_tiles<kFloatTileRows, kFloatTileVecs, kFloatSpan>(w, n, [&](auto rows, auto vecs, int64_t r0, int64_t v0, int64_t k0, int64_t k1) {
    float_tile<W, decltype(rows)::value, decltype(vecs)::value>(w, r0, x, ldx, v0, y, ldy, k0, k1);
  });
}

template <class Q>
void gemm_quant(const MatView& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy) {
  assert(w.cols % kQK == 0);
  using XB = ActBlock<Q>;
  const int64_t nb = w.cols / kQK;
  // Quantise every activation row once, on the calling thread; the team only reads them.
  const size_t nblocks = (size_t)(n * nb);
  uint8_t* scratch = thread_scratch(nblocks * (sizeof(XB) + 2 * sizeof(float)));
  float* dx = reinterpret_cast<float*>(scratch);
  float* sx = dx + nblocks;
  XB* xq = reinterpret_cast<XB*>(sx + nblocks);
  for (int64_t v = 0; v < n; ++v) {
    if constexpr (Q::kSigned) {
      quantize_q8_0(x + v * ldx, xq + v * nb, w.cols);
    } else {
      quantize_q8_1(x + v * ldx, xq + v * nb, w.cols);
    }
  }
  for (size_t i = 0; i < nblocks; ++i) {
    dx[i] = half_to_float(xq[i].d);
    if constexpr (!Q::kSigned) sx[i] = half_to_float(xq[i].s);
  }
  const QuantActs<XB> xa{xq, dx, sx, nb};
  run_tiles<kQuantTileRows, kQuantTileVecs, kQuantSpan>(w, n, [&](auto rows, auto vecs, int64_t r0, int64_t v0, int64_t k0, int64_t k1) {
    quant_tile<Q, decltype(rows)::value, decltype(vecs)::value>(w, r0, xa, v0, y, ldy, k0, k1);
  });
}

// --- the table ----------------------------------------------------------------------------------

// Y[n, rows] = X[n, cols] · W[rows, cols]^T (see kernels.h).
void gemm(const MatView& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy) {
  assert(is_weight_type(w.type));
  switch (w.type) {
    case DType::kF32: gemm_float<F32Weights>(w, x, ldx, n, y, ldy); return;
    case DType::kF16: gemm_float<F16Weights>(w, x, ldx, n, y, ldy); return;
    case DType::kQ4_0: gemm_quant<Q4_0Weights>(w, x, ldx, n, y, ldy); return;
    case DType::kQ4_1: gemm_quant<Q4_1Weights>(w, x, ldx, n, y, ldy); return;
    case DType::kQ5_0: gemm_quant<Q5_0Weights>(w, x, ldx, n, y, ldy); return;
    case DType::kQ5_1: gemm_quant<Q5_1Weights>(w, x, ldx, n, y, ldy); return;
    case DType::kQ8_0: gemm_quant<Q8_0Weights>(w, x, ldx, n, y, ldy); return;
    default: return;
  }
}

// y[n] = float(x[n]), 8 at a time with F16C.
void f16_to_f32(const uint16_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
  }
  for (; i < n; ++i) y[i] = half_to_float(x[i]);
}

// y[n] = half(x[n]), round to nearest even, 8 at a time with F16C.
void f32_to_f16(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), h);
  }
  for (; i < n; ++i) y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

}  // namespace

const Kernels& avx2_table() {
  // get_row is memory-bound and rare (one embedding row per token): the scalar one does.
  static const Kernels k{"avx2", gemm, scalar_table().get_row, f16_to_f32, f32_to_f16,
                         quantize_q8_0, quantize_q8_1};
  return k;
}

}  // namespace rwkv::kern::detail
