#include "engine/compress/ffn_predictor.h"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>

#include "engine/common/dtype.h"
#include "engine/common/fp16.h"
#include "engine/compress/calib.h"

namespace rwkv::compress {

namespace {

using MatR = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapR = Eigen::Map<MatR>;
using CMapR = Eigen::Map<const MatR>;

// "blocks.N.ffn.key" -> N; -1 for any other name.
int64_t ffn_key_layer(const std::string& name) {
  const std::string pre = "blocks.", post = ".ffn.key";
  if (name.size() <= pre.size() + post.size() || name.compare(0, pre.size(), pre) != 0) return -1;
  if (name.compare(name.size() - post.size(), post.size(), post) != 0) return -1;
  const std::string num = name.substr(pre.size(), name.size() - pre.size() - post.size());
  if (num.empty() || num.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(num);
}

float round_f16(float v) { return fp16_to_fp32(fp32_to_fp16(v)); }

// k [n x F] = xk [n x C] · W_k^T.
MatR dense_keys(const float* wk, int64_t F, int64_t C, const float* xk, int64_t n) {
  CMapR W(wk, F, C);
  CMapR X(xk, n, C);
  return X * W.transpose();
}

// Rank of each neuron's 1-bit score within its row (0 = highest), n x F.
std::vector<uint16_t> score_ranks(const MatR& scores) {
  const int64_t n = scores.rows(), F = scores.cols();
  std::vector<uint16_t> rank((size_t)(n * F));
  std::vector<int32_t> idx((size_t)F);
  for (int64_t t = 0; t < n; ++t) {
    const float* s = scores.data() + t * F;
    std::iota(idx.begin(), idx.end(), 0);
    std::sort(idx.begin(), idx.end(), [s](int32_t a, int32_t b) { return s[a] > s[b]; });
    for (int64_t r = 0; r < F; ++r) rank[(size_t)(t * F + idx[(size_t)r])] = (uint16_t)r;
  }
  return rank;
}

// Recall and predicted size of "MLP mask ∪ top-k by 1-bit score" for every k at once: the
// truly active neurons the MLP misses, and the neurons it does not predict, are binned by their
// 1-bit rank, so a prefix sum gives the figures for any k.
struct Curve {
  int64_t n = 0, F = 0;
  double w_tot = 0, c_tot = 0, w_mlp = 0, c_mlp = 0, p_mlp = 0;
  std::vector<double> cw, cc, cp;  // prefix sums over rank, F + 1 entries

  Curve(const MatR& k, const std::vector<uint16_t>& rank, const MatR* mlp_logits, float logit_tau)
      : n(k.rows()), F(k.cols()), cw((size_t)F + 1), cc((size_t)F + 1), cp((size_t)F + 1) {
    std::vector<double> hw((size_t)F), hc((size_t)F), hp((size_t)F);
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t i = 0; i < F; ++i) {
        const float kv = k(t, i);
        const bool act = kv > 0.0f;
        const double w = act ? (double)kv * kv : 0.0;
        if (act) {
          w_tot += w;
          c_tot += 1;
        }
        if (mlp_logits != nullptr && (*mlp_logits)(t, i) > logit_tau) {
          p_mlp += 1;
          if (act) {
            w_mlp += w;
            c_mlp += 1;
          }
          continue;
        }
        const uint16_t r = rank[(size_t)(t * F + i)];
        hp[r] += 1;
        if (act) {
          hw[r] += w;
          hc[r] += 1;
        }
      }
    }
    for (int64_t r = 0; r < F; ++r) {
      cw[(size_t)r + 1] = cw[(size_t)r] + hw[(size_t)r];
      cc[(size_t)r + 1] = cc[(size_t)r] + hc[(size_t)r];
      cp[(size_t)r + 1] = cp[(size_t)r] + hp[(size_t)r];
    }
  }
  double recall_w(int64_t top) const { return w_tot > 0 ? (w_mlp + cw[(size_t)top]) / w_tot : 1.0; }
  double recall_c(int64_t top) const { return c_tot > 0 ? (c_mlp + cc[(size_t)top]) / c_tot : 1.0; }
  double active(int64_t top) const { return (p_mlp + cp[(size_t)top]) / ((double)n * (double)F); }
};

MatR mlp_logits(const FfnLayerPredictor& p, const float* xk, int64_t n) {
  CMapR X(xk, n, p.C);
  CMapR W1(p.w1.data(), p.H, p.C);
  CMapR W2(p.w2.data(), p.F, p.H);
  MatR h = (X * W1.transpose()).cwiseMax(0.0f);
  return h * W2.transpose();
}

std::string fmt(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

}  // namespace

FfnProbe::FfnProbe(int64_t n_layer, int64_t max_rows) : max_rows_(max_rows), samples_((size_t)n_layer) {}

void FfnProbe::on_linear(const std::string& name, const float* x, int64_t T, int64_t in, const float*, int64_t) {
  const int64_t l = ffn_key_layer(name);
  if (l < 0 || l >= (int64_t)samples_.size()) return;
  FfnLayerSamples& s = samples_[(size_t)l];
  s.C = in;
  const int64_t take = std::min(T, max_rows_ - s.n);
  if (take <= 0) return;
  s.xk.insert(s.xk.end(), x, x + take * in);
  s.n += take;
}

double train_ffn_mlp(const float* xk, const float* k, int64_t n, const FfnOptions& opt, FfnLayerPredictor* p) {
  const int64_t C = p->C, F = p->F, H = p->H;
  std::mt19937_64 rng(opt.seed);
  // PyTorch's default Linear initialisation: uniform in ±1/sqrt(fan_in).
  MatR W1(H, C), W2(F, H);
  {
    std::uniform_real_distribution<float> u1(-1.0f / std::sqrt((float)C), 1.0f / std::sqrt((float)C));
    std::uniform_real_distribution<float> u2(-1.0f / std::sqrt((float)H), 1.0f / std::sqrt((float)H));
    for (int64_t i = 0; i < W1.size(); ++i) W1.data()[i] = u1(rng);
    for (int64_t i = 0; i < W2.size(); ++i) W2.data()[i] = u2(rng);
  }
  // Positive weight #neg / #pos, as the paper's BCEWithLogitsLoss(pos_weight=...).
  double pos = 0;
  for (int64_t i = 0; i < n * F; ++i) pos += k[i] > 0.0f;
  const double neg = (double)(n * F) - pos;
  const float pw = pos > 0 ? (float)(neg / pos) : 1.0f;

  MatR m1 = MatR::Zero(H, C), v1 = MatR::Zero(H, C), m2 = MatR::Zero(F, H), v2 = MatR::Zero(F, H);
  const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, lr = (float)opt.lr;
  int64_t step = 0;
  const int64_t B = std::max<int64_t>(1, std::min<int64_t>(opt.batch, n));
  std::vector<int64_t> order((size_t)n);
  std::iota(order.begin(), order.end(), 0);
  MatR Xb(B, C), Yb(B, F);
  double last_loss = 0;
  for (int epoch = 0; epoch < std::max(1, opt.epochs); ++epoch) {
    std::shuffle(order.begin(), order.end(), rng);
    double loss_sum = 0;
    int64_t loss_n = 0;
    for (int64_t start = 0; start < n; start += B) {
      const int64_t b = std::min(B, n - start);
      if (Xb.rows() != b) {
        Xb.resize(b, C);
        Yb.resize(b, F);
      }
      for (int64_t j = 0; j < b; ++j) {
        const int64_t r = order[(size_t)(start + j)];
        std::memcpy(Xb.row(j).data(), xk + r * C, (size_t)C * sizeof(float));
        for (int64_t i = 0; i < F; ++i) Yb(j, i) = k[r * F + i] > 0.0f ? 1.0f : 0.0f;
      }
      MatR A = Xb * W1.transpose();  // b x H
      MatR Hh = A.cwiseMax(0.0f);
      MatR Z = Hh * W2.transpose();  // b x F
      // Weighted BCE with logits, mean over elements: y: -pw·log σ(z); else -log(1 - σ(z)).
      // dL/dz = σ(z)(pw·y + 1 - y) - pw·y.
      const float inv = 1.0f / (float)(b * F);
      double loss = 0;
      for (int64_t i = 0; i < Z.size(); ++i) {
        const float z = Z.data()[i], y = Yb.data()[i];
        const float sp_pos = z > 0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z));  // softplus(z)
        const float sp_neg = sp_pos - z;                                                         // softplus(-z)
        loss += y > 0 ? pw * sp_neg : sp_pos;
        const float s = 1.0f / (1.0f + std::exp(-z));
        Z.data()[i] = (s * (pw * y + 1.0f - y) - pw * y) * inv;
      }
      loss_sum += loss;
      loss_n += b * F;
      MatR g2 = Z.transpose() * Hh;  // F x H
      MatR dA = Z * W2;              // b x H
      for (int64_t i = 0; i < dA.size(); ++i) {
        if (A.data()[i] <= 0.0f) dA.data()[i] = 0.0f;
      }
      MatR g1 = dA.transpose() * Xb;  // H x C
      ++step;
      const float c1 = 1.0f - std::pow(b1, (float)step), c2 = 1.0f - std::pow(b2, (float)step);
      auto adam = [&](MatR& w, MatR& m, MatR& v, const MatR& g) {
        m = b1 * m + (1.0f - b1) * g;
        v = b2 * v + (1.0f - b2) * g.cwiseProduct(g);
        w.array() -= lr * (m.array() / c1) / ((v.array() / c2).sqrt() + eps);
      };
      adam(W1, m1, v1, g1);
      adam(W2, m2, v2, g2);
    }
    last_loss = loss_n > 0 ? loss_sum / (double)loss_n : 0;
  }
  // Stored as f16: evaluate what the engine will run.
  p->w1.assign(W1.data(), W1.data() + W1.size());
  p->w2.assign(W2.data(), W2.data() + W2.size());
  for (float& v : p->w1) v = round_f16(v);
  for (float& v : p->w2) v = round_f16(v);
  return last_loss;
}

