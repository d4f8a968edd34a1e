// AVX2 + FMA + F16C kernels (compiled with -mavx2 -mfma -mf16c; chosen only on CPUs that have
// all three, see kernels.cpp). avxvnni_kernels.cpp compiles this file a second time with
// RWKV_EDGE_AVX2_VNNI and AVX-VNNI enabled: the "avx2-vnni" table, whose batched quantised
// gemm uses the 4-way byte dot product (vpdpbusd); everything else is the same code.
//
// Layout of the work: the weight matrix is cut into tiles of a few rows; threads claim
// contiguous runs of tiles (parallel_for). Within a tile the n activation vectors go a few at a
// time and each (row, vector) pair keeps its own 8-lane accumulator, so one pass over a tile's
// weights serves several vectors; quantised weights take full groups of 8 vectors with the 8
// vectors in the lanes instead (quant_rows8). For n larger than one group the columns go by
// spans that stay in L1 while every group passes over them, so main memory delivers each weight
// once per gemm whatever n is. Every tile asks for the next tile's weights ahead of use.
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

// Built as the avx2-vnni table (avxvnni_kernels.cpp)?
#if defined(RWKV_EDGE_AVX2_VNNI)
constexpr bool kVnni = true;
#else
constexpr bool kVnni = false;
#endif

// --- float weights ----------------------------------------------------------------------------

// How float_tile reads a row: 8 consecutive weights as f32 (k a multiple of 8 except in
// load_tail), the byte offset of weight k (for prefetches), steps of 8 weights per cache line,
// and the factor the row's sum is multiplied by (1 for f32 / f16, the row scale for i8r / i1r).
struct F32Weights {
  static constexpr int kStepsPerLine = 2;
  static size_t offset(int64_t k) { return 4 * (size_t)k; }
  static float scale(const uint8_t*) { return 1.0f; }
  static __m256 load(const uint8_t* row, int64_t k) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + k);
  }
  // Weights k .. k+rem-1, zero beyond. REQUIRES: 0 < rem < 8.
  static __m256 load_tail(const uint8_t* row, int64_t k, int64_t rem) {
    return _mm256_maskload_ps(reinterpret_cast<const float*>(row) + k, lane_mask(rem));
  }
};

struct F16Weights {
  static constexpr int kStepsPerLine = 4;
  static size_t offset(int64_t k) { return 2 * (size_t)k; }
  static float scale(const uint8_t*) { return 1.0f; }
  static __m256 load(const uint8_t* row, int64_t k) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k)));
  }
  static __m256 load_tail(const uint8_t* row, int64_t k, int64_t rem) {
    uint16_t h[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::memcpy(h, row + 2 * k, (size_t)rem * 2);
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h)));
  }
};

// i8r: the int8 values widened to f32 (one vpmovsxbd + one vcvtdq2ps per 8 weights); the row's
// scale multiplies the finished sum.
struct I8RWeights {
  static constexpr int kStepsPerLine = 8;
  static size_t offset(int64_t k) { return 4 + (size_t)k; }
  static float scale(const uint8_t* row) { return row_scale(row); }
  static __m256 load(const uint8_t* row, int64_t k) {
    const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + 4 + k));
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
  }
  static __m256 load_tail(const uint8_t* row, int64_t k, int64_t rem) {
    int8_t q[16] = {};
    std::memcpy(q, row + 4 + k, (size_t)rem);
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q))));
  }
};

// The eight ±1.0f lanes of every sign byte (lane j: +1 where bit j is set, else -1). 8 KiB,
// L1-resident while a gemm runs.
struct SignTable {
  alignas(32) float lanes[256][8];
  constexpr SignTable() : lanes() {
    for (int b = 0; b < 256; ++b)
      for (int j = 0; j < 8; ++j) lanes[b][j] = (b >> j) & 1 ? 1.0f : -1.0f;
  }
};
constexpr SignTable kSigns{};

// i1r: byte k / 8 of the signs as eight ±1.0f lanes, one load from kSigns (issue #3: expanding
// the bits with broadcast, and, compare and xor held the matvec at ~9% of the read bandwidth).
struct I1RWeights {
  static constexpr int kStepsPerLine = 8;
  static size_t offset(int64_t k) { return 4 + (size_t)k / 8; }
  static float scale(const uint8_t* row) { return row_scale(row); }
  static __m256 load(const uint8_t* row, int64_t k) { return _mm256_load_ps(kSigns.lanes[row[4 + k / 8]]); }
  // The byte exists (k < cols); lanes past the end meet zero activations (load_tail's callers
  // mask x), so their ±1 adds nothing.
  static __m256 load_tail(const uint8_t* row, int64_t k, int64_t) { return load(row, k); }
};

constexpr int kCacheLine = 64;

