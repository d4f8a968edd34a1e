// RWKV-6 "Finch" time mix (rwkv-math.md §6): data-dependent token shift and decay.
#include <algorithm>

#include "engine/models/rwkv5.h"

namespace rwkv::detail {

void time_mix_v6(const Hparams& hp, const LayerWeights& lw, const Rows& rows, int64_t layer, const float* a,
                 float* x, Scratch& s) {
  const int64_t C = hp.n_embd, T = rows.T;
  const int64_t D = lw.maa_w2[0].cols;  // time_mix_extra_dim
  const int64_t Dd = lw.decay_w1.rows();  // time_decay_extra_dim
  float* prev = s.get(0, (size_t)(T * C));
  float* xxx = s.get(1, (size_t)(T * C));
  float* m = s.get(2, (size_t)(T * 5 * D));
  float* mix = s.get(3, (size_t)(5 * T * C));  // mw, mk, mv, mr, mg
  float* xs = s.get(4, (size_t)(5 * T * C));   // xw, xk, xv, xr, xg
  float* r = s.get(5, (size_t)(T * C));
  float* k = s.get(6, (size_t)(T * C));
  float* v = s.get(7, (size_t)(T * C));
  float* g = s.get(8, (size_t)(T * C));
  float* w = s.get(9, (size_t)(T * std::max(C, Dd)));

  token_shift(rows, layer, Shift::kAtt, a, prev, C);
  // sx = prev - a; xxx = a + sx * maa_x
  for (int64_t i = 0; i < T * C; ++i) xxx[i] = a[i] + (prev[i] - a[i]) * lw.mix_x[i % C];
  // m = tanh(xxx @ maa_w1) viewed as (5, D); part p -> maa_w2[p] m_p
  linear(lw.maa_w1, xxx, T, m, s);
  for (int64_t i = 0; i < T * 5 * D; ++i) m[i] = std::tanh(m[i]);
  for (int p = 0; p < 5; ++p) {
    // Rows of part p are D floats at m + t*5D + p*D: a strided X, so gemm with ldx = 5D.
    kern::kernels().gemm(lw.maa_w2[p], m + p * D, 5 * D, T, mix + p * T * C, C);
    if (s.probe != nullptr) {
      probe_product(s, lw.maa_w1.name.substr(0, lw.maa_w1.name.size() - 1) + "2." + std::to_string(p), m + p * D,
                    5 * D, T, D, mix + p * T * C, C);
    }
  }
  const Vec base[5] = {lw.mix_w, lw.mix_k, lw.mix_v, lw.mix_r, lw.mix_g};
  for (int p = 0; p < 5; ++p) {
    float* xp = xs + p * T * C;
    const float* mp = mix + p * T * C;
    for (int64_t i = 0; i < T * C; ++i) xp[i] = a[i] + (prev[i] - a[i]) * (base[p][i % C] + mp[i]);
  }
  const float* xw = xs;
  linear(lw.att_k, xs + 1 * T * C, T, k, s);
  linear(lw.att_v, xs + 2 * T * C, T, v, s);
  linear(lw.att_r, xs + 3 * T * C, T, r, s);
  linear(lw.att_g, xs + 4 * T * C, T, g, s);
  // w = exp(-exp(w0 + tanh(xw @ decay_w1) @ decay_w2))
  // xxx is no longer needed: its slot holds the T x Dd decay hidden layer.
  float* dh = s.get(1, (size_t)(T * std::max(C, Dd)));
  linear(lw.decay_w1, xw, T, dh, s);
  for (int64_t i = 0; i < T * Dd; ++i) dh[i] = std::tanh(dh[i]);
  linear(lw.decay_w2, dh, T, w, s);
  for (int64_t i = 0; i < T * C; ++i) w[i] = std::exp(-std::exp(lw.decay[i % C] + w[i]));

  float* y = mix;  // reuse
  wkv5_rows(hp, lw, rows, layer, r, k, v, w, C, g, y);  // y = GN(wkv) * silu(g)
  float* out = r;  // reuse
  linear(lw.att_o, y, T, out, s);
  for (int64_t i = 0; i < T * C; ++i) x[i] += out[i];
}

}  // namespace rwkv::detail