std::vector<uint8_t> predict_ffn_active(const FfnLayerPredictor& p, const float* xk, int64_t n) {
  const int64_t F = p.F;
  std::vector<uint8_t> mask((size_t)(n * F), 0);
  if (p.n_top >= F) {
    std::fill(mask.begin(), mask.end(), 1);
    return mask;
  }
  if (p.n_top > 0) {
    CMapR X(xk, n, p.C);
    CMapR S(p.sign.data(), F, p.C);
    MatR scores = X * S.transpose();
    std::vector<int32_t> idx((size_t)F);
    for (int64_t t = 0; t < n; ++t) {
      const float* s = scores.data() + t * F;
      std::iota(idx.begin(), idx.end(), 0);
      std::nth_element(idx.begin(), idx.begin() + (p.n_top - 1), idx.end(),
                       [s](int32_t a, int32_t b) { return s[a] > s[b]; });
      for (int64_t j = 0; j < p.n_top; ++j) mask[(size_t)(t * F + idx[(size_t)j])] = 1;
    }
  }
  if (p.use_mlp) {
    MatR z = mlp_logits(p, xk, n);
    for (int64_t i = 0; i < n * F; ++i) {
      if (z.data()[i] > p.logit_tau) mask[(size_t)i] = 1;
    }
  }
  return mask;
}