// Y[v0+v][r0+r] (+)= W[r0+r, k0:k1] · X[v0+v, k0:k1] for r < R, v < V: every weight load feeds
// V FMAs and every activation load R FMAs. Stores when k0 == 0, adds otherwise.
//
// The k loop goes one cache line of each row at a time (L steps of 8 weights: 2 for f32, 4 for
// f16, 8 for i8r and i1r) and asks for the same line of the next tile's rows into L2 (issue #3). Rows of the
// model's 768-wide matrices are 1.5 KiB in f16, so a tile's rows share 4 KiB pages, where the
// hardware stream prefetcher sees several interleaved streams and falls behind: a 768 x 768 f16
// matvec ran at ~60% of the read bandwidth without this, ~90% with it. With V == 1 two
// accumulator sets alternate to keep enough FMAs in flight.
template <class W, int R, int V>
void float_tile(const RowPtrs& w, int64_t r0, const float* x, int64_t ldx, int64_t v0, float* y,
                int64_t ldy, int64_t k0, int64_t k1) {
  constexpr int L = W::kStepsPerLine;  // steps of 8 weights per line
  constexpr int A = V == 1 ? 2 : 1;                // accumulator sets
  const uint8_t* wr[R];
  for (int r = 0; r < R; ++r) wr[r] = w(r0 + r);
  const int64_t next_tile = R * (int64_t)w.stride;
  const float* xv[V];
  for (int v = 0; v < V; ++v) xv[v] = x + (v0 + v) * ldx;

  __m256 acc[A][R][V];
  for (int a = 0; a < A; ++a)
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < V; ++v) acc[a][r][v] = _mm256_setzero_ps();

  // The first vector group fetches; later groups over the same span find the lines there.
  const bool fetch = v0 == 0;
  int64_t k = k0;
  for (; k + 8 * L <= k1; k += 8 * L) {
    for (int r = 0; r < R && fetch; ++r) {
      // A prefetch past the end of the matrix is a harmless hint.
      _mm_prefetch(reinterpret_cast<const char*>(wr[r] + next_tile + W::offset(k)), _MM_HINT_T1);
    }
    for (int u = 0; u < L; ++u) {
      __m256 wv[R];
      for (int r = 0; r < R; ++r) wv[r] = W::load(wr[r], k + 8 * u);
      for (int v = 0; v < V; ++v) {
        const __m256 xk = _mm256_loadu_ps(xv[v] + k + 8 * u);
        for (int r = 0; r < R; ++r) acc[u % A][r][v] = _mm256_fmadd_ps(wv[r], xk, acc[u % A][r][v]);
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
    const float s = W::scale(wr[r]);
    for (int v = 0; v < V; ++v) {
      __m256 a = acc[0][r][v];
      for (int u = 1; u < A; ++u) a = _mm256_add_ps(a, acc[u][r][v]);
      float& out = y[(v0 + v) * ldy + r0 + r];
      out = k0 == 0 ? s * hsum(a) : out + s * hsum(a);
    }
  }
}

// --- quantised weights ------------------------------------------------------------------------

// A 4-bit block's 32 nibbles as byte lanes (0..15).
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

// How each type decodes a block to 32 byte lanes. q8_0 keeps its signed values and its dots use
// the sign trick (four_block_dots, quant_rows8). The others decode to unsigned u in [0, 31] with
// w = u - kOffset (q4_0: 8, q5_0: 16) or w = d u + m (the _1 types): maddubs then multiplies u
// with the signed activations directly, Σ w x = Σ u x - kOffset Σ x with Σ x from the
// activation quantiser, and the products are small enough for cheaper int16 folding (issue #3).
struct Q4_0Weights {
  using Block = BlockQ4_0;
  static constexpr bool kSigned = false, kMin = false;
  static constexpr int kOffsetShift = 3;  // kOffset = 8
  static __m256i decode(const Block& b) { return unpack_nibbles(b.qs); }
};
struct Q4_1Weights {
  using Block = BlockQ4_1;
  static constexpr bool kSigned = false, kMin = true;
  static constexpr int kOffsetShift = -1;  // no offset
  static __m256i decode(const Block& b) { return unpack_nibbles(b.qs); }
};
// q = nib + 16 * bit.
inline __m256i decode_5bit(const uint8_t qs[16], const uint8_t qh[4]) {
  const __m256i hi = _mm256_and_si256(expand_bits(qh), _mm256_set1_epi8(0x10));
  return _mm256_or_si256(unpack_nibbles(qs), hi);
}
struct Q5_0Weights {
  using Block = BlockQ5_0;
  static constexpr bool kSigned = false, kMin = false;
  static constexpr int kOffsetShift = 4;  // kOffset = 16
  static __m256i decode(const Block& b) { return decode_5bit(b.qs, b.qh); }
};
struct Q5_1Weights {
  using Block = BlockQ5_1;
  static constexpr bool kSigned = false, kMin = true;
  static constexpr int kOffsetShift = -1;
  static __m256i decode(const Block& b) { return decode_5bit(b.qs, b.qh); }
};
struct Q8_0Weights {
  using Block = BlockQ8_0;
  static constexpr bool kSigned = true, kMin = false;
  static constexpr int kOffsetShift = -1;
  static __m256i decode(const Block& b) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs));
  }
};

// The quantised activations of a gemm, laid out for the tiles: per vector nb blocks of 32 int8
// (32-byte aligned, back to back), and per block its fp16 scale widened to f32, its integer sum
// Σq (the _0 types' offset) and, for the _1 types, q8_1's s = fp16(d Σq) widened to f32.
// Full groups of 8 vectors (8g .. 8g+7) are also stored interleaved for quant_rows8: per group
// and block, 8 chunks of [4 columns x 8 vectors] (256 bytes), and the 8 vectors' d, Σq and s
// side by side.
struct QuantActs {
  const int8_t* q;     // [n * nb * 32]
  const float* d;      // [n * nb]
  const int32_t* sum;  // [n * nb]
  const float* s;      // [n * nb]
  const int8_t* q8;     // [n / 8 * nb * 256]
  const float* d8;      // [n / 8 * nb * 8]
  const int32_t* sum8;  // [n / 8 * nb * 8]
  const float* s8;      // [n / 8 * nb * 8]
  int64_t nb;
};

inline __m256i load_block(const int8_t* q) {
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(q));
}

// log2 of the offset subtracted as offset * Σx from a block's integer dot (-1: none). With
// AVX-VNNI, q8_0 weights go in as unsigned w + 128 (w xor 0x80), like the other _0 types.
template <class Q>
constexpr int offset_shift() {
  return kVnni && Q::kSigned ? 7 : Q::kOffsetShift;
}

