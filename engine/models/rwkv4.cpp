// RWKV-4 time mix (rwkv-math.md §4).
#include <algorithm>

#include "engine/models/blocks.h"

namespace rwkv::detail {

void time_mix_v4(const Hparams& hp, const LayerWeights& lw, const Rows& rows, int64_t layer, const float* a,
                 float* x, Scratch& s) {
  const int64_t C = hp.n_embd, T = rows.T;
  float* prev = s.get(0, (size_t)(T * C));
  float* xk = s.get(1, (size_t)(T * C));
  float* xv = s.get(2, (size_t)(T * C));
  float* xr = s.get(3, (size_t)(T * C));
  float* k = s.get(4, (size_t)(T * C));
  float* v = s.get(5, (size_t)(T * C));
  float* r = s.get(6, (size_t)(T * C));
  token_shift(rows, layer, Shift::kAtt, a, prev, C);
  // xk = a*mu_k + prev*(1-mu_k); xv, xr likewise
  for (int64_t i = 0; i < T * C; ++i) {
    const int64_t c = i % C;
    xk[i] = a[i] * lw.mix_k[c] + prev[i] * (1.0f - lw.mix_k[c]);
    xv[i] = a[i] * lw.mix_v[c] + prev[i] * (1.0f - lw.mix_v[c]);
    xr[i] = a[i] * lw.mix_r[c] + prev[i] * (1.0f - lw.mix_r[c]);
  }
  linear(lw.att_k, xk, T, k, s);
  linear(lw.att_v, xv, T, v, s);
  linear(lw.att_r, xr, T, r, s);
  float* rwkv = xk;  // reuse
  for (int64_t t = 0; t < T; ++t) {
    float* st = rows.state[t]->wkv(layer);
    float* aa = st;
    float* bb = st + C;
    float* pp = st + 2 * C;
    const float* kt = k + t * C;
    const float* vt = v + t * C;
    const float* rt = r + t * C;
    for (int64_t c = 0; c < C; ++c) {
      const float u = lw.first[c], d = lw.decay[c];
      // wkv = (e1*aa + e2*v) / (e1*bb + e2) with a shared exponent (numerically stable form)
      float q = std::max(pp[c], u + kt[c]);
      float e1 = std::exp(pp[c] - q);
      float e2 = std::exp(u + kt[c] - q);
      const float wkv = (e1 * aa[c] + e2 * vt[c]) / (e1 * bb[c] + e2);
      // state update: a <- e^d a + e^k v, b <- e^d b + e^k
      q = std::max(pp[c] + d, kt[c]);
      e1 = std::exp(pp[c] + d - q);
      e2 = std::exp(kt[c] - q);
      aa[c] = e1 * aa[c] + e2 * vt[c];
      bb[c] = e1 * bb[c] + e2;
      pp[c] = q;
      rwkv[t * C + c] = sigmoidf(rt[c]) * wkv;
    }
  }
  float* out = xv;  // reuse
  linear(lw.att_o, rwkv, T, out, s);
  for (int64_t i = 0; i < T * C; ++i) x[i] += out[i];
}

}  // namespace rwkv::detail