FfnScore score_ffn_mask(const uint8_t* mask, const float* k, int64_t n, int64_t F) {
  FfnScore s;
  s.rows = n;
  double act = 0, pred = 0, hit = 0, w_tot = 0, w_hit = 0;
  for (int64_t i = 0; i < n * F; ++i) {
    pred += mask[i];
    if (k[i] > 0.0f) {
      const double w = (double)k[i] * k[i];
      act += 1;
      w_tot += w;
      if (mask[i]) {
        hit += 1;
        w_hit += w;
      }
    }
  }
  const double total = (double)n * (double)F;
  s.true_sparsity = total > 0 ? 1.0 - act / total : 0;
  s.pred_sparsity = total > 0 ? 1.0 - pred / total : 0;
  s.recall = act > 0 ? hit / act : 1.0;
  s.weighted_recall = w_tot > 0 ? w_hit / w_tot : 1.0;
  return s;
}

Status fit_ffn_layer(const float* wk, int64_t F, const FfnLayerSamples& s, int64_t layer, const FfnOptions& opt,
                     size_t row_bytes_kv, FfnLayerPredictor* out, FfnLayerReport* report) {
  const int64_t C = s.C;
  if (s.n < 2 || C <= 0) {
    return Status::InvalidArgument("FFN predictor, layer " + std::to_string(layer) + ": " + std::to_string(s.n) +
                                   " calibration rows (need at least 2)");
  }
  if (F > 65535) return Status::Unsupported("FFN predictor: more than 65535 neurons per layer");
  const int64_t n_held = std::min<int64_t>(s.n - 1, std::max<int64_t>(0, (int64_t)std::llround((double)s.n * opt.heldout_fraction)));
  const int64_t n_train = s.n - n_held;
  const float* x_train = s.xk.data();
  const float* x_held = s.xk.data() + n_train * C;

  FfnLayerPredictor p;
  p.C = C;
  p.F = F;
  p.H = opt.hidden;
  p.wk.assign(wk, wk + F * C);
  // The 1-bit copy: the i1r row the file will hold, read back.
  p.sign.resize((size_t)(F * C));
  {
    std::vector<uint8_t> row(dtype_row_bytes(DType::kI1R, C));
    for (int64_t i = 0; i < F; ++i) {
      quantize_row_i1r(wk + i * C, row.data(), C);
      dequantize_row(DType::kI1R, row.data(), p.sign.data() + i * C, C);
    }
  }
  const MatR k_train = dense_keys(wk, F, C, x_train, n_train);
  const MatR k_held = dense_keys(wk, F, C, x_held, n_held);

  // Fixed quantile for this layer, if any.
  double fixed_q = -1;
  if (!opt.q.empty()) fixed_q = opt.q.size() == 1 ? opt.q[0] : opt.q[(size_t)std::min<int64_t>(layer, (int64_t)opt.q.size() - 1)];
  const bool force_sparse = fixed_q >= 0;
  const int64_t fixed_top = fixed_q >= 0 ? F - (int64_t)std::llround(fixed_q * (double)F) : -1;

  const size_t sign_bytes = (size_t)F * dtype_row_bytes(DType::kI1R, C);
  const size_t mlp_bytes = 2 * (size_t)(p.H * C + F * p.H);
  const size_t dense_bytes = (size_t)F * row_bytes_kv;

  // Candidate thresholds; 0 stands for "no MLP".
  std::vector<double> taus;
  const bool want_mlp = opt.mlp && p.H > 0 && fixed_top != F;
  if (want_mlp) {
    if (opt.mlp_threshold > 0) {
      taus.push_back(opt.mlp_threshold);
    } else {
      taus = {0.5, 0.6, 0.7, 0.8, 0.9, 0.95};
    }
  }
  if (!want_mlp || opt.mlp_threshold <= 0) taus.push_back(0.0);

  double loss = 0;
  MatR z_train;
  if (want_mlp) {
    MatR k_copy = k_train;  // contiguous n_train x F
    loss = train_ffn_mlp(x_train, k_copy.data(), n_train, opt, &p);
    z_train = mlp_logits(p, x_train, n_train);
  }
  const MatR scores = CMapR(x_train, n_train, C) * CMapR(p.sign.data(), F, C).transpose();
  const std::vector<uint16_t> rank = score_ranks(scores);

  // Cheapest (top, τ) reaching the recall target on the training rows.
  double best_cost = -1, best_tau = 0, best_recall = -1;
  int64_t best_top = F;
  for (double tau : taus) {
    const float lt = tau > 0 ? (float)std::log(tau / (1.0 - tau)) : 0.0f;
    Curve cv(k_train, rank, tau > 0 ? &z_train : nullptr, lt);
    int64_t top = fixed_top;
    if (top < 0) {
      top = F;
      for (int64_t t = 0; t <= F; ++t) {
        const double r = opt.weighted_recall ? cv.recall_w(t) : cv.recall_c(t);
        if (r >= opt.recall) {
          top = t;
          break;
        }
      }
    }
    const double r = opt.weighted_recall ? cv.recall_w(top) : cv.recall_c(top);
    const double cost = (top > 0 && top < F ? (double)sign_bytes : 0.0) + (tau > 0 ? (double)mlp_bytes : 0.0) +
                        cv.active(top) * (double)dense_bytes;
    const bool meets = fixed_top < 0 || r >= opt.recall;
    const bool best_meets = fixed_top < 0 || best_recall >= opt.recall;
    bool better;
    if (best_cost < 0) {
      better = true;
    } else if (meets != best_meets) {
      better = meets;
    } else if (meets) {
      better = cost < best_cost;
    } else {
      better = r > best_recall;
    }
    if (better) {
      best_cost = cost;
      best_tau = tau;
      best_top = top;
      best_recall = r;
    }
  }
  p.n_top = best_top;
  p.use_mlp = best_tau > 0;
  p.logit_tau = p.use_mlp ? (float)std::log(best_tau / (1.0 - best_tau)) : 0.0f;
  if (!p.use_mlp) {
    p.w1.clear();
    p.w2.clear();
  }

  FfnLayerReport rep;
  rep.layer = layer;
  rep.q = 1.0 - (double)p.n_top / (double)F;
  rep.mlp_threshold = best_tau;
  rep.mlp_loss = loss;
  rep.dense_bytes = dense_bytes;
  {
    std::vector<uint8_t> m = predict_ffn_active(p, x_train, n_train);
    rep.calib = score_ffn_mask(m.data(), k_train.data(), n_train, F);
  }
  if (n_held > 0) {
    std::vector<uint8_t> m = predict_ffn_active(p, x_held, n_held);
    rep.heldout = score_ffn_mask(m.data(), k_held.data(), n_held, F);
  } else {
    rep.heldout = rep.calib;
  }
  const double active = 1.0 - rep.heldout.pred_sparsity;
  rep.sparse_bytes = (size_t)((p.n_top > 0 && p.n_top < F ? (double)sign_bytes : 0.0) +
                              (p.use_mlp ? (double)mlp_bytes : 0.0) + active * (double)dense_bytes);
  rep.sparse = force_sparse || rep.sparse_bytes < dense_bytes;
  *out = std::move(p);
  *report = rep;
  return Status::OK();
}