// The weights of a block as quant_rows and quant_rows8 feed them to the byte dot: the decoded
// values, except q8_0's: |w| for the sign trick, or w + 128 with AVX-VNNI.
template <class Q>
inline __m256i dot_weights(__m256i q) {
  if constexpr (!Q::kSigned) return q;
  if constexpr (kVnni) return _mm256_xor_si256(q, _mm256_set1_epi8((char)0x80));
  return _mm256_sign_epi8(q, q);
}

// The integer dots of blocks i..i+3 of a weight row with one activation vector, folded into
// [b0 b1 b2 b3 | b0 b1 b2 b3] (int32; the low and high halves of lane j add up to block j's dot,
// before the _0 types' offset).
//
// q8_0: maddubs multiplies unsigned by signed bytes, so it gets |w| (`aw`) and x * sign(w) (the
// product is w x either way). A pair sum stays below 2 * 128 * 127 < 2^15 but two may not, so
// each block is widened to int32 (madd with ones) before two rounds of hadd fold the four.
// Unsigned u <= 31: a pair sum is at most 2 * 31 * 127, so the two folding rounds stay in int16
// (8 products <= 31496 < 2^15) and one madd widens the result instead of four.
template <class Q>
inline __m256i four_block_dots(const typename Q::Block* wb, const __m256i wq[4], const __m256i aw[4],
                               const int8_t* xq) {
  const __m256i ones = _mm256_set1_epi16(1);
#if defined(RWKV_EDGE_AVX2_VNNI)
  if constexpr (Q::kSigned) {
    // wq = w + 128: vpdpbusd sums 4 products per int32 lane, no int16 stage.
    __m256i m[4];
    for (int b = 0; b < 4; ++b) {
      m[b] = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), wq[b], load_block(xq + 32 * b));
    }
    return _mm256_hadd_epi32(_mm256_hadd_epi32(m[0], m[1]), _mm256_hadd_epi32(m[2], m[3]));
  }
#endif
  if constexpr (Q::kSigned && !kVnni) {
    __m256i m[4];
    for (int b = 0; b < 4; ++b) {
      // The weights are read again rather than kept in registers: 2 rows x 4 blocks of them
      // and of |w| would need all 16 ymm registers.
      const __m256i sx = _mm256_sign_epi8(load_block(xq + 32 * b), Q::decode(wb[b]));
      m[b] = _mm256_madd_epi16(_mm256_maddubs_epi16(aw[b], sx), ones);
    }
    return _mm256_hadd_epi32(_mm256_hadd_epi32(m[0], m[1]), _mm256_hadd_epi32(m[2], m[3]));
  } else if constexpr (!Q::kSigned) {
    __m256i p[4];
    for (int b = 0; b < 4; ++b) p[b] = _mm256_maddubs_epi16(wq[b], load_block(xq + 32 * b));
    const __m256i h = _mm256_hadd_epi16(_mm256_hadd_epi16(p[0], p[1]), _mm256_hadd_epi16(p[2], p[3]));
    return _mm256_madd_epi16(h, ones);
  }
}

// The integer dot of one block as 8 int32 lanes (before the offset), for leftover blocks.
template <class Q>
inline __m256i block_dot(__m256i wq, const int8_t* xq) {
  const __m256i xk = load_block(xq);
  const __m256i p16 = Q::kSigned ? _mm256_maddubs_epi16(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(xk, wq))
                                 : _mm256_maddubs_epi16(wq, xk);
  return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

// The fp16 fields at byte offset `off` of four consecutive blocks, as f32 in lanes 0..3.
template <class B>
inline __m128 four_halves(const B* b, size_t off) {
  uint16_t h[4];
  for (int j = 0; j < 4; ++j) std::memcpy(&h[j], reinterpret_cast<const uint8_t*>(b + j) + off, 2);
  return _mm_cvtph_ps(_mm_setr_epi16((short)h[0], (short)h[1], (short)h[2], (short)h[3], 0, 0, 0, 0));
}

// Y[v0+v][r0+r] (+)= the quantised dot over columns k0..k1 (whole blocks) for r < R, v < V;
// stores when k0 == 0, adds otherwise. When `fetch` > 0, asks for the weights `fetch` bytes
// ahead of each row into L2 (the same columns of the next tile's rows).
//
// Four blocks go together: their dots, folded to [b0 b1 b2 b3 | b0 b1 b2 b3], are converted once
// and scaled by [d0 d1 d2 d3 | d0 d1 d2 d3] with d_j = d_w * d_x of block j. The _0 types'
// offset is subtracted in the low half, the _1 types add m_w * s_x with [m0 m1 m2 m3 | 0 0 0 0].
// Leftover blocks go one at a time.
template <class Q, int R, int V>
void quant_rows(const RowPtrs& w, int64_t r0, const QuantActs& xa, int64_t v0, float* y, int64_t ldy,
                int64_t k0, int64_t k1, int64_t fetch) {
  using Block = typename Q::Block;
  constexpr int kFetchLines = (4 * (int)sizeof(Block) + kCacheLine - 1) / kCacheLine;
  const int64_t nb = xa.nb, b0 = k0 / kQK, b1 = k1 / kQK;
  const Block* wb[R];
  for (int r = 0; r < R; ++r) wb[r] = reinterpret_cast<const Block*>(w(r0 + r));

  __m256 acc[R][V];
  float tail[R][V];  // the leftover blocks
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) acc[r][v] = _mm256_setzero_ps(), tail[r][v] = 0.0f;

  int64_t i = b0;
  for (; i + 4 <= b1; i += 4) {
    __m256i wq[R][4], aw[R][4];
    __m256 dw[R], mw[R];
    for (int r = 0; r < R; ++r) {
      if (fetch > 0) {
        // A prefetch past the end of the matrix is a harmless hint.
        const char* ahead = reinterpret_cast<const char*>(wb[r] + i) + fetch;
        for (int j = 0; j < kFetchLines; ++j) _mm_prefetch(ahead + kCacheLine * j, _MM_HINT_T1);
      }
      for (int b = 0; b < 4; ++b) {
        const __m256i q = dot_weights<Q>(Q::decode(wb[r][i + b]));
        if constexpr (Q::kSigned && !kVnni) {
          aw[r][b] = q;
        } else {
          wq[r][b] = q;
        }
      }
      const __m128 d4 = four_halves(wb[r] + i, offsetof(Block, d));
      dw[r] = _mm256_set_m128(d4, d4);
      if constexpr (Q::kMin) {
        mw[r] = _mm256_set_m128(_mm_setzero_ps(), four_halves(wb[r] + i, offsetof(Block, m)));
      }
    }
    for (int v = 0; v < V; ++v) {
      const int64_t xi = (v0 + v) * nb + i;
      const __m128 dx4 = _mm_loadu_ps(xa.d + xi);
      const __m256 dx = _mm256_set_m128(dx4, dx4);
      __m256i off = _mm256_setzero_si256();
      if constexpr (offset_shift<Q>() >= 0) {
        const __m128i s4 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(xa.sum + xi));
        off = _mm256_zextsi128_si256(_mm_slli_epi32(s4, offset_shift<Q>()));
      }
      for (int r = 0; r < R; ++r) {
        __m256i h = four_block_dots<Q>(wb[r] + i, wq[r], aw[r], xa.q + xi * kQK);
        if constexpr (offset_shift<Q>() >= 0) h = _mm256_sub_epi32(h, off);
        acc[r][v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), _mm256_mul_ps(dw[r], dx), acc[r][v]);
        if constexpr (Q::kMin) {
          const __m128 sx4 = _mm_loadu_ps(xa.s + xi);
          acc[r][v] = _mm256_fmadd_ps(mw[r], _mm256_set_m128(sx4, sx4), acc[r][v]);
        }
      }
    }
  }
  for (; i < b1; ++i) {
    for (int r = 0; r < R; ++r) {
      const __m256i wq = Q::decode(wb[r][i]);
      const float dw = half_to_float(wb[r][i].d);
      for (int v = 0; v < V; ++v) {
        const int64_t xi = (v0 + v) * nb + i;
        int sumi = hsum_epi32(block_dot<Q>(wq, xa.q + xi * kQK));
        if constexpr (Q::kOffsetShift >= 0) sumi -= xa.sum[xi] << Q::kOffsetShift;
        tail[r][v] += (float)sumi * (dw * xa.d[xi]);
        if constexpr (Q::kMin) tail[r][v] += half_to_float(wb[r][i].m) * xa.s[xi];
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < V; ++v) {
      float& out = y[(v0 + v) * ldy + r0 + r];
      const float sum = hsum(acc[r][v]) + tail[r][v];
      out = k0 == 0 ? sum : out + sum;
    }
  }
}

