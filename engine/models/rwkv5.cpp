// RWKV-5.1 / 5.2 time mix (rwkv-math.md §5) and the per-head recurrence shared with v6.
#include "engine/models/rwkv5.h"

namespace rwkv::detail {

void wkv5_rows(const Hparams& hp, const LayerWeights& lw, const Rows& rows, int64_t layer, const float* r,
               const float* k, const float* v, const float* w, int64_t w_stride, const float* gate, float* y) {
  const int64_t C = hp.n_embd, T = rows.T, S = hp.head_size;
  const kern::Kernels& kk = kern::kernels();
  kern::parallel_each(hp.n_head, [&](int64_t h) {
    for (int64_t t = 0; t < T; ++t) {
      const int64_t o = t * C + h * S;
      float* sh = rows.state[(size_t)t]->wkv(layer) + h * S * S;
      kk.wkv5(S, sh, r + o, k + o, v + o, w + t * w_stride + h * S, lw.first + h * S, y + o);
      group_norm_group(y + o, S, lw.ln_x_w + h * S, lw.ln_x_b + h * S, hp.gn_eps);
      if (gate != nullptr) {
        for (int64_t i = o; i < o + S; ++i) {
          const float silu = gate[i] * sigmoidf(gate[i]);
          y[i] *= silu;
        }
      }
    }
  });
}

void time_mix_v5(const Hparams& hp, const LayerWeights& lw, const Rows& rows, int64_t layer, const float* a,
                 float* x, Scratch& s) {
  const int64_t C = hp.n_embd, T = rows.T;
  const bool gated = hp.version == RwkvVersion::kV5_2;
  float* prev = s.get(0, (size_t)(T * C));
  float* xk = s.get(1, (size_t)(T * C));
  float* xv = s.get(2, (size_t)(T * C));
  float* xr = s.get(3, (size_t)(T * C));
  float* xg = s.get(4, (size_t)(T * C));
  float* k = s.get(5, (size_t)(T * C));
  float* v = s.get(6, (size_t)(T * C));
  float* r = s.get(7, (size_t)(T * C));
  float* g = s.get(8, (size_t)(T * C));
  token_shift(rows, layer, Shift::kAtt, a, prev, C);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t o = t * C;
    for (int64_t c = 0; c < C; ++c) {
      const int64_t i = o + c;
      xk[i] = a[i] * lw.mix_k[c] + prev[i] * (1.0f - lw.mix_k[c]);
      xv[i] = a[i] * lw.mix_v[c] + prev[i] * (1.0f - lw.mix_v[c]);
      xr[i] = a[i] * lw.mix_r[c] + prev[i] * (1.0f - lw.mix_r[c]);
    }
    if (gated) {
      for (int64_t c = 0; c < C; ++c) xg[o + c] = a[o + c] * lw.mix_g[c] + prev[o + c] * (1.0f - lw.mix_g[c]);
    }
  }
  linear(lw.att_k, xk, T, k, s);
  linear(lw.att_v, xv, T, v, s);
  linear(lw.att_r, xr, T, r, s);  // no sigmoid on r in v5+
  if (gated) linear(lw.att_g, xg, T, g, s);  // silu(g) is applied in wkv5_rows
  float* y = xk;  // reuse
  wkv5_rows(hp, lw, rows, layer, r, k, v, lw.decay, 0, gated ? g : nullptr, y);
  float* out = xv;  // reuse
  linear(lw.att_o, y, T, out, s);
  for (int64_t i = 0; i < T * C; ++i) x[i] += out[i];
}

}  // namespace rwkv::detail
