// RWKV-7 "Goose" time mix (rwkv-math.md §7): generalised delta rule with value residual.
#include <algorithm>

#include "engine/models/blocks.h"

namespace rwkv::detail {

void time_mix_v7(const Hparams& hp, const LayerWeights& lw, const Rows& rows, int64_t layer, const float* a,
                 float* x, float* v_first, Scratch& s) {
  const int64_t C = hp.n_embd, T = rows.T, H = hp.n_head, S = hp.head_size;
  const int64_t Dmax = std::max({lw.w1.rows(), lw.a1.rows(), lw.g1.rows(), layer > 0 ? lw.v1.rows() : (int64_t)0});
  float* prev = s.get(0, (size_t)(T * C));
  float* xs = s.get(1, (size_t)(6 * T * C));  // xr, xw, xk, xv, xa, xg
  float* r = s.get(2, (size_t)(T * C));
  float* w = s.get(3, (size_t)(T * C));
  float* k = s.get(4, (size_t)(T * C));
  float* v = s.get(5, (size_t)(T * C));
  float* aa = s.get(6, (size_t)(T * C));
  float* g = s.get(7, (size_t)(T * C));
  float* lo = s.get(8, (size_t)(T * Dmax));
  float* kk = s.get(9, (size_t)(T * C));

  token_shift(rows, layer, Shift::kAtt, a, prev, C);
  const Vec mixes[6] = {lw.x_r, lw.x_w, lw.x_k, lw.x_v, lw.x_a, lw.x_g};
  for (int p = 0; p < 6; ++p) {
    float* xp = xs + p * T * C;
    for (int64_t i = 0; i < T * C; ++i) xp[i] = a[i] + (prev[i] - a[i]) * mixes[p][i % C];
  }
  const float* xr = xs;
  const float* xw = xs + 1 * T * C;
  const float* xk = xs + 2 * T * C;
  const float* xv = xs + 3 * T * C;
  const float* xa = xs + 4 * T * C;
  const float* xg = xs + 5 * T * C;
  linear(lw.att_r, xr, T, r, s);
  linear(lw.att_k, xk, T, k, s);
  linear(lw.att_v, xv, T, v, s);
  // w = exp(-e^-0.5 * sigmoid(w0 + tanh(xw @ w1) @ w2))
  linear(lw.w1, xw, T, lo, s);
  for (int64_t i = 0; i < T * lw.w1.rows(); ++i) lo[i] = std::tanh(lo[i]);
  linear(lw.w2, lo, T, w, s);
  for (int64_t i = 0; i < T * C; ++i) w[i] = std::exp(-0.606531f * sigmoidf(lw.w0[i % C] + w[i]));
  // a = sigmoid(a0 + (xa @ a1) @ a2)
  linear(lw.a1, xa, T, lo, s);
  linear(lw.a2, lo, T, aa, s);
  for (int64_t i = 0; i < T * C; ++i) aa[i] = sigmoidf(lw.a0[i % C] + aa[i]);
  // g = sigmoid(xg @ g1) @ g2
  linear(lw.g1, xg, T, lo, s);
  for (int64_t i = 0; i < T * lw.g1.rows(); ++i) lo[i] = sigmoidf(lo[i]);
  linear(lw.g2, lo, T, g, s);
  // value residual: layer 0 defines v_first, later layers mix towards it.
  if (layer == 0) {
    std::copy(v, v + T * C, v_first);
  } else {
    float* vm = xs;  // reuse xr's slot: r is already computed
    linear(lw.v1, xv, T, lo, s);
    linear(lw.v2, lo, T, vm, s);
    for (int64_t i = 0; i < T * C; ++i) v[i] += (v_first[i] - v[i]) * sigmoidf(lw.v0[i % C] + vm[i]);
  }
  // kk = normalize_per_head(k * k_k); k = k * (1 + (a - 1) * k_a)
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      float* kkh = kk + t * C + h * S;
      const float* kh = k + t * C + h * S;
      double n2 = 0.0;
      for (int64_t j = 0; j < S; ++j) {
        kkh[j] = kh[j] * lw.k_k[h * S + j];
        n2 += (double)kkh[j] * kkh[j];
      }
      const float inv = 1.0f / std::max((float)std::sqrt(n2), 1e-12f);
      for (int64_t j = 0; j < S; ++j) kkh[j] *= inv;
    }
  }
  for (int64_t i = 0; i < T * C; ++i) k[i] = k[i] * (1.0f + (aa[i] - 1.0f) * lw.k_a[i % C]);

  float* y = xs + T * C;  // reuse xw's slot (w already computed)
  // Heads are independent: shared out over the kernels' thread team, each head walking the
  // rows in order (rows of one sequence in a prefill chunk share its state). Per head and row:
  // the state update, the head's group norm, then the r_k bonus term. Bit-identical to a
  // serial loop for any thread count.
  kern::parallel_each(H, [&](int64_t h) {
    for (int64_t t = 0; t < T; ++t) {
      float* sh = rows.state[(size_t)t]->wkv(layer) + h * S * S;  // [value i][key j]
      const int64_t o = t * C + h * S;
      const float* rh = r + o;
      const float* wh = w + o;
      const float* kh = k + o;
      const float* vh = v + o;
      const float* kkh = kk + o;
      const float* ah = aa + o;
      float* yh = y + o;
      for (int64_t i = 0; i < S; ++i) {
        float* row = sh + i * S;
        // sa = sum_j (-kk_j) S[i][j]
        float sa = 0.0f;
        for (int64_t j = 0; j < S; ++j) sa -= kkh[j] * row[j];
        // S[i][j] = S[i][j] w_j + v_i k_j + sa (kk_j a_j);  y_i = sum_j S[i][j] r_j
        float acc = 0.0f;
        for (int64_t j = 0; j < S; ++j) {
          row[j] = row[j] * wh[j] + vh[i] * kh[j] + sa * (kkh[j] * ah[j]);
          acc += row[j] * rh[j];
        }
        yh[i] = acc;
      }
      group_norm_group(yh, S, lw.ln_x_w + h * S, lw.ln_x_b + h * S, hp.gn_eps);
      // y += per-head (sum_j r_j k_j r_k[h][j]) * v
      float dot = 0.0f;
      for (int64_t j = 0; j < S; ++j) dot += r[o + j] * k[o + j] * lw.r_k[h * S + j];
      for (int64_t j = 0; j < S; ++j) y[o + j] += dot * v[o + j];
    }
  });
  for (int64_t i = 0; i < T * C; ++i) y[i] *= g[i];
  float* out = r;  // reuse
  linear(lw.att_o, y, T, out, s);
  for (int64_t i = 0; i < T * C; ++i) x[i] += out[i];
}

}  // namespace rwkv::detail