// Y[8g+v][r0+r] (+)= the quantised dot over columns k0..k1 (whole blocks) for r < R and the 8
// vectors of group g, whose activations are interleaved (QuantActs::q8): lane v of every
// register belongs to vector 8g+v, so a block's dots come out as one register per row with no
// horizontal folding, and one conversion and one multiply-add scale 8 of them (issue #3: the
// batched q8_0 gemm was bound by the folding). Per 4 columns of a block, the row's 4 weights are
// broadcast to every lane:
// - q8_0: maddubs(|w|, x * sign(w)) = Σ w x in int16 pairs (<= 2 * 128 * 127), widened to
//   int32 at once since two such pairs may overflow int16 (|w| rather than |x|: a weight of -128
//   has no positive int8 counterpart, an activation is within [-127, 127]);
// - unsigned u <= 31: maddubs(u, x) directly, 4 chunks summed in int16 (8 products <= 31496)
//   before one widening; then minus kOffset Σx (_0 types) or plus m_w s_x (_1 types).
// - with AVX-VNNI (RWKV_EDGE_AVX2_VNNI), every type: vpdpbusd(u, x) adds the 4 products of a
//   chunk straight into int32 lanes, one instruction instead of three or four; q8_0 goes in as
//   u = w + 128 (w xor 0x80), so Σ w x = Σ u x - 128 Σx like the other _0 types' offsets.
// Stores when k0 == 0, adds otherwise; prefetches like quant_rows.
template <class Q, int R>
void quant_rows8(const RowPtrs& w, int64_t r0, const QuantActs& xa, int64_t g, float* y, int64_t ldy,
                 int64_t k0, int64_t k1, int64_t fetch) {
  using Block = typename Q::Block;
  constexpr int kShift = offset_shift<Q>();
  // Blocks are decoded (u; |w| for q8_0 without VNNI) a run at a time into `dec`, from where the
  // main loop broadcasts them 4 bytes at a time with plain loads. (Decoding block by block
  // inside the main loop lets the compiler forward the stored bytes through shuffles instead,
  // which compete with the integer multiplies for ports.)
  constexpr int kRun = 32;
  alignas(32) uint8_t dec[R][kRun][kQK];
  float dwf[R][kRun];  // the blocks' scales as f32
  const int64_t nb = xa.nb, b0 = k0 / kQK, b1 = k1 / kQK;
  const Block* wb[R];
  for (int r = 0; r < R; ++r) wb[r] = reinterpret_cast<const Block*>(w(r0 + r));
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();

  for (int64_t run = b0; run < b1; run += kRun) {
    const int64_t run_end = b1 - run < kRun ? b1 : run + kRun;
    for (int r = 0; r < R; ++r) {
      for (int64_t i = run; i < run_end; ++i) {
        const __m256i u = dot_weights<Q>(Q::decode(wb[r][i]));
        _mm256_store_si256(reinterpret_cast<__m256i*>(dec[r][i - run]), u);
        dwf[r][i - run] = half_to_float(wb[r][i].d);
      }
    }
    for (int64_t i = run; i < run_end; ++i) {
      const int64_t xi = g * nb + i;
      const int8_t* xq = xa.q8 + xi * 8 * kQK;
      __m256i dot[R];
      for (int r = 0; r < R; ++r) {
        dot[r] = _mm256_setzero_si256();
        // Spread over the loop rather than in a burst, so the L2 miss queue keeps up.
        // A prefetch past the end of the matrix is a harmless hint.
        if (fetch > 0) _mm_prefetch(reinterpret_cast<const char*>(wb[r] + i) + fetch, _MM_HINT_T1);
      }
#if defined(RWKV_EDGE_AVX2_VNNI)
      // Two accumulators per row halve the dependency chain through vpdpbusd's latency.
      __m256i dot2[R];
      for (int r = 0; r < R; ++r) dot2[r] = _mm256_setzero_si256();
      for (int c = 0; c < 8; c += 2) {
        const __m256i xc0 = load_block(xq + 32 * c), xc1 = load_block(xq + 32 * (c + 1));
        for (int r = 0; r < R; ++r) {
          int32_t u0, u1;
          std::memcpy(&u0, dec[r][i - run] + 4 * c, 4);
          std::memcpy(&u1, dec[r][i - run] + 4 * (c + 1), 4);
          dot[r] = _mm256_dpbusd_avx_epi32(dot[r], _mm256_set1_epi32(u0), xc0);
          dot2[r] = _mm256_dpbusd_avx_epi32(dot2[r], _mm256_set1_epi32(u1), xc1);
        }
      }
      for (int r = 0; r < R; ++r) dot[r] = _mm256_add_epi32(dot[r], dot2[r]);
#else
      const __m256i ones = _mm256_set1_epi16(1);
      if constexpr (Q::kSigned) {
        for (int c = 0; c < 8; ++c) {
          const __m256i xc = load_block(xq + 32 * c);
          for (int r = 0; r < R; ++r) {
            int32_t w4, a4;
            std::memcpy(&w4, wb[r][i].qs + 4 * c, 4);
            std::memcpy(&a4, dec[r][i - run] + 4 * c, 4);
            const __m256i sx = _mm256_sign_epi8(xc, _mm256_set1_epi32(w4));
            const __m256i p = _mm256_maddubs_epi16(_mm256_set1_epi32(a4), sx);
            dot[r] = _mm256_add_epi32(dot[r], _mm256_madd_epi16(p, ones));
          }
        }
      } else {
        for (int half = 0; half < 2; ++half) {
          __m256i p16[R];
          for (int r = 0; r < R; ++r) p16[r] = _mm256_setzero_si256();
          for (int c = 4 * half; c < 4 * half + 4; ++c) {
            const __m256i xc = load_block(xq + 32 * c);
            for (int r = 0; r < R; ++r) {
              int32_t u4;
              std::memcpy(&u4, dec[r][i - run] + 4 * c, 4);
              p16[r] = _mm256_add_epi16(p16[r], _mm256_maddubs_epi16(_mm256_set1_epi32(u4), xc));
            }
          }
          for (int r = 0; r < R; ++r) dot[r] = _mm256_add_epi32(dot[r], _mm256_madd_epi16(p16[r], ones));
        }
      }
#endif
      if constexpr (kShift >= 0) {
        const __m256i sx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xa.sum8 + xi * 8));
        const __m256i off = _mm256_slli_epi32(sx, kShift);
        for (int r = 0; r < R; ++r) dot[r] = _mm256_sub_epi32(dot[r], off);
      }
      const __m256 dx = _mm256_loadu_ps(xa.d8 + xi * 8);
      for (int r = 0; r < R; ++r) {
        const __m256 d = _mm256_mul_ps(_mm256_broadcast_ss(&dwf[r][i - run]), dx);
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[r]), d, acc[r]);
        if constexpr (Q::kMin) {
          const __m256 sx = _mm256_loadu_ps(xa.s8 + xi * 8);
          acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(wb[r][i].m)), sx, acc[r]);
        }
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    alignas(32) float out[8];
    _mm256_store_ps(out, acc[r]);
    for (int v = 0; v < 8; ++v) {
      float& o = y[(8 * g + v) * ldy + r0 + r];
      o = k0 == 0 ? out[v] : o + out[v];
    }
  }
}

