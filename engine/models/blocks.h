// Pieces shared by the per-version forward passes: weights of a layer, the rows of a forward
// pass, layer/group norm, token shift and the channel mix.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "engine/common/aligned.h"
#include "engine/model.h"

namespace rwkv::detail {

using Vec = const float*;  // f32, n_embd (or as documented) elements, owned by the Model

// One projection y = W x with W [out x in]: either dense (`w`) or factored into two low-rank
// factors y = b · (a · x) with a [r x in] (tensor `<name>.lr_a`) and b [out x r] (`<name>.lr_b`),
// as `rwkv-edge compress` writes them (issue 6). Every 2-D projection of every version is a
// Linear, so any of them may be factored.
struct Linear {
  std::string name;  // tensor base name ("blocks.3.att.key"); probes and messages use it
  kern::MatView w;   // dense weight; unused when factored
  kern::MatView a;   // factored: a [r x in]
  kern::MatView b;   // factored: b [out x r]
  bool factored() const { return a.data != nullptr; }
  int64_t rows() const { return factored() ? b.rows : w.rows; }  // out
  int64_t cols() const { return factored() ? a.cols : w.cols; }  // in
  int64_t rank() const { return factored() ? a.rows : 0; }
  // Under a memory budget (issue 7) a matrix the budget cannot keep resident is streamed: its
  // bytes are read from the file tensor (w_file / a_file / b_file, non-null for the streamed
  // ones) into the stream's buffer for every product. Null stream: the views are in memory.
  store::MatrixStream* stream = nullptr;
  const TensorRef* w_file = nullptr;
  const TensorRef* a_file = nullptr;
  const TensorRef* b_file = nullptr;
};

// Sparse channel mix of one layer (issue 6, RWKV-Lite §4): a predictor marks the neurons
// expected to be active (relu(W_k·xk) > 0) and only their rows of W_k and of W_v^T are read.
// Active = the n_top best scores of the 1-bit key copy `sign`, union the neurons whose MLP logit
// W2·relu(W1·xk) exceeds logit_tau. n_top = F takes every neuron (the dense result).
struct FfnSparse {
  bool enabled = false;
  kern::MatView sign;     // i1r [F x C]; data null when the 1-bit predictor is unused
  kern::MatView w1, w2;   // MLP [H x C] and [F x H]; data null when the MLP is unused
  kern::MatView value_t;  // W_v^T [F x C]: row i = neuron i's output column
  int64_t n_top = 0;
  float logit_tau = 0.0f;
  double expected_active = 1.0;  // fraction active on held-out calibration rows (metadata)
  // Under a memory budget (issue 7): the neurons' rows of W_k and W_v^T come from this cache
  // (value_t's data, and ffn_k's when the cache has the key, are then never read). Null: in place.
  store::NeuronCache* cache = nullptr;
};

struct LayerWeights {
  Vec ln1_w = nullptr, ln1_b = nullptr, ln2_w = nullptr, ln2_b = nullptr;
  // Time mix. v4/v5: time_mix_{k,v,r,g}; v6: time_maa_{k,v,r,g} (+ maa_x, maa_w).
  Vec mix_k = nullptr, mix_v = nullptr, mix_r = nullptr, mix_g = nullptr, mix_x = nullptr, mix_w = nullptr;
  // Per-channel decay and bonus in the form each version's recurrence uses:
  // v4 decay = -exp(w), first = u; v5.x decay = exp(-exp(w)), first = u (expanded per channel);
  // v6 decay = w0 (raw), first = u.
  Vec decay = nullptr, first = nullptr;
  Vec ln_x_w = nullptr, ln_x_b = nullptr;
  Linear att_r, att_k, att_v, att_o, att_g;
  Linear maa_w1, decay_w1, decay_w2;  // v6
  kern::MatView maa_w2[5];             // v6: slices of a 3-D tensor, never factored
  // v7
  Vec x_r = nullptr, x_w = nullptr, x_k = nullptr, x_v = nullptr, x_a = nullptr, x_g = nullptr;
  Vec w0 = nullptr, a0 = nullptr, v0 = nullptr, k_k = nullptr, k_a = nullptr, r_k = nullptr;
  Linear w1, w2, a1, a2, v1, v2, g1, g2;
  // Channel mix. v4/v5: time_mix_{k,r}; v6: time_maa_{k,r}; v7: x_k in ffn_mix_k.
  Vec ffn_mix_k = nullptr, ffn_mix_r = nullptr;
  Linear ffn_k, ffn_v, ffn_r;  // ffn_v unused when ffn_sparse.enabled (value_t replaces it)
  FfnSparse ffn_sparse;
};

// The rows of one forward chunk: T rows, each belonging to a sequence (its State). Rows of a
// sequence are contiguous and in order.
struct Rows {
  int64_t T = 0;
  std::vector<State*> state;   // per row
  std::vector<uint8_t> first;  // 1 when the row is the first of its sequence in this chunk
  std::vector<uint8_t> last;   // 1 when the row is the last of its sequence in this chunk
};

// Scratch buffers of one chunk (T x width each), plus the rank-r intermediate of factored
// projections and the probe of this forward pass (null: none).
struct Scratch {
  // 64-byte aligned, so the kernels' 512-bit activation loads never split across cache lines
  // (malloc aligns to 16; a split load costs two load slots, and the batched f32 / i8r tiles
  // load each activation vector once per tile row: 384 x 768 f32 with 8 vectors, one thread,
  // ran at 25.8 GMAC/s misaligned against 36.8 aligned).
  using AlignedFloats = std::vector<float, AlignedAllocator<float, 64>>;
  AlignedFloats buf[16];
  AlignedFloats lowrank;  // T x r, used only inside linear()
  Probe* probe = nullptr;
  // The first error of this forward pass from a streamed matrix read (linear() has no status:
  // it zeroes its output and records the error here; forward_chunk checks after every block).
  Status error;
  float* get(int i, size_t n) { return sized(buf[i], n); }
  float* get_lowrank(size_t n) { return sized(lowrank, n); }

