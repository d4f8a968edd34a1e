// RWKV-5.1 / 5.2 time mix (rwkv-math.md §5) and the per-head recurrence shared with v6.
#include "engine/models/rwkv5.h"

namespace rwkv::detail {

void wkv5_row(int64_t H, int64_t S, float* state, const float* r, const float* k, const float* v, const float* w,
              const float* u, float* y) {
  for (int64_t h = 0; h < H; ++h) {
    float* sh = state + h * S * S;  // [key j][value i]
    const float* rh = r + h * S;
    const float* kh = k + h * S;
    const float* vh = v + h * S;
    const float* wh = w + h * S;
    const float* uh = u + h * S;
    float* yh = y + h * S;
    for (int64_t i = 0; i < S; ++i) yh[i] = 0.0f;
    for (int64_t j = 0; j < S; ++j) {
      const float rj = rh[j], kj = kh[j], wj = wh[j], ruk = rj * uh[j] * kj;
      float* row = sh + j * S;
      // y[i] += r[j] * (u[j] k[j] v[i] + S[j][i]);  S[j][i] = k[j] v[i] + w[j] S[j][i]
      for (int64_t i = 0; i < S; ++i) {
        const float kv = kj * vh[i];
        yh[i] += ruk * vh[i] + rj * row[i];
        row[i] = kv + wj * row[i];
      }
    }
  }
}

void time_mix_v5(const Hparams& hp, const LayerWeights& lw, const Rows& rows, int64_t layer, const float* a,
                 float* x, Scratch& s) {
  const int64_t C = hp.n_embd, T = rows.T, H = hp.n_head, S = hp.head_size;
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
  for (int64_t i = 0; i < T * C; ++i) {
    const int64_t c = i % C;
    xk[i] = a[i] * lw.mix_k[c] + prev[i] * (1.0f - lw.mix_k[c]);
    xv[i] = a[i] * lw.mix_v[c] + prev[i] * (1.0f - lw.mix_v[c]);
    xr[i] = a[i] * lw.mix_r[c] + prev[i] * (1.0f - lw.mix_r[c]);
    if (gated) xg[i] = a[i] * lw.mix_g[c] + prev[i] * (1.0f - lw.mix_g[c]);
  }
  linear(lw.att_k, xk, T, k, s);
  linear(lw.att_v, xv, T, v, s);
  linear(lw.att_r, xr, T, r, s);  // no sigmoid on r in v5+
  if (gated) {
    linear(lw.att_g, xg, T, g, s);
    for (int64_t i = 0; i < T * C; ++i) g[i] = g[i] * sigmoidf(g[i]);  // silu
  }
  float* y = xk;  // reuse
  for (int64_t t = 0; t < T; ++t) {
    wkv5_row(H, S, rows.state[t]->wkv(layer), r + t * C, k + t * C, v + t * C, lw.decay, lw.first, y + t * C);
    group_norm(y + t * C, C, H, lw.ln_x_w, lw.ln_x_b, hp.gn_eps);
  }
  if (gated) {
    for (int64_t i = 0; i < T * C; ++i) y[i] *= g[i];
  }
  float* out = xv;  // reuse
  linear(lw.att_o, y, T, out, s);
  for (int64_t i = 0; i < T * C; ++i) x[i] += out[i];
}

}  // namespace rwkv::detail