// A tile of R rows and V vectors. The first vector group prefetches the next tile. A full group
// of 8 goes through quant_rows8; 5..7 vectors split into 4 + the rest. With 3 or 4 vectors the
// rows go one at a time, since R rows' decoded weights plus R x V accumulators would not fit in
// the 16 ymm registers (the spills cost more than re-reading the activations from L1).
template <class Q, int R, int V>
void quant_tile(const RowPtrs& w, int64_t r0, const QuantActs& xa, int64_t v0, float* y, int64_t ldy,
                int64_t k0, int64_t k1) {
  const int64_t fetch = v0 == 0 ? R * (int64_t)w.stride : 0;
  if constexpr (V == 8) {
    quant_rows8<Q, R>(w, r0, xa, v0 / 8, y, ldy, k0, k1, fetch);
  } else if constexpr (V > 4) {
    quant_tile<Q, R, 4>(w, r0, xa, v0, y, ldy, k0, k1);
    quant_tile<Q, R, V - 4>(w, r0, xa, v0 + 4, y, ldy, k0, k1);
  } else if constexpr (R > 1 && V > 2) {
    for (int r = 0; r < R; ++r) quant_rows<Q, 1, V>(w, r0 + r, xa, v0, y, ldy, k0, k1, fetch);
  } else {
    quant_rows<Q, R, V>(w, r0, xa, v0, y, ldy, k0, k1, fetch);
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
// registers; quantised tiles of 2 rows take 8 vectors at a time (quant_rows8; 4 rows measured
// no faster) and are bound by the integer dot ports. Spans: 3 rows x 512 f32 (6 KiB) or 2 rows x
// 1024 quantised columns stay in a 48 KiB L1 with the span's activations of a group or two.
constexpr int kFloatTileRows = 3, kFloatTileVecs = 4, kFloatSpan = 512;
constexpr int kQuantTileRows = 2, kQuantTileVecs = 8, kQuantSpan = 1024;

template <class W>
void gemm_float(const MatView& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy) {
  const RowPtrs wr(w);
  run_tiles<kFloatTileRows, kFloatTileVecs, kFloatSpan>(w, n, [&](auto rows, auto vecs, int64_t r0, int64_t v0, int64_t k0, int64_t k1) {
    float_tile<W, decltype(rows)::value, decltype(vecs)::value>(wr, r0, x, ldx, v0, y, ldy, k0, k1);
  });
}

// r[c] lane v = r[v] lane c (an 8 x 8 transpose of 32-bit lanes).
inline void transpose_8x8_epi32(__m256i r[8]) {
  __m256i t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);      // r_i0 r_j0 r_i1 r_j1 | r_i4 ...
    t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);  // r_i2 r_j2 r_i3 r_j3 | r_i6 ...
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);      // lane 0 (| 4) of rows i..i+3
    u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);  // lane 1 (| 5)
    u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);  // lane 2 (| 6)
    u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);  // lane 3 (| 7)
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2x128_si256(u[c], u[c + 4], 0x20);
    r[c + 4] = _mm256_permute2x128_si256(u[c], u[c + 4], 0x31);
  }
}

