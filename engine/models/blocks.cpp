#include "engine/models/blocks.h"

#include <algorithm>
#include <cstring>

namespace rwkv::detail {

// Σ x and Σ (x - mean)^2 in double, over eight independent lanes: a single running double sum
// is a chain of dependent adds (4 cycles each), which made the norms of a batched step a
// visible serial cost; the lanes cut the chain and still sum in double.
namespace {
constexpr int kNormLanes = 8;

double sum_lanes(const float* x, int64_t n) {
  double lane[kNormLanes] = {};
  int64_t i = 0;
  for (; i + kNormLanes <= n; i += kNormLanes) {
    for (int j = 0; j < kNormLanes; ++j) lane[j] += x[i + j];
  }
  for (; i < n; ++i) lane[0] += x[i];
  double s = 0.0;
  for (double v : lane) s += v;
  return s;
}

double sq_dev_lanes(const float* x, int64_t n, double mean) {
  double lane[kNormLanes] = {};
  int64_t i = 0;
  for (; i + kNormLanes <= n; i += kNormLanes) {
    for (int j = 0; j < kNormLanes; ++j) {
      const double d = x[i + j] - mean;
      lane[j] += d * d;
    }
  }
  for (; i < n; ++i) {
    const double d = x[i] - mean;
    lane[0] += d * d;
  }
  double s = 0.0;
  for (double v : lane) s += v;
  return s;
}
}  // namespace

void layer_norm(const float* x, float* y, int64_t n, Vec w, Vec b, float eps) {
  const double mean = sum_lanes(x, n) / (double)n;
  const double var = sq_dev_lanes(x, n, mean) / (double)n;
  const float inv = (float)(1.0 / std::sqrt(var + (double)eps));
  const float m = (float)mean;
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - m) * inv * w[i] + b[i];
}

void layer_norm_rows(const float* x, float* y, int64_t T, int64_t C, Vec w, Vec b) {
  if (T < 4) {
    for (int64_t t = 0; t < T; ++t) layer_norm(x + t * C, y + t * C, C, w, b);
    return;
  }
  kern::parallel_each(T, [&](int64_t t) { layer_norm(x + t * C, y + t * C, C, w, b); });
}

// The same statistics and affine map as a layer norm over the group; y[i] depends only on x[i]
// once the statistics are known, so in place is fine.
void group_norm_group(float* x, int64_t g, Vec w, Vec b, float eps) { layer_norm(x, x, g, w, b, eps); }

void group_norm(float* x, int64_t n, int64_t groups, Vec w, Vec b, float eps) {
  const int64_t g = n / groups;
  for (int64_t h = 0; h < groups; ++h) group_norm_group(x + h * g, g, w + h * g, b + h * g, eps);
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
  // A streamed matrix is read into the stream's buffer (held locked) right before its product.
  std::unique_lock<std::mutex> stream_lock;
  if (w.stream != nullptr) stream_lock = w.stream->begin();
  auto view = [&](const kern::MatView& v, const TensorRef* file, kern::MatView* out) {
    *out = v;
    if (file == nullptr) return true;
    Result<const uint8_t*> p = w.stream->load(*file);
    if (!p.ok()) {
      if (s.error.ok()) s.error = p.status();
      std::fill(y, y + T * w.rows(), 0.0f);
      return false;
    }
    out->data = p.value();
    return true;
  };
  kern::MatView m;
  if (!w.factored()) {
    if (!view(w.w, w.w_file, &m)) return;
    k.gemm(m, x, ldx, T, y, m.rows);
  } else {
    // y = b · (a · x): the rank-r intermediate lives in the scratch.
    const int64_t r = w.a.rows;
    float* mid = s.get_lowrank((size_t)(T * r));
    if (!view(w.a, w.a_file, &m)) return;
    k.gemm(m, x, ldx, T, mid, r);
    if (!view(w.b, w.b_file, &m)) return;
    k.gemm(m, mid, r, T, y, m.rows);
  }
  if (stream_lock.owns_lock()) stream_lock.unlock();
  if (s.probe != nullptr) probe_product(s, w.name, x, ldx, T, w.cols(), y, w.rows());
}