 private:
  static float* sized(AlignedFloats& v, size_t n) {
    if (v.size() < n) v.resize(n);
    return v.data();
  }
};

// y = LN(x) * w + b over n elements, eps 1e-5 (statistics in double).
void layer_norm(const float* x, float* y, int64_t n, Vec w, Vec b, float eps = 1e-5f);
// layer_norm of each of T rows of C (x and y rows C floats apart), on the kernels' thread team
// when there are several rows (a batched step: the rows are independent; same bits as one by one).
void layer_norm_rows(const float* x, float* y, int64_t T, int64_t C, Vec w, Vec b);
// Group norm with n/g elements per group, then * w + b.
void group_norm(float* x, int64_t n, int64_t groups, Vec w, Vec b, float eps);
// One group of group_norm: x[g] normalised in place, scaled by w[g] and shifted by b[g].
void group_norm_group(float* x, int64_t g, Vec w, Vec b, float eps);
// prev[t] = x[t-1] within a sequence, the state's saved row for the first row; then the
// state's saved row becomes the sequence's last row. `which` selects att_xx or ffn_xx.
enum class Shift { kAtt, kFfn };
void token_shift(const Rows& rows, int64_t layer, Shift which, const float* x, float* prev, int64_t C);
// y[T, w.rows] = x[T, w.cols] W^T through the kernels.
void matmul(const kern::MatView& w, const float* x, int64_t T, float* y);
// y[T, w.rows()] = x[T, w.cols()] W^T for a dense or factored projection; x rows are `ldx`
// floats apart (0 = w.cols()). Calls the probe, if any, with the projection's name.
void linear(const Linear& w, const float* x, int64_t T, float* y, Scratch& s, int64_t ldx = 0);
// Reports a product computed outside linear() (v6 time_maa_w2 slices) to the probe.
void probe_product(Scratch& s, const std::string& name, const float* x, int64_t ldx, int64_t T, int64_t in,
                   const float* y, int64_t out);

// e^x for float x, branch-free so that loops calling it vectorise (a libm expf call per element
// kept the v5 gate and the channel-mix gating scalar): Cody-Waite reduction x = n ln2 + r,
// |r| <= ln2 / 2, Taylor to r^7 (truncation below 1e-8 relative), scaled by 2^n through the
// exponent bits. Arguments are clamped to [-87.3, 88.3], where 2^n stays a normal float, so
// the result is finite and positive for finite x; NaN gives NaN. Within a few ulp of std::exp
// inside that range (tests/engine).
inline float exp_branchless(float x) {
  const float xc = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
  // Round x log2(e) to the nearest integer with the 1.5 * 2^23 trick (plain SSE2 has no round).
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (xc - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits;
  std::memcpy(&bits, &p, sizeof bits);
  bits += static_cast<int32_t>(n) * (1 << 23);
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return x == x ? out : x;
}

inline float sigmoidf(float x) { return 1.0f / (1.0f + exp_branchless(-x)); }

// The predicted-active neurons of one row, ascending, into `active` (its size is the count);
// `scores` / `logits` are the row's 1-bit scores and MLP logits (null when unused). `mark` is F
// bytes of scratch.
void ffn_active_set(const FfnSparse& sp, int64_t F, const float* scores, const float* logits,
                    std::vector<int32_t>& active, std::vector<uint8_t>& mark);

// out[T, C] = W_v · relu(W_k · xk)² over the predicted-active neurons of each row, with the
// sparse kernels (gemv_rows on W_k, axpy_rows on W_v^T), or through the layer's neuron cache.
// Uses scratch slots 0..4; channel_mix puts `out` in slot 5. Errors: IOError from the cache.
Status channel_mix_sparse_kv(const Hparams& hp, const LayerWeights& lw, const float* xk, int64_t T, float* out,
                           Scratch& s);

// The channel mix of v4, v5, v6 (receptance gate) and v7 (no gate); adds into x. Sparse when the
// layer has a predictor (lw.ffn_sparse.enabled). Errors: IOError from a neuron cache.
Status channel_mix(const Hparams& hp, const LayerWeights& lw, const Rows& rows, int64_t layer, const float* f,
                 float* x, Scratch& s);

// Per-version time mixes: read `a` (LN1 output, T x C), add the mix's output into `x`.
// `v_first` (v7 only) is a T x C buffer carried across layers of one chunk.
void time_mix_v4(const Hparams& hp, const LayerWeights& lw, const Rows& rows, int64_t layer, const float* a,
                 float* x, Scratch& s);
void time_mix_v5(const Hparams& hp, const LayerWeights& lw, const Rows& rows, int64_t layer, const float* a,
                 float* x, Scratch& s);
void time_mix_v6(const Hparams& hp, const LayerWeights& lw, const Rows& rows, int64_t layer, const float* a,
                 float* x, Scratch& s);
void time_mix_v7(const Hparams& hp, const LayerWeights& lw, const Rows& rows, int64_t layer, const float* a,
                 float* x, float* v_first, Scratch& s);

// Scratch slots: 0..9 are free for time mixes; channel mix uses 10..13 (and 0..5 when sparse:
// the time mix is done by then); model.cpp 14..15.
}  // namespace rwkv::detail