template <class Q>
void gemm_quant(const MatView& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy) {
  assert(w.cols % kQK == 0);
  const int64_t nb = w.cols / kQK;
  // Quantise every activation row once, on the calling thread; the team only reads them.
  // Scales and sums go through fp16 exactly as q8_0 / q8_1 blocks store them.
  const size_t nblocks = (size_t)(n * nb), nblocks8 = (size_t)(n / 8 * nb);
  uint8_t* scratch = thread_scratch(nblocks * kQK + nblocks8 * 8 * kQK +
                                    3 * (nblocks + nblocks8 * 8) * sizeof(float) + 32);
  int8_t* xq = reinterpret_cast<int8_t*>(((uintptr_t)scratch + 31) & ~(uintptr_t)31);
  int8_t* q8 = xq + nblocks * kQK;
  float* dx = reinterpret_cast<float*>(q8 + nblocks8 * 8 * kQK);
  float* sx = dx + nblocks;
  int32_t* sumx = reinterpret_cast<int32_t*>(sx + nblocks);
  float* d8 = reinterpret_cast<float*>(sumx + nblocks);
  float* s8 = d8 + nblocks8 * 8;
  int32_t* sum8 = reinterpret_cast<int32_t*>(s8 + nblocks8 * 8);
  for (int64_t v = 0; v < n; ++v) {
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t i = v * nb + b;
      int sum;
      const float d = quantize_block(x + v * ldx + b * kQK, xq + i * kQK, &sum);
      dx[i] = _cvtsh_ss(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));
      sumx[i] = sum;
      sx[i] = Q::kMin ? _cvtsh_ss(_cvtss_sh((float)sum * d, _MM_FROUND_TO_NEAREST_INT)) : 0.0f;
    }
  }
  // Full groups of 8 vectors, interleaved: chunk c (4 columns) of block b of vector 8g+v goes to
  // lane v of chunk c of (g, b) (an 8 x 8 transpose of 32-bit chunks); the per-block values go
  // side by side.
  for (int64_t g = 0; g < n / 8; ++g) {
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t gb = g * nb + b;
      __m256i rows[8];
      for (int v = 0; v < 8; ++v) {
        const int64_t src = (8 * g + v) * nb + b;
        rows[v] = load_block(xq + src * kQK);
        d8[gb * 8 + v] = dx[src];
        s8[gb * 8 + v] = sx[src];
        sum8[gb * 8 + v] = sumx[src];
      }
      transpose_8x8_epi32(rows);
      for (int c = 0; c < 8; ++c) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(q8 + gb * 8 * kQK + 32 * c), rows[c]);
      }
    }
  }
  const QuantActs xa{xq, dx, sumx, sx, q8, d8, sum8, s8, nb};
  const RowPtrs wr(w);
  run_tiles<kQuantTileRows, kQuantTileVecs, kQuantSpan>(w, n, [&](auto rows, auto vecs, int64_t r0, int64_t v0, int64_t k0, int64_t k1) {
    quant_tile<Q, decltype(rows)::value, decltype(vecs)::value>(wr, r0, xa, v0, y, ldy, k0, k1);
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
    case DType::kI8R: gemm_float<I8RWeights>(w, x, ldx, n, y, ldy); return;
    case DType::kI1R: gemm_float<I1RWeights>(w, x, ldx, n, y, ldy); return;
    default: return;
  }
}

// --- sparse rows ------------------------------------------------------------------------------

// W[row] · x over all `cols` for f32, f16, i8r rows (W::scale applied), asking for the same
// lines of `next` (the next active row, or null) into L1 as it goes: active rows are scattered,
// so the hardware prefetcher cannot guess them.
template <class W>
float sparse_dot(const uint8_t* row, const uint8_t* next, const float* x, int64_t cols) {
  constexpr int L = W::kStepsPerLine;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 * L <= cols; k += 8 * L) {
    if (next != nullptr) _mm_prefetch(reinterpret_cast<const char*>(next + W::offset(k)), _MM_HINT_T0);
    for (int u = 0; u < L; u += 2) {
      acc0 = _mm256_fmadd_ps(W::load(row, k + 8 * u), _mm256_loadu_ps(x + k + 8 * u), acc0);
      acc1 = _mm256_fmadd_ps(W::load(row, k + 8 * u + 8), _mm256_loadu_ps(x + k + 8 * u + 8), acc1);
    }
  }
  for (; k < cols; k += 8) {
    const int64_t rem = cols - k;
    if (rem >= 8) {
      acc0 = _mm256_fmadd_ps(W::load(row, k), _mm256_loadu_ps(x + k), acc0);
    } else {
      acc0 = _mm256_fmadd_ps(W::load_tail(row, k, rem), _mm256_maskload_ps(x + k, lane_mask(rem)), acc0);
    }
  }
  return W::scale(row) * hsum(_mm256_add_ps(acc0, acc1));
}