namespace {

std::shared_ptr<BufferStorage> new_storage(ModelFile& mf) {
  auto b = std::make_shared<BufferStorage>();
  mf.storage.push_back(b);
  return b;
}


}  // namespace

Status compress_ffn(ModelFile& mf, const std::vector<FfnLayerSamples>& samples, const FfnOptions& opt,
                    const FfnProgress& progress, std::vector<FfnLayerReport>* report) {
  const Hparams& hp = mf.hparams;
  const int64_t L = hp.n_layer, C = hp.n_embd, F = hp.n_ffn;
  if (!(opt.recall > 0 && opt.recall <= 1)) return Status::InvalidArgument("--ffn-recall must be in (0, 1]");
  for (double q : opt.q) {
    if (!(q >= 0 && q <= 1)) return Status::InvalidArgument("--ffn-q values must be in [0, 1], got " + fmt(q));
  }
  if (opt.q.size() > 1 && (int64_t)opt.q.size() != L) {
    return Status::InvalidArgument("--ffn-q has " + std::to_string(opt.q.size()) + " values for " + std::to_string(L) +
                                   " layers (give one value or one per layer)");
  }
  if (opt.mlp_threshold >= 1) return Status::InvalidArgument("--ffn-mlp-threshold must be in (0, 1)");
  if ((int64_t)samples.size() < L) return Status::InvalidArgument("FFN predictor: calibration rows missing for some layers");

  ModelFile out = mf;  // shares the storage; `mf` changes only on success
  std::shared_ptr<BufferStorage> buf = new_storage(out);
  std::vector<std::string> drop;
  std::vector<FfnLayerReport> reps;
  for (int64_t l = 0; l < L; ++l) {
    if (!opt.layers.empty() && std::find(opt.layers.begin(), opt.layers.end(), l) == opt.layers.end()) continue;
    const std::string p = "blocks." + std::to_string(l) + ".ffn.";
    const TensorRef* wk_ptr = out.find(p + "key.weight");
    const TensorRef* wv_ptr = out.find(p + "value.weight");
    if (wk_ptr == nullptr || wv_ptr == nullptr) {
      return Status::Unsupported(mf.path + ": layer " + std::to_string(l) +
                                 ": the FFN predictor needs dense ffn.key.weight and ffn.value.weight (low-rank "
                                 "factored or already sparse channel mixes are not supported)");
    }
    if (samples[(size_t)l].C != C) {
      return Status::InvalidArgument("FFN predictor, layer " + std::to_string(l) + ": no calibration rows of width " +
                                     std::to_string(C));
    }
    // Copies: out.add_tensor() below may reallocate the tensor list these pointers point into.
    const TensorRef wk_ref = *wk_ptr, wv_ref = *wv_ptr;
    const TensorRef* wk = &wk_ref;
    const TensorRef* wv = &wv_ref;
    if (progress) progress(l, L, "layer " + std::to_string(l) + ": training the predictor");
    const std::vector<float> k_f32 = matrix_f32(*wk);
    // W_v^T keeps its type where the sparse kernels read it (f32, f16, i8r); others become f16.
    const DType vt_type =
        (wv->type == DType::kF32 || wv->type == DType::kF16 || wv->type == DType::kI8R) ? wv->type : DType::kF16;
    const size_t row_bytes_kv = dtype_row_bytes(wk->type, C) + dtype_row_bytes(vt_type, C);
    FfnLayerPredictor pred;
    FfnLayerReport rep;
    Status st = fit_ffn_layer(k_f32.data(), F, samples[(size_t)l], l, opt, row_bytes_kv, &pred, &rep);
    if (!st.ok()) return st;
    reps.push_back(rep);
    if (!rep.sparse) continue;

    if (pred.n_top > 0 && pred.n_top < F) {
      Result<TensorRef> t = make_matrix(p + "key.sign", k_f32.data(), F, C, DType::kI1R, *buf);
      if (!t.ok()) return t.status();
      out.add_tensor(std::move(t.value()));
    }
    if (pred.use_mlp) {
      Result<TensorRef> t1 = make_matrix(p + "pred.w1", pred.w1.data(), pred.H, C, DType::kF16, *buf);
      if (!t1.ok()) return t1.status();
      out.add_tensor(std::move(t1.value()));
      Result<TensorRef> t2 = make_matrix(p + "pred.w2", pred.w2.data(), F, pred.H, DType::kF16, *buf);
      if (!t2.ok()) return t2.status();
      out.add_tensor(std::move(t2.value()));
    }
    {
      // W_v [C x F] -> W_v^T [F x C]: row i is neuron i's output column.
      const std::vector<float> v = matrix_f32(*wv);
      std::vector<float> vt((size_t)(F * C));
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t i = 0; i < F; ++i) vt[(size_t)(i * C + c)] = v[(size_t)(c * F + i)];
      }
      Result<TensorRef> t = make_matrix(p + "value_t.weight", vt.data(), F, C, vt_type, *buf);
      if (!t.ok()) return t.status();
      out.add_tensor(std::move(t.value()));
      drop.push_back(p + "value.weight");
    }
    const std::string m = "rwkv_edge.ffn." + std::to_string(l) + ".";
    out.metadata[m + "q"] = fmt(rep.q);
    out.metadata[m + "mlp_threshold"] = fmt(rep.mlp_threshold);
    out.metadata[m + "active"] = fmt(1.0 - rep.heldout.pred_sparsity);
  }
  if (!drop.empty()) {
    out.tensors.erase(std::remove_if(out.tensors.begin(), out.tensors.end(),
                                     [&](const TensorRef& t) {
                                       return std::find(drop.begin(), drop.end(), t.name) != drop.end();
                                     }),
                      out.tensors.end());
    out.reindex();
  }
  std::string q_list;
  for (double q : opt.q) q_list += (q_list.empty() ? "" : ",") + fmt(q);
  out.metadata["rwkv_edge.compress.ffn.recall"] = fmt(opt.recall);
  out.metadata["rwkv_edge.compress.ffn.weighted_recall"] = opt.weighted_recall ? "true" : "false";
  out.metadata["rwkv_edge.compress.ffn.q"] = q_list.empty() ? "auto" : q_list;
  out.metadata["rwkv_edge.compress.ffn.mlp_threshold"] = opt.mlp_threshold > 0 ? fmt(opt.mlp_threshold) : "auto";
  out.metadata["rwkv_edge.compress.ffn.mlp"] = opt.mlp ? "true" : "false";
  out.metadata["rwkv_edge.compress.ffn.hidden"] = std::to_string(opt.hidden);
  out.metadata["rwkv_edge.compress.ffn.epochs"] = std::to_string(opt.epochs);
  out.metadata["rwkv_edge.compress.ffn.rows"] = std::to_string(samples.empty() ? 0 : samples[0].n);
  out.metadata["rwkv_edge.compress.ffn.heldout_fraction"] = fmt(opt.heldout_fraction);
  if (progress) progress(L, L, "done");
  mf = std::move(out);
  if (report != nullptr) *report = std::move(reps);
  return Status::OK();
}