void ffn_active_set(const FfnSparse& sp, int64_t F, const float* scores, const float* logits,
                    std::vector<int32_t>& active, std::vector<uint8_t>& mark) {
  active.resize((size_t)F);
  if (sp.n_top >= F) {
    for (int64_t i = 0; i < F; ++i) active[(size_t)i] = (int32_t)i;
    return;
  }
  mark.assign((size_t)F, 0);
  if (scores != nullptr && sp.n_top > 0) {
    // The n_top best 1-bit scores (RWKV-Lite's quantile q = 1 - n_top / F), in any order.
    for (int64_t i = 0; i < F; ++i) active[(size_t)i] = (int32_t)i;
    std::nth_element(active.begin(), active.begin() + (sp.n_top - 1), active.end(),
                     [scores](int32_t a, int32_t b) { return scores[a] > scores[b]; });
    for (int64_t j = 0; j < sp.n_top; ++j) mark[(size_t)active[(size_t)j]] = 1;
  }
  if (logits != nullptr) {
    // sigmoid(z) > tau  <=>  z > logit(tau)
    for (int64_t i = 0; i < F; ++i) mark[(size_t)i] |= (uint8_t)(logits[i] > sp.logit_tau);
  }
  // Ascending order: the rows of W_k and W_v^T are then read front to back.
  size_t n = 0;
  for (int64_t i = 0; i < F; ++i) {
    if (mark[(size_t)i]) active[n++] = (int32_t)i;
  }
  active.resize(n);
}

// Tells the probe which rows of the layer's FFN tensors one row of the sparse channel mix read
// (rwkv-edge eval counts the weight bytes touched per token with it).
static void report_ffn_rows(const LayerWeights& lw, bool use_sign, bool use_mlp, bool direct, int64_t n_active,
                            int64_t F, Probe& p) {
  const FfnSparse& sp = lw.ffn_sparse;
  const std::string& key = lw.ffn_k.name;  // "blocks.N.ffn.key"
  const std::string ffn = key.substr(0, key.size() - 3);
  if (sp.sign.data != nullptr) p.on_rows_read(key + ".sign", use_sign ? F : 0, F);
  if (sp.w1.data != nullptr) {
    p.on_rows_read(ffn + "pred.w1", use_mlp ? sp.w1.rows : 0, sp.w1.rows);
    p.on_rows_read(ffn + "pred.w2", use_mlp ? F : 0, F);
  }
  if (lw.ffn_k.factored()) {
    p.on_rows_read(key + ".lr_a", lw.ffn_k.a.rows, lw.ffn_k.a.rows);
    p.on_rows_read(key + ".lr_b", F, F);
  } else {
    p.on_rows_read(key + ".weight", direct ? n_active : F, F);
  }
  p.on_rows_read(ffn + "value_t.weight", n_active, F);
}