// A q8_0 row · x quantised to q8_0 blocks (xq), prefetching `next` like sparse_dot.
float sparse_dot_q8_0(const BlockQ8_0* wb, const uint8_t* next, const BlockQ8_0* xq, int64_t nb) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    if (next != nullptr && i % 2 == 0) {
      _mm_prefetch(reinterpret_cast<const char*>(next + (size_t)i * sizeof(BlockQ8_0)), _MM_HINT_T0);
    }
    const __m256i wq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb[i].qs));
    const __m256i xk = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[i].qs));
    const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(xk, wq));
    const __m256i dot = _mm256_madd_epi16(p16, ones);
    const float d = half_to_float(wb[i].d) * half_to_float(xq[i].d);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(d), acc);
  }
  return hsum(acc);
}

template <class W>
void gemv_rows_float(const MatView& w, const int32_t* rows, int64_t n_rows, const float* x, float* y) {
  const RowPtrs wr(w);
  parallel_for(n_rows, sparse_threads(n_rows * w.cols), [&](int64_t j) {
    assert(rows[j] >= 0 && rows[j] < w.rows);
    const uint8_t* next = j + 1 < n_rows ? wr(rows[j + 1]) : nullptr;
    y[j] = sparse_dot<W>(wr(rows[j]), next, x, w.cols);
  });
}

// y[j] = W[rows[j], :] · x (see kernels.h).
void gemv_rows(const MatView& w, const int32_t* rows, int64_t n_rows, const float* x, float* y) {
  assert(is_sparse_type(w.type));
  switch (w.type) {
    case DType::kF32: gemv_rows_float<F32Weights>(w, rows, n_rows, x, y); return;
    case DType::kF16: gemv_rows_float<F16Weights>(w, rows, n_rows, x, y); return;
    case DType::kI8R: gemv_rows_float<I8RWeights>(w, rows, n_rows, x, y); return;
    case DType::kQ8_0: {
      assert(w.cols % kQK == 0);
      const int64_t nb = w.cols / kQK;
      BlockQ8_0* xq = reinterpret_cast<BlockQ8_0*>(thread_scratch((size_t)nb * sizeof(BlockQ8_0)));
      quantize_q8_0(x, xq, w.cols);
      const RowPtrs wr(w);
      parallel_for(n_rows, sparse_threads(n_rows * w.cols), [&](int64_t j) {
        assert(rows[j] >= 0 && rows[j] < w.rows);
        const uint8_t* next = j + 1 < n_rows ? wr(rows[j + 1]) : nullptr;
        y[j] = sparse_dot_q8_0(reinterpret_cast<const BlockQ8_0*>(wr(rows[j])), next, xq, nb);
      });
      return;
    }
    default: return;
  }
}

// The rows of one axpy group, at most kAxpyRows: y is loaded and stored once per group.
constexpr int kAxpyRows = 4;

// y[c0:c1) += Σ_j h[j] W[rows[j], c0:c1) for f32, f16, i8r rows, kAxpyRows rows at a time
// (coefficient h[j] * scale), terms added in j order; asks for the next group's lines ahead.
template <class W>
void axpy_chunk_float(const RowPtrs& wr, const int32_t* rows, const float* h, int64_t n_rows, float* y,
                      int64_t c0, int64_t c1) {
  constexpr int L = W::kStepsPerLine;
  for (int64_t j = 0; j < n_rows; j += kAxpyRows) {
    const int nr = n_rows - j < kAxpyRows ? (int)(n_rows - j) : kAxpyRows;
    const uint8_t* row[kAxpyRows];
    const uint8_t* next[kAxpyRows];
    __m256 coef[kAxpyRows];
    for (int r = 0; r < nr; ++r) {
      row[r] = wr(rows[j + r]);
      coef[r] = _mm256_set1_ps(h[j + r] * W::scale(row[r]));
      next[r] = j + kAxpyRows + r < n_rows ? wr(rows[j + kAxpyRows + r]) : nullptr;
    }
    int64_t c = c0;
    for (; c + 8 <= c1; c += 8) {
      if ((c - c0) % (8 * L) == 0) {
        for (int r = 0; r < nr; ++r) {
          if (next[r] != nullptr) _mm_prefetch(reinterpret_cast<const char*>(next[r] + W::offset(c)), _MM_HINT_T0);
        }
      }
      __m256 acc = _mm256_loadu_ps(y + c);
      for (int r = 0; r < nr; ++r) acc = _mm256_fmadd_ps(coef[r], W::load(row[r], c), acc);
      _mm256_storeu_ps(y + c, acc);
    }
    if (c < c1) {
      const __m256i m = lane_mask(c1 - c);
      __m256 acc = _mm256_maskload_ps(y + c, m);
      for (int r = 0; r < nr; ++r) acc = _mm256_fmadd_ps(coef[r], W::load_tail(row[r], c, c1 - c), acc);
      _mm256_maskstore_ps(y + c, m, acc);
    }
  }
}

