#include "engine/compress/lowrank.h"

#include <fnmatch.h>

#include <Eigen/Dense>
#include <Eigen/SVD>
#include <algorithm>
#include <cmath>

#include "engine/compress/calib.h"

namespace rwkv::compress {

namespace {

using RowMatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

int64_t round_rank(int64_t r, int64_t multiple, int64_t cap) {
  if (multiple > 1) r = (r + multiple - 1) / multiple * multiple;
  return std::max<int64_t>(1, std::min(r, cap));
}

// "blocks.12.att.key" -> "att.key"; other names unchanged.
std::string layer_suffix(const std::string& base) {
  if (base.compare(0, 7, "blocks.") != 0) return base;
  const size_t dot = base.find('.', 7);
  return dot == std::string::npos ? base : base.substr(dot + 1);
}

// The dense tensor behind a base name: "<base>.weight", or the base itself (v7 "att.w1").
const TensorRef* dense_tensor(const ModelFile& mf, const std::string& base) {
  const TensorRef* t = mf.find(base + ".weight");
  return t != nullptr ? t : mf.find(base);
}

}  // namespace

const char* lowrank_method_name(LowRankMethod m) {
  switch (m) {
    case LowRankMethod::kNone: return "none";
    case LowRankMethod::kSvd: return "svd";
    case LowRankMethod::kAware: return "aware";
    case LowRankMethod::kAsvd: return "asvd";
  }
  return "?";
}

bool parse_lowrank_method(const std::string& s, LowRankMethod* out) {
  if (s == "none") *out = LowRankMethod::kNone;
  else if (s == "svd") *out = LowRankMethod::kSvd;
  else if (s == "aware") *out = LowRankMethod::kAware;
  else if (s == "asvd") *out = LowRankMethod::kAsvd;
  else return false;
  return true;
}

bool lowrank_needs_calibration(LowRankMethod m) { return m == LowRankMethod::kAware || m == LowRankMethod::kAsvd; }

std::vector<std::string> default_lowrank_targets(RwkvVersion v) {
  switch (v) {
    case RwkvVersion::kV4:
    case RwkvVersion::kV5_1: return {"att.receptance", "att.key", "att.value", "ffn.receptance"};
    case RwkvVersion::kV5_2:
    case RwkvVersion::kV6: return {"att.receptance", "att.key", "att.value", "att.gate", "ffn.receptance"};
    case RwkvVersion::kV7: return {"att.receptance", "att.key", "att.value"};
  }
  return {};
}

std::vector<std::string> lowrank_matrices(const ModelFile& mf, const LowRankOptions& opt) {
  const std::vector<std::string> targets =
      opt.targets.empty() ? default_lowrank_targets(mf.hparams.version) : opt.targets;
  std::vector<std::string> out;
  for (const TensorRef& t : mf.tensors) {
    if (t.n_dims != 2 || t.ne[0] < 2 || t.ne[1] < 2) continue;
    std::string base = t.name;
    const std::string suffix = ".weight";
    if (base.size() > suffix.size() && base.compare(base.size() - suffix.size(), suffix.size(), suffix) == 0) {
      base.resize(base.size() - suffix.size());
    }
    if (base == "emb") continue;  // a lookup table, not a projection
    const std::string ls = layer_suffix(base);
    for (const std::string& want : targets) {
      if (want == ls || want == base) {
        out.push_back(base);
        break;
      }
    }
  }
  return out;
}

int64_t planned_rank(const LowRankOptions& opt, const std::string& name, int64_t out, int64_t in) {
  const int64_t width = std::min(out, in);
  for (const RankOverride& o : opt.overrides) {
    if (fnmatch(o.pattern.c_str(), name.c_str(), 0) == 0) return o.rank <= 0 ? 0 : std::min(o.rank, width);
  }
  if (opt.energy > 0.0) return -1;
  const double f = opt.rank_factor > 0.0 ? opt.rank_factor : 1.0;
  return round_rank((int64_t)std::ceil((double)width / f), opt.rank_multiple, width);
}

GramProbe::GramProbe(const std::vector<std::string>& names) {
  for (const std::string& n : names) acc_[n];
}

void GramProbe::on_linear(const std::string& name, const float* x, int64_t T, int64_t in, const float* y,
                          int64_t out) {
  auto it = acc_.find(name);
  if (it == acc_.end()) return;
  Acc& a = it->second;
  if (a.g.empty()) {
    a.in = in;
    a.g.assign((size_t)(in * in), 0.0);
  }
  if (a.in != in) return;  // cannot happen for one model
  // One chunk's XᵀX in float (at most a few hundred rows), accumulated in double.
  Eigen::Map<const RowMatF> X(x, T, in);
  const Eigen::MatrixXf g = X.transpose() * X;
  Eigen::Map<RowMatD> G(a.g.data(), in, in);
  G += g.cast<double>();
  a.rows += T;
}

const std::vector<double>* GramProbe::gram(const std::string& name, int64_t* in, int64_t* rows) const {
  auto it = acc_.find(name);
  if (it == acc_.end() || it->second.g.empty()) return nullptr;
  if (in != nullptr) *in = it->second.in;
  if (rows != nullptr) *rows = it->second.rows;
  return &it->second.g;
}

Result<Factors> factorize(const float* w, int64_t out, int64_t in, LowRankMethod method, const double* gram,
                          int64_t rank, double energy, int64_t rank_multiple, double ridge, double asvd_alpha) {
  if (out < 1 || in < 1) return Status::InvalidArgument("factorize: empty matrix");
  if (method == LowRankMethod::kNone) return Status::InvalidArgument("factorize: method none");
  if (lowrank_needs_calibration(method) && gram == nullptr) {
    return Status::InvalidArgument("factorize: activation-aware factorisation needs calibration statistics");
  }
  if (rank <= 0 && !(energy > 0.0)) return Status::InvalidArgument("factorize: no rank and no energy given");
  const Eigen::MatrixXd W = Eigen::Map<const RowMatF>(w, out, in).cast<double>();
  Eigen::MatrixXd M;
  Eigen::MatrixXd L;
  if (method == LowRankMethod::kAware) {
    const Eigen::MatrixXd G = Eigen::Map<const RowMatD>(gram, in, in);
    double mean_diag = G.diagonal().mean();
    if (!(mean_diag > 0.0)) mean_diag = 1.0;
    // Cholesky of G + λ·mean(diag)·I; a singular G (few or degenerate inputs) gets more ridge.
    bool ok = false;
    double lam = std::max(ridge, 1e-12);
    for (int attempt = 0; attempt < 8 && !ok; ++attempt, lam *= 10.0) {
      Eigen::MatrixXd Gr = G;
      Gr.diagonal().array() += lam * mean_diag;
      Eigen::LLT<Eigen::MatrixXd> llt(Gr);
      if (llt.info() == Eigen::Success) {
        L = llt.matrixL();
        ok = true;
      }
    }
    if (!ok) return Status::InvalidArgument("factorize: the Gram matrix is not positive definite even with ridge");
    M = W * L;
  } else if (method == LowRankMethod::kAsvd) {
    // L = diag(s), s_j = (Σ x_j²)^(α/2) (rms up to a constant factor, which the SVD ignores);
    // inputs that never fired get the smallest positive scale rather than 0.
    const Eigen::VectorXd diag = Eigen::Map<const RowMatD>(gram, in, in).diagonal();
    Eigen::VectorXd sc(in);
    double smallest = INFINITY;
    for (int64_t j = 0; j < in; ++j) {
      sc(j) = diag(j) > 0.0 ? std::pow(diag(j), 0.5 * asvd_alpha) : 0.0;
      if (sc(j) > 0.0) smallest = std::min(smallest, sc(j));
    }
    if (!std::isfinite(smallest)) smallest = 1.0;
    for (int64_t j = 0; j < in; ++j) sc(j) = std::max(sc(j), smallest);
    L = sc.asDiagonal();
    M = W * L;
  } else {
    M = W;
  }
  Eigen::BDCSVD<Eigen::MatrixXd> svd(M, Eigen::ComputeThinU | Eigen::ComputeThinV);
  const Eigen::VectorXd S = svd.singularValues();
  const int64_t k = S.size();
  const double total = S.squaredNorm();
  int64_t r = rank;
  if (r <= 0) {
    double kept = 0.0;
    r = k;
    for (int64_t i = 0; i < k; ++i) {
      kept += S(i) * S(i);
      if (total <= 0.0 || kept >= energy * total) {
        r = i + 1;
        break;
      }
    }
    r = round_rank(r, rank_multiple, k);
  }
  r = std::min(r, k);
  Factors f;
  f.rank = r;
  f.energy_kept = total > 0.0 ? S.head(r).squaredNorm() / total : 1.0;
  const Eigen::VectorXd sq = S.head(r).cwiseSqrt();
  const Eigen::MatrixXd B = svd.matrixU().leftCols(r) * sq.asDiagonal();  // out x r
  Eigen::MatrixXd At = svd.matrixV().leftCols(r) * sq.asDiagonal();        // in x r
  if (lowrank_needs_calibration(method)) {
    // A = sqrt(S_r) V_rᵀ L⁻¹, i.e. Aᵀ = L⁻ᵀ V_r sqrt(S_r): one triangular solve (L is
    // lower triangular for aware, diagonal for asvd).
    At = L.transpose().triangularView<Eigen::Upper>().solve(At);
  }
  f.a.resize((size_t)(r * in));
  f.b.resize((size_t)(out * r));
  Eigen::Map<RowMatF>(f.a.data(), r, in) = At.transpose().cast<float>();
  Eigen::Map<RowMatF>(f.b.data(), out, r) = B.cast<float>();
  return f;
}

double relative_output_error(const float* w, const Factors& f, int64_t out, int64_t in, const double* gram) {
  const Eigen::MatrixXd W = Eigen::Map<const RowMatF>(w, out, in).cast<double>();
  const Eigen::MatrixXd A = Eigen::Map<const RowMatF>(f.a.data(), f.rank, in).cast<double>();
  const Eigen::MatrixXd B = Eigen::Map<const RowMatF>(f.b.data(), out, f.rank).cast<double>();
  const Eigen::MatrixXd D = W - B * A;
  double num, den;
  if (gram != nullptr) {
    const Eigen::MatrixXd G = Eigen::Map<const RowMatD>(gram, in, in);
    num = (D * G).cwiseProduct(D).sum();
    den = (W * G).cwiseProduct(W).sum();
  } else {
    num = D.squaredNorm();
    den = W.squaredNorm();
  }
  if (!(den > 0.0)) return num > 0.0 ? INFINITY : 0.0;
  return std::sqrt(std::max(0.0, num) / den);
}

Status apply_lowrank(ModelFile& mf, const LowRankOptions& opt, const GramProbe* calib, const GramProbe* heldout,
                     std::vector<LowRankReport>* report, const LowRankProgress& progress) {
  if (opt.method == LowRankMethod::kNone) return Status::OK();
  if (opt.factor_type != DType::kF32 && opt.factor_type != DType::kF16) {
    return Status::InvalidArgument(std::string("low-rank factors are stored as f32 or f16, not ") +
                                   dtype_name(opt.factor_type));
  }
  const std::vector<std::string> names = lowrank_matrices(mf, opt);
  auto buffers = std::make_shared<BufferStorage>();
  mf.storage.push_back(buffers);
  int64_t done = 0;
  for (const std::string& base : names) {
    const TensorRef* t = dense_tensor(mf, base);
    if (t == nullptr) continue;
    const std::string dense_name = t->name;
    const int64_t in = t->ne[0], out = t->ne[1];
    const size_t bytes_before = t->nbytes;
    const int64_t rank = planned_rank(opt, base, out, in);
    if (rank == 0) {
      if (progress) progress(base, ++done, (int64_t)names.size());
      continue;
    }
    const std::vector<float> w = matrix_f32(*t);
    const double* g = nullptr;
    if (calib != nullptr) {
      int64_t gin = 0;
      const std::vector<double>* gv = calib->gram(base, &gin);
      if (gv != nullptr && gin == in) g = gv->data();
    }
    if (lowrank_needs_calibration(opt.method) && g == nullptr) {
      return Status::InvalidArgument(base + ": no calibration statistics for this matrix (did the calibration run "
                                            "reach it?)");
    }
    Result<Factors> f =
        factorize(w.data(), out, in, opt.method, g, rank > 0 ? rank : 0, opt.energy, opt.rank_multiple, opt.ridge,
                  opt.asvd_alpha);
    if (!f.ok()) return Status::InvalidArgument(base + ": " + f.status().message());
    Result<TensorRef> a = make_matrix(base + ".lr_a", f->a.data(), f->rank, in, opt.factor_type, *buffers);
    if (!a.ok()) return a.status();
    Result<TensorRef> b = make_matrix(base + ".lr_b", f->b.data(), out, f->rank, opt.factor_type, *buffers);
    if (!b.ok()) return b.status();
    if (report != nullptr) {
      LowRankReport r;
      r.name = base;
      r.out = out;
      r.in = in;
      r.rank = f->rank;
      r.energy_kept = f->energy_kept;
      if (g != nullptr) r.calib_error = relative_output_error(w.data(), f.value(), out, in, g);
      if (heldout != nullptr) {
        int64_t hin = 0;
        const std::vector<double>* hv = heldout->gram(base, &hin);
        if (hv != nullptr && hin == in) r.heldout_error = relative_output_error(w.data(), f.value(), out, in, hv->data());
      }
      r.bytes_before = bytes_before;
      r.bytes_after = a->nbytes + b->nbytes;
      report->push_back(r);
    }
    replace_tensor(mf, dense_name, {a.value(), b.value()});
    if (progress) progress(base, ++done, (int64_t)names.size());
  }
  return Status::OK();
}

}  // namespace rwkv::compress