std::string format_ffn_report(const std::vector<FfnLayerReport>& report) {
  std::ostringstream os;
  char line[512];
  std::snprintf(line, sizeof(line), "%5s %6s %6s %5s | %-30s | %-30s | %9s %9s\n", "layer", "sparse", "q", "tau",
                "calib: true/pred sp, rec, w-rec", "held-out: true/pred sp, rec, w-rec", "dense KB", "sparse KB");
  os << line;
  for (const FfnLayerReport& r : report) {
    std::snprintf(line, sizeof(line),
                  "%5lld %6s %6.3f %5.2f | %.3f %.3f %.4f %.4f        | %.3f %.3f %.4f %.4f        | %9.1f %9.1f\n",
                  (long long)r.layer, r.sparse ? "yes" : "no", r.q, r.mlp_threshold, r.calib.true_sparsity,
                  r.calib.pred_sparsity, r.calib.recall, r.calib.weighted_recall, r.heldout.true_sparsity,
                  r.heldout.pred_sparsity, r.heldout.recall, r.heldout.weighted_recall, r.dense_bytes / 1024.0,
                  (r.sparse ? r.sparse_bytes : r.dense_bytes) / 1024.0);
    os << line;
  }
  return os.str();
}

Status parse_ffn_q_list(const std::string& s, std::vector<double>* out) {
  out->clear();
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    if (item.empty() || end == item.c_str() || *end != '\0' || !(v >= 0 && v <= 1)) {
      return Status::InvalidArgument("--ffn-q: '" + item + "' is not a quantile in [0, 1]");
    }
    out->push_back(v);
  }
  if (out->empty()) return Status::InvalidArgument("--ffn-q: no values");
  return Status::OK();
}

}  // namespace rwkv::compress