// The same for q8_0 rows, block by block (c0, c1 multiples of 32): coefficient h[j] * d.
void axpy_chunk_q8_0(const RowPtrs& wr, const int32_t* rows, const float* h, int64_t n_rows, float* y,
                     int64_t c0, int64_t c1) {
  for (int64_t j = 0; j < n_rows; j += kAxpyRows) {
    const int nr = n_rows - j < kAxpyRows ? (int)(n_rows - j) : kAxpyRows;
    const BlockQ8_0* row[kAxpyRows];
    const uint8_t* next[kAxpyRows];
    for (int r = 0; r < nr; ++r) {
      row[r] = reinterpret_cast<const BlockQ8_0*>(wr(rows[j + r]));
      next[r] = j + kAxpyRows + r < n_rows ? wr(rows[j + kAxpyRows + r]) : nullptr;
    }
    for (int64_t i = c0 / kQK; i < c1 / kQK; ++i) {
      __m256 acc[4];
      for (int u = 0; u < 4; ++u) acc[u] = _mm256_loadu_ps(y + i * kQK + 8 * u);
      for (int r = 0; r < nr; ++r) {
        if (next[r] != nullptr && i % 2 == 0) {
          _mm_prefetch(reinterpret_cast<const char*>(next[r] + (size_t)i * sizeof(BlockQ8_0)), _MM_HINT_T0);
        }
        const BlockQ8_0& b = row[r][i];
        const __m256 coef = _mm256_set1_ps(h[j + r] * half_to_float(b.d));
        for (int u = 0; u < 4; ++u) {
          const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.qs + 8 * u));
          acc[u] = _mm256_fmadd_ps(coef, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), acc[u]);
        }
      }
      for (int u = 0; u < 4; ++u) _mm256_storeu_ps(y + i * kQK + 8 * u, acc[u]);
    }
  }
}

// y[0..cols) += Σ_j h[j] * W[rows[j], :] (see kernels.h), by column chunks over the team.
void axpy_rows(const MatView& w, const int32_t* rows, const float* h, int64_t n_rows, float* y) {
  assert(is_sparse_type(w.type));
  assert(w.type != DType::kQ8_0 || w.cols % kQK == 0);
  if (n_rows <= 0) return;
  for (int64_t j = 0; j < n_rows; ++j) assert(rows[j] >= 0 && rows[j] < w.rows);
  const int threads = sparse_threads(n_rows * w.cols);
  const int64_t chunk = axpy_chunk_cols(w.cols, threads);
  const RowPtrs wr(w);
  parallel_for((w.cols + chunk - 1) / chunk, threads, [&](int64_t i) {
    const int64_t c0 = i * chunk, c1 = c0 + chunk < w.cols ? c0 + chunk : w.cols;
    switch (w.type) {
      case DType::kF32: axpy_chunk_float<F32Weights>(wr, rows, h, n_rows, y, c0, c1); return;
      case DType::kF16: axpy_chunk_float<F16Weights>(wr, rows, h, n_rows, y, c0, c1); return;
      case DType::kI8R: axpy_chunk_float<I8RWeights>(wr, rows, h, n_rows, y, c0, c1); return;
      case DType::kQ8_0: axpy_chunk_q8_0(wr, rows, h, n_rows, y, c0, c1); return;
      default: return;
    }
  });
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

// wkv5 for value columns [i0, i0 + 8B): the B accumulators of y stay in registers while j walks
// the state's rows (one head's state, 16 KiB at S = 64, stays in L1).
template <int B>
void wkv5_cols(int64_t S, int64_t i0, float* st, const float* r, const float* k, const float* v, const float* w,
               const float* u, float* y) {
  __m256 acc[B], vv[B];
  for (int b = 0; b < B; ++b) {
    acc[b] = _mm256_setzero_ps();
    vv[b] = _mm256_loadu_ps(v + i0 + 8 * b);
  }
  for (int64_t j = 0; j < S; ++j) {
    const __m256 rj = _mm256_set1_ps(r[j]), kj = _mm256_set1_ps(k[j]), wj = _mm256_set1_ps(w[j]);
    const __m256 ruk = _mm256_set1_ps(r[j] * u[j] * k[j]);
    float* row = st + j * S + i0;
    for (int b = 0; b < B; ++b) {
      const __m256 sv = _mm256_loadu_ps(row + 8 * b);
      acc[b] = _mm256_add_ps(acc[b], _mm256_fmadd_ps(rj, sv, _mm256_mul_ps(ruk, vv[b])));
      _mm256_storeu_ps(row + 8 * b, _mm256_fmadd_ps(wj, sv, _mm256_mul_ps(kj, vv[b])));
    }
  }
  for (int b = 0; b < B; ++b) _mm256_storeu_ps(y + i0 + 8 * b, acc[b]);
}

void wkv5(int64_t S, float* st, const float* r, const float* k, const float* v, const float* w, const float* u,
          float* y) {
  int64_t i0 = 0;
  for (; i0 + 32 <= S; i0 += 32) wkv5_cols<4>(S, i0, st, r, k, v, w, u, y);
  for (; i0 + 8 <= S; i0 += 8) wkv5_cols<1>(S, i0, st, r, k, v, w, u, y);
  if (i0 < S) wkv5_columns(S, i0, st, r, k, v, w, u, y);
}

}  // namespace

#if defined(RWKV_EDGE_AVX2_VNNI)
const Kernels& avxvnni_table() {
  static const Kernels k{"avx2-vnni", gemm, scalar_table().get_row, f16_to_f32, f32_to_f16,
                         quantize_q8_0, quantize_q8_1, gemv_rows, axpy_rows, wkv5};
  return k;
}
#else
const Kernels& avx2_table() {
  // get_row is memory-bound and rare (one embedding row per token): the scalar one does.
  static const Kernels k{"avx2", gemm, scalar_table().get_row, f16_to_f32, f32_to_f16,
                         quantize_q8_0, quantize_q8_1, gemv_rows, axpy_rows, wkv5};
  return k;
}
#endif

}  // namespace rwkv::kern::detail
