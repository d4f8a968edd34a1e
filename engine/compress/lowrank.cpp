#include "engine/compress/lowrank.h"

#include <fnmatch.h>

#include <Eigen/Dense>
#include <Eigen/SVD>
#include <algorithm>
#include <cmath>
#include <queue>

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
    case LowRankMethod::kFisher: return "fisher";
  }
  return "?";
}

bool parse_lowrank_method(const std::string& s, LowRankMethod* out) {
  if (s == "none") *out = LowRankMethod::kNone;
  else if (s == "svd") *out = LowRankMethod::kSvd;
  else if (s == "aware") *out = LowRankMethod::kAware;
  else if (s == "asvd") *out = LowRankMethod::kAsvd;
  else if (s == "fisher") *out = LowRankMethod::kFisher;
  else return false;
  return true;
}

bool lowrank_needs_calibration(LowRankMethod m) {
  return m == LowRankMethod::kAware || m == LowRankMethod::kAsvd || m == LowRankMethod::kFisher;
}

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

namespace {

// The first override whose glob matches `name`, or null.
const RankOverride* find_override(const LowRankOptions& opt, const std::string& name) {
  for (const RankOverride& o : opt.overrides) {
    if (fnmatch(o.pattern.c_str(), name.c_str(), 0) == 0) return &o;
  }
  return nullptr;
}

}  // namespace

