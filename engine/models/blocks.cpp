#include "engine/models/blocks.h"

#include <algorithm>
#include <cstring>

namespace rwkv::detail {

void layer_norm(const float* x, float* y, int64_t n, Vec w, Vec b, float eps) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  const double mean = sum / (double)n;
  double var = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = x[i] - mean;
    var += d * d;
  }
  var /= (double)n;
  const float inv = (float)(1.0 / std::sqrt(var + (double)eps));
  const float m = (float)mean;
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - m) * inv * w[i] + b[i];
}

void group_norm(float* x, int64_t n, int64_t groups, Vec w, Vec b, float eps) {
  const int64_t g = n / groups;
  for (int64_t h = 0; h < groups; ++h) {
    float* xh = x + h * g;
    double sum = 0.0;
    for (int64_t i = 0; i < g; ++i) sum += xh[i];
    const double mean = sum / (double)g;
    double var = 0.0;
    for (int64_t i = 0; i < g; ++i) {
      const double d = xh[i] - mean;
      var += d * d;
    }
    var /= (double)g;
    const float inv = (float)(1.0 / std::sqrt(var + (double)eps));
    const float m = (float)mean;
    for (int64_t i = 0; i < g; ++i) xh[i] = (xh[i] - m) * inv * w[h * g + i] + b[h * g + i];
  }
}

void token_shift(const Rows& rows, int64_t layer, Shift which, const float* x, float* prev, int64_t C) {
  for (int64_t t = 0; t < rows.T; ++t) {
    State* st = rows.state[t];
    float* saved = which == Shift::kAtt ? st->att_xx(layer) : st->ffn_xx(layer);
    const float* src = rows.first[t] ? saved : x + (t - 1) * C;
    std::memcpy(prev + t * C, src, (size_t)C * sizeof(float));
  }
  for (int64_t t = 0; t < rows.T; ++t) {
    if (!rows.last[t]) continue;
    State* st = rows.state[t];
    float* saved = which == Shift::kAtt ? st->att_xx(layer) : st->ffn_xx(layer);
    std::memcpy(saved, x + t * C, (size_t)C * sizeof(float));
  }
}

void matmul(const kern::MatView& w, const float* x, int64_t T, float* y) {
  kern::kernels().gemm(w, x, w.cols, T, y, w.rows);
}

void probe_product(Scratch& s, const std::string& name, const float* x, int64_t ldx, int64_t T, int64_t in,
                   const float* y, int64_t out) {
  if (s.probe == nullptr) return;
  if (ldx == in) {
    s.probe->on_linear(name, x, T, in, y, out);
    return;
  }
  // Probes take contiguous rows: gather the strided input (offline tools only).
  std::vector<float> packed((size_t)(T * in));
  for (int64_t t = 0; t < T; ++t) std::memcpy(packed.data() + t * in, x + t * ldx, (size_t)in * sizeof(float));
  s.probe->on_linear(name, packed.data(), T, in, y, out);
}

void linear(const Linear& w, const float* x, int64_t T, float* y, Scratch& s, int64_t ldx) {
  const kern::Kernels& k = kern::kernels();
  if (ldx <= 0) ldx = w.cols();
  if (!w.factored()) {
    k.gemm(w.w, x, ldx, T, y, w.w.rows);
  } else {
    // y = b · (a · x): the rank-r intermediate lives in the scratch.
    const int64_t r = w.a.rows;
    if (s.lowrank.size() < (size_t)(T * r)) s.lowrank.resize((size_t)(T * r));
    k.gemm(w.a, x, ldx, T, s.lowrank.data(), r);
    k.gemm(w.b, s.lowrank.data(), r, T, y, w.b.rows);
  }
  if (s.probe != nullptr) probe_product(s, w.name, x, ldx, T, w.cols(), y, w.rows());
}

void channel_mix(const Hparams& hp, const LayerWeights& lw, const Rows& rows, int64_t layer, const float* f,
                 float* x, Scratch& s) {
  const int64_t C = hp.n_embd, F = hp.n_ffn, T = rows.T;
  float* prev = s.get(10, (size_t)(T * C));
  float* xk = s.get(11, (size_t)(T * C));
  float* xr = s.get(12, (size_t)(T * C));
  float* hid = s.get(13, (size_t)(T * std::max(F, C)));
  token_shift(rows, layer, Shift::kFfn, f, prev, C);
  const bool v4_style = hp.version == RwkvVersion::kV4 || hp.version == RwkvVersion::kV5_1 ||
                        hp.version == RwkvVersion::kV5_2;
  const bool gated = hp.version != RwkvVersion::kV7;
  for (int64_t i = 0; i < T * C; ++i) {
    const int64_t c = i % C;
    if (v4_style) {
      // xk = f*mu + prev*(1-mu)
      xk[i] = f[i] * lw.ffn_mix_k[c] + prev[i] * (1.0f - lw.ffn_mix_k[c]);
      xr[i] = f[i] * lw.ffn_mix_r[c] + prev[i] * (1.0f - lw.ffn_mix_r[c]);
    } else {
      // xk = f + (prev - f) * mu
      const float sx = prev[i] - f[i];
      xk[i] = f[i] + sx * lw.ffn_mix_k[c];
      if (gated) xr[i] = f[i] + sx * lw.ffn_mix_r[c];
    }
  }
  // k = relu(Wk xk)^2
  linear(lw.ffn_k, xk, T, hid, s);
  for (int64_t i = 0; i < T * F; ++i) {
    const float v = hid[i] > 0.0f ? hid[i] : 0.0f;
    hid[i] = v * v;
  }
  // out = (sigma(Wr xr) *) Wv k
  float* out = xk;  // reuse: xk is no longer needed
  linear(lw.ffn_v, hid, T, out, s);
  if (gated) {
    float* r = hid;  // reuse
    linear(lw.ffn_r, xr, T, r, s);
    for (int64_t i = 0; i < T * C; ++i) x[i] += sigmoidf(r[i]) * out[i];
  } else {
    for (int64_t i = 0; i < T * C; ++i) x[i] += out[i];
  }
}

}  // namespace rwkv::detail