Status channel_mix_sparse_kv(const Hparams& hp, const LayerWeights& lw, const float* xk, int64_t T, float* out,
                             Scratch& s) {
  const kern::Kernels& k = kern::kernels();
  const FfnSparse& sp = lw.ffn_sparse;
  const int64_t C = hp.n_embd, F = hp.n_ffn;
  // Predictors for all rows at once: 1-bit scores [T x F] and MLP logits [T x F].
  const bool use_sign = sp.sign.data != nullptr && sp.n_top > 0 && sp.n_top < F;
  const bool use_mlp = sp.w1.data != nullptr && sp.n_top < F;
  float* scores = use_sign ? s.get(0, (size_t)(T * F)) : nullptr;
  float* logits = use_mlp ? s.get(1, (size_t)(T * F)) : nullptr;
  if (use_sign) k.gemm(sp.sign, xk, C, T, scores, F);
  if (use_mlp) {
    const int64_t H = sp.w1.rows;
    float* hidden = s.get(2, (size_t)(T * H));
    k.gemm(sp.w1, xk, C, T, hidden, H);
    for (int64_t i = 0; i < T * H; ++i) hidden[i] = hidden[i] > 0.0f ? hidden[i] : 0.0f;
    k.gemm(sp.w2, hidden, H, T, logits, F);
  }
  // W_k rows through gemv_rows when the kernels read its type; otherwise (factored or a type
  // without sparse kernels) all keys are computed and the active ones picked.
  // Under a memory budget the cache reads W_k's rows exactly when they would be read directly.
  store::NeuronCache* cache = sp.cache;
  const bool direct = cache != nullptr ? cache->has_key()
                                       : !lw.ffn_k.factored() && kern::sparse_supports(lw.ffn_k.w.type);
  float* keys_all = nullptr;
  if (!direct) {
    keys_all = s.get(3, (size_t)(T * F));
    linear(lw.ffn_k, xk, T, keys_all, s);
  }
  float* h = s.get(4, (size_t)F);
  std::vector<int32_t> active;
  std::vector<uint8_t> mark;
  for (int64_t t = 0; t < T; ++t) {
    ffn_active_set(sp, F, use_sign ? scores + t * F : nullptr, use_mlp ? logits + t * F : nullptr, active, mark);
    const int64_t n = (int64_t)active.size();
    if (s.probe != nullptr) report_ffn_rows(lw, use_sign, use_mlp, direct, n, F, *s.probe);
    if (cache != nullptr) {
      // The same products over cached copies of the rows (engine/store/weight_store.h).
      float* o = out + t * C;
      std::fill(o, o + C, 0.0f);
      Status st = cache->run(active.data(), n, xk + t * C, keys_all != nullptr ? keys_all + t * F : nullptr, h, o);
      if (!st.ok()) return st;
      continue;
    }
    // h_j = relu(W_k[active_j] · xk)^2
    if (direct) {
      k.gemv_rows(lw.ffn_k.w, active.data(), n, xk + t * C, h);
    } else {
      for (int64_t j = 0; j < n; ++j) h[j] = keys_all[t * F + active[(size_t)j]];
    }
    for (int64_t j = 0; j < n; ++j) h[j] = h[j] > 0.0f ? h[j] * h[j] : 0.0f;
    // out_t = Σ_j h_j W_v[:, active_j] = Σ_j h_j W_v^T[active_j, :]
    float* o = out + t * C;
    std::fill(o, o + C, 0.0f);
    k.axpy_rows(sp.value_t, active.data(), h, n, o);
  }
  return Status::OK();
}

Status channel_mix(const Hparams& hp, const LayerWeights& lw, const Rows& rows, int64_t layer, const float* f,
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
  for (int64_t t = 0; t < T; ++t) {
    const int64_t o = t * C;
    if (v4_style) {
      // xk = f*mu + prev*(1-mu)
      for (int64_t c = 0; c < C; ++c) {
        const int64_t i = o + c;
        xk[i] = f[i] * lw.ffn_mix_k[c] + prev[i] * (1.0f - lw.ffn_mix_k[c]);
        xr[i] = f[i] * lw.ffn_mix_r[c] + prev[i] * (1.0f - lw.ffn_mix_r[c]);
      }
    } else {
      // xk = f + (prev - f) * mu
      for (int64_t c = 0; c < C; ++c) {
        const int64_t i = o + c;
        const float sx = prev[i] - f[i];
        xk[i] = f[i] + sx * lw.ffn_mix_k[c];
        if (gated) xr[i] = f[i] + sx * lw.ffn_mix_r[c];
      }
    }
  }
  float* out = xk;  // reuse: xk is no longer needed once the keys are computed
  if (lw.ffn_sparse.enabled) {
    out = s.get(5, (size_t)(T * C));
    Status st = channel_mix_sparse_kv(hp, lw, xk, T, out, s);
    if (!st.ok()) return st;
  } else {
    // k = relu(Wk xk)^2
    linear(lw.ffn_k, xk, T, hid, s);
    for (int64_t i = 0; i < T * F; ++i) {
      const float v = hid[i] > 0.0f ? hid[i] : 0.0f;
      hid[i] = v * v;
    }
    // out = Wv k
    linear(lw.ffn_v, hid, T, out, s);
  }
  // x += (sigma(Wr xr) *) out
  if (gated) {
    float* r = hid;  // reuse
    linear(lw.ffn_r, xr, T, r, s);
    // A row's C sigmoids cost about what a team hand-off does: share rows out in batches.
    const auto gate_row = [&](int64_t t) {
      for (int64_t i = t * C; i < (t + 1) * C; ++i) x[i] += sigmoidf(r[i]) * out[i];
    };
    if (T >= 4) {
      kern::parallel_each(T, gate_row);
    } else {
      for (int64_t t = 0; t < T; ++t) gate_row(t);
    }
  } else {
    for (int64_t i = 0; i < T * C; ++i) x[i] += out[i];
  }
  return Status::OK();
}

}  // namespace rwkv::detail