int64_t planned_rank(const LowRankOptions& opt, const std::string& name, int64_t out, int64_t in) {
  const int64_t width = std::min(out, in);
  if (const RankOverride* o = find_override(opt, name)) return o->rank <= 0 ? 0 : std::min(o->rank, width);
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

namespace {

// The lower Cholesky factor of G + λ·mean(diag G)·I (n x n, row-major); a singular G (few or
// degenerate inputs) gets ten times more ridge, up to 8 times.
Result<Eigen::MatrixXd> ridge_cholesky(const double* gram, int64_t n, double ridge) {
  const Eigen::MatrixXd G = Eigen::Map<const RowMatD>(gram, n, n);
  double mean_diag = G.diagonal().mean();
  if (!(mean_diag > 0.0)) mean_diag = 1.0;
  double lam = std::max(ridge, 1e-12);
  for (int attempt = 0; attempt < 8; ++attempt, lam *= 10.0) {
    Eigen::MatrixXd Gr = G;
    Gr.diagonal().array() += lam * mean_diag;
    Eigen::LLT<Eigen::MatrixXd> llt(Gr);
    if (llt.info() == Eigen::Success) return Eigen::MatrixXd(llt.matrixL());
  }
  return Status::InvalidArgument("factorize: the Gram matrix is not positive definite even with ridge");
}

// The matrix `method` truncates: M = W (svd), W·L with G + ridge = L Lᵀ (aware), W·diag(s)
// (asvd) or Loᵀ·W·L (fisher, G_out + ridge = Lo Loᵀ); *L gets the input weighting, *Lo the
// output one (left empty when unused).
Result<Eigen::MatrixXd> weighted_matrix(const float* w, int64_t out, int64_t in, LowRankMethod method,
                                        const double* gram, double ridge, double asvd_alpha, const double* out_gram,
                                        Eigen::MatrixXd* L, Eigen::MatrixXd* Lo) {
  if (out < 1 || in < 1) return Status::InvalidArgument("factorize: empty matrix");
  if (method == LowRankMethod::kNone) return Status::InvalidArgument("factorize: method none");
  if (lowrank_needs_calibration(method) && gram == nullptr) {
    return Status::InvalidArgument("factorize: activation-aware factorisation needs calibration statistics");
  }
  if (method == LowRankMethod::kFisher && out_gram == nullptr) {
    return Status::InvalidArgument("factorize: the fisher method needs output-gradient statistics");
  }
  const Eigen::MatrixXd W = Eigen::Map<const RowMatF>(w, out, in).cast<double>();
  if (method == LowRankMethod::kAware || method == LowRankMethod::kFisher) {
    Result<Eigen::MatrixXd> li = ridge_cholesky(gram, in, ridge);
    if (!li.ok()) return li.status();
    *L = std::move(li.value());
    if (method == LowRankMethod::kAware) return Eigen::MatrixXd(W * *L);
    Result<Eigen::MatrixXd> lo = ridge_cholesky(out_gram, out, ridge);
    if (!lo.ok()) return lo.status();
    *Lo = std::move(lo.value());
    return Eigen::MatrixXd(Lo->transpose() * W * *L);
  }
  if (method == LowRankMethod::kAsvd) {
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
    *L = sc.asDiagonal();
    return Eigen::MatrixXd(W * *L);
  }
  return W;
}

}  // namespace

Result<std::vector<double>> singular_values(const float* w, int64_t out, int64_t in, LowRankMethod method,
                                            const double* gram, double ridge, double asvd_alpha,
                                            const double* out_gram) {
  Eigen::MatrixXd L, Lo;
  Result<Eigen::MatrixXd> M = weighted_matrix(w, out, in, method, gram, ridge, asvd_alpha, out_gram, &L, &Lo);
  if (!M.ok()) return M.status();
  Eigen::BDCSVD<Eigen::MatrixXd> svd(M.value());
  const Eigen::VectorXd S = svd.singularValues();
  return std::vector<double>(S.data(), S.data() + S.size());
}

Result<std::vector<int64_t>> allocate_ranks(const std::vector<Spectrum>& spectra, int64_t budget, int64_t multiple) {
  multiple = std::max<int64_t>(1, multiple);
  const size_t n = spectra.size();
  std::vector<int64_t> rank(n, 0), cap(n, 0);
  std::vector<double> total(n, 0.0);
  int64_t used = 0;
  for (size_t i = 0; i < n; ++i) {
    const Spectrum& sp = spectra[i];
    cap[i] = std::min<int64_t>({sp.out, sp.in, (int64_t)sp.s.size()});
    if (cap[i] < 1) return Status::InvalidArgument("allocate_ranks: a matrix without singular values");
    for (double v : sp.s) total[i] += v * v;
    rank[i] = std::min(multiple, cap[i]);
    used += rank[i] * (sp.out + sp.in);
  }
  if (used > budget) {
    return Status::InvalidArgument("the budget of " + std::to_string(budget) + " factor elements is below the " +
                                   std::to_string(used) + " that rank " + std::to_string(multiple) +
                                   " for every matrix needs");
  }
  // The gain of matrix i's next step per factor element; -1 when it cannot grow.
  auto step_gain = [&](size_t i, int64_t* step) {
    const Spectrum& sp = spectra[i];
    *step = std::min(multiple, cap[i] - rank[i]);
    if (*step <= 0) return -1.0;
    double e = 0.0;
    for (int64_t j = rank[i]; j < rank[i] + *step; ++j) e += sp.s[(size_t)j] * sp.s[(size_t)j];
    const double rel = total[i] > 0.0 ? e / total[i] : 0.0;
    return rel / (double)(*step * (sp.out + sp.in));
  };
  using Item = std::pair<double, size_t>;
  std::priority_queue<Item> queue;
  for (size_t i = 0; i < n; ++i) {
    int64_t step = 0;
    const double g = step_gain(i, &step);
    if (g >= 0.0) queue.push({g, i});
  }
  while (!queue.empty()) {
    const size_t i = queue.top().second;
    queue.pop();
    int64_t step = 0;
    if (step_gain(i, &step) < 0.0) continue;
    const int64_t cost = step * (spectra[i].out + spectra[i].in);
    if (used + cost > budget) continue;  // a smaller (capped) step elsewhere may still fit
    rank[i] += step;
    used += cost;
    const double g = step_gain(i, &step);
    if (g >= 0.0) queue.push({g, i});
  }
  return rank;
}

Result<Factors> factorize(const float* w, int64_t out, int64_t in, LowRankMethod method, const double* gram,
                          int64_t rank, double energy, int64_t rank_multiple, double ridge, double asvd_alpha,
                          const double* out_gram) {
  if (rank <= 0 && !(energy > 0.0)) return Status::InvalidArgument("factorize: no rank and no energy given");
  Eigen::MatrixXd L, Lo;
  Result<Eigen::MatrixXd> weighted =
      weighted_matrix(w, out, in, method, gram, ridge, asvd_alpha, out_gram, &L, &Lo);
  if (!weighted.ok()) return weighted.status();
  const Eigen::MatrixXd& M = weighted.value();
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
  Eigen::MatrixXd B = svd.matrixU().leftCols(r) * sq.asDiagonal();  // out x r
  if (method == LowRankMethod::kFisher) {
    // B = Lo⁻ᵀ U_r sqrt(S_r): Loᵀ is upper triangular.
    B = Lo.transpose().triangularView<Eigen::Upper>().solve(B);
  }
  Eigen::MatrixXd At = svd.matrixV().leftCols(r) * sq.asDiagonal();        // in x r
  if (lowrank_needs_calibration(method)) {
    // A = sqrt(S_r) V_rᵀ L⁻¹, i.e. Aᵀ = L⁻ᵀ V_r sqrt(S_r): one triangular solve (L is
    // lower triangular for aware and fisher, diagonal for asvd).
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

Status check_lowrank_options(const LowRankOptions& opt) {
  if (opt.factor_type != DType::kF32 && opt.factor_type != DType::kF16) {
    return Status::InvalidArgument(std::string("low-rank factors are stored as f32 or f16, not ") +
                                   dtype_name(opt.factor_type));
  }
  if (opt.allocate && opt.energy > 0.0) {
    return Status::InvalidArgument("low-rank: rank allocation by spectrum and --energy exclude each other");
  }
  if (opt.method == LowRankMethod::kFisher && opt.grad_stats == nullptr) {
    return Status::InvalidArgument("low-rank fisher needs output-gradient statistics (--grad-stats FILE, written by "
                                   "scripts/train/grad_stats.py)");
  }
  return Status::OK();
}

Status apply_lowrank(ModelFile& mf, const LowRankOptions& opt, const GramProbe* calib, const GramProbe* heldout,
                     std::vector<LowRankReport>* report, const LowRankProgress& progress) {
  if (opt.method == LowRankMethod::kNone) return Status::OK();
  if (Status st = check_lowrank_options(opt); !st.ok()) return st;
  const std::vector<std::string> names = lowrank_matrices(mf, opt);
  // What one factorisation of `t` (base name `base`) needs: its weights in f32, the calibration
  // Gram matrix (required by the activation-aware methods) and, for kFisher, G_out, checked
  // against the matrix (width and Σ W², so statistics of another model are refused).
  struct Inputs {
    std::vector<float> w;
    const double* gram = nullptr;
    const double* out_gram = nullptr;
  };
  auto inputs_of = [&](const std::string& base, const TensorRef& t, Inputs* x) -> Status {
    const int64_t in = t.ne[0], out = t.ne[1];
    x->w = matrix_f32(t);
    if (calib != nullptr) {
      int64_t gin = 0;
      const std::vector<double>* gv = calib->gram(base, &gin);
      if (gv != nullptr && gin == in) x->gram = gv->data();
    }
    if (lowrank_needs_calibration(opt.method) && x->gram == nullptr) {
      return Status::InvalidArgument(base + ": no calibration statistics for this matrix (did the calibration run "
                                            "reach it?)");
    }
    if (opt.method != LowRankMethod::kFisher) return Status::OK();
    const GradStats::Entry* e = opt.grad_stats->find(base);
    if (e == nullptr) return Status::InvalidArgument(base + ": no entry in " + opt.grad_stats->path);
    if (e->n != out) {
      return Status::InvalidArgument(base + ": " + opt.grad_stats->path + " has width " + std::to_string(e->n) +
                                     ", the matrix has " + std::to_string(out) + " outputs");
    }
    double sq = 0.0;
    for (float v : x->w) sq += (double)v * v;
    if (std::fabs(sq - e->weight_sqsum) > 1e-5 * std::max(sq, 1e-30)) {
      return Status::InvalidArgument(base + ": " + opt.grad_stats->path +
                                     " was computed on different weights (sum of squares " +
                                     std::to_string(e->weight_sqsum) + ", this model's " + std::to_string(sq) +
                                     "); run scripts/train/grad_stats.py on this model");
    }
    x->out_gram = e->g.data();
    return Status::OK();
  };
  // With opt.allocate: the uniform ranks' bytes, re-spread by the spectra (overridden matrices
  // keep their ranks and stay outside the budget).
  std::map<std::string, int64_t> allocated;
  if (opt.allocate) {
    std::vector<Spectrum> spectra;
    std::vector<std::string> pool;
    int64_t budget = 0;
    for (const std::string& base : names) {
      const TensorRef* t = dense_tensor(mf, base);
      if (t == nullptr) continue;
      const int64_t in = t->ne[0], out = t->ne[1];
      const int64_t planned = planned_rank(opt, base, out, in);
      if (find_override(opt, base) != nullptr || planned <= 0) continue;
      Inputs x;
      if (Status st = inputs_of(base, *t, &x); !st.ok()) return st;
      Result<std::vector<double>> s =
          singular_values(x.w.data(), out, in, opt.method, x.gram, opt.ridge, opt.asvd_alpha, x.out_gram);
      if (!s.ok()) return Status::InvalidArgument(base + ": " + s.status().message());
      spectra.push_back({out, in, std::move(s.value())});
      pool.push_back(base);
      budget += planned * (out + in);
    }
    Result<std::vector<int64_t>> ranks = allocate_ranks(spectra, budget, opt.rank_multiple);
    if (!ranks.ok()) return Status::InvalidArgument("low-rank: " + ranks.status().message());
    for (size_t i = 0; i < pool.size(); ++i) allocated[pool[i]] = ranks.value()[i];
  }
  auto buffers = std::make_shared<BufferStorage>();
  mf.storage.push_back(buffers);
  int64_t done = 0;
  for (const std::string& base : names) {
    const TensorRef* t = dense_tensor(mf, base);
    if (t == nullptr) continue;
    const std::string dense_name = t->name;
    const int64_t in = t->ne[0], out = t->ne[1];
    const size_t bytes_before = t->nbytes;
    const auto found = allocated.find(base);
    const int64_t rank = found != allocated.end() ? found->second : planned_rank(opt, base, out, in);
    if (rank == 0) {
      if (progress) progress(base, ++done, (int64_t)names.size());
      continue;
    }
    Inputs x;
    if (Status st = inputs_of(base, *t, &x); !st.ok()) return st;
    const std::vector<float>& w = x.w;
    const double* g = x.gram;
    Result<Factors> f = factorize(w.data(), out, in, opt.method, g, rank > 0 ? rank : 0, opt.energy,
                                  opt.rank_multiple, opt.ridge, opt.asvd_alpha, x.out_gram);
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
