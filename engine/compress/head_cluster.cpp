#include "engine/compress/head_cluster.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "engine/compress/calib.h"
#include "engine/models/head.h"

namespace rwkv::compress {
namespace {

using MatR = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapR = Eigen::Map<MatR>;
using CMapR = Eigen::Map<const MatR>;

// Row-wise softmax of z in place; returns nothing. Row statistics in double for stability.
void softmax_rows(MatR& z) {
  for (Eigen::Index i = 0; i < z.rows(); ++i) {
    const float mx = z.row(i).maxCoeff();
    double s = 0.0;
    for (Eigen::Index c = 0; c < z.cols(); ++c) {
      const float e = std::exp(z(i, c) - mx);
      z(i, c) = e;
      s += e;
    }
    z.row(i) *= (float)(1.0 / s);
  }
}

std::string fmt(const char* f, double a, double b = 0.0, double c = 0.0) {
  char buf[256];
  std::snprintf(buf, sizeof buf, f, a, b, c);
  return buf;
}

// A 1-D tensor of v in f32 or f16, its bytes in `storage`.
TensorRef make_vector(const std::string& name, const std::vector<float>& v, DType type, BufferStorage& storage) {
  TensorRef t;
  t.name = name;
  t.type = type;
  t.n_dims = 1;
  t.ne[0] = (int64_t)v.size();
  t.nbytes = v.size() * (type == DType::kF16 ? sizeof(uint16_t) : sizeof(float));
  uint8_t* dst = storage.add(t.nbytes);
  if (type == DType::kF16) {
    kern::kernels().f32_to_f16(v.data(), reinterpret_cast<uint16_t*>(dst), (int64_t)v.size());
  } else {
    std::memcpy(dst, v.data(), t.nbytes);
  }
  t.data = dst;
  return t;
}

}  // namespace

int64_t default_head_clusters(int64_t n_vocab) {
  const int64_t k = (int64_t)std::llround(200.0 * std::sqrt((double)n_vocab / 65536.0));
  return std::max<int64_t>(std::min<int64_t>(2, n_vocab), std::min<int64_t>(k, n_vocab));
}

// --- k-means --------------------------------------------------------------------------------

KMeansResult kmeans(const float* data, int64_t n, int64_t dims, const KMeansOptions& opt) {
  KMeansResult res;
  const int64_t k = std::max<int64_t>(1, std::min(opt.k, n));
  CMapR X(data, n, dims);
  const Eigen::VectorXf xnorm = X.rowwise().squaredNorm();
  MatR cent(k, dims);
  std::mt19937_64 rng(opt.seed);

  // k-means++: the first centre uniformly, each next one with probability proportional to the
  // squared distance to the nearest centre so far.
  std::vector<double> d2((size_t)n, 0.0);
  {
    const int64_t first = (int64_t)(rng() % (uint64_t)n);
    cent.row(0) = X.row(first);
    for (int64_t i = 0; i < n; ++i) d2[(size_t)i] = (X.row(i) - cent.row(0)).squaredNorm();
    for (int64_t c = 1; c < k; ++c) {
      const double total = std::accumulate(d2.begin(), d2.end(), 0.0);
      int64_t pick = 0;
      if (total > 0.0) {
        const double u = std::uniform_real_distribution<double>(0.0, total)(rng);
        double acc = 0.0;
        pick = n - 1;
        for (int64_t i = 0; i < n; ++i) {
          acc += d2[(size_t)i];
          if (acc > u) {
            pick = i;
            break;
          }
        }
      } else {
        pick = (int64_t)(rng() % (uint64_t)n);  // all points coincide with centres
      }
      cent.row(c) = X.row(pick);
      for (int64_t i = 0; i < n; ++i) d2[(size_t)i] = std::min(d2[(size_t)i], (double)(X.row(i) - cent.row(c)).squaredNorm());
    }
  }

  // Lloyd: assign every point to its nearest centre (|x|² − 2x·c + |c|²), move the centres to
  // their members' means; an empty cluster takes the point farthest from its own centre
  // (among clusters of two or more points).
  res.labels.assign((size_t)n, -1);
  std::vector<float> best((size_t)n, 0.0f);
  MatR dots;
  for (int it = 0; it < std::max(1, opt.max_iters); ++it) {
    const Eigen::VectorXf cnorm = cent.rowwise().squaredNorm();
    dots.noalias() = X * cent.transpose();
    bool changed = false;
    for (int64_t i = 0; i < n; ++i) {
      int32_t arg = 0;
      float bd = INFINITY;
      for (int64_t c = 0; c < k; ++c) {
        const float d = cnorm[c] - 2.0f * dots(i, c);
        if (d < bd) {
          bd = d;
          arg = (int32_t)c;
        }
      }
      best[(size_t)i] = std::max(0.0f, bd + xnorm[i]);
      if (res.labels[(size_t)i] != arg) {
        res.labels[(size_t)i] = arg;
        changed = true;
      }
    }
    std::vector<int64_t> size((size_t)k, 0);
    for (int32_t l : res.labels) ++size[(size_t)l];
    for (int64_t c = 0; c < k; ++c) {
      if (size[(size_t)c] > 0) continue;
      int64_t far = -1;
      for (int64_t i = 0; i < n; ++i) {
        if (size[(size_t)res.labels[(size_t)i]] > 1 && (far < 0 || best[(size_t)i] > best[(size_t)far])) far = i;
      }
      if (far < 0) break;  // fewer distinct points than clusters cannot happen with k <= n
      --size[(size_t)res.labels[(size_t)far]];
      res.labels[(size_t)far] = (int32_t)c;
      best[(size_t)far] = 0.0f;
      size[(size_t)c] = 1;
      ++res.repaired;
      changed = true;
    }
    cent.setZero();
    for (int64_t i = 0; i < n; ++i) cent.row(res.labels[(size_t)i]) += X.row(i);
    for (int64_t c = 0; c < k; ++c) cent.row(c) /= (float)size[(size_t)c];
    res.iters = it + 1;
    if (!changed) break;
  }
  res.inertia = 0.0;
  for (int64_t i = 0; i < n; ++i) res.inertia += (X.row(i) - cent.row(res.labels[(size_t)i])).squaredNorm();
  res.centroids.assign(cent.data(), cent.data() + k * dims);
  return res;
}

std::vector<float> pca_project(const float* data, int64_t n, int64_t cols, int64_t dims) {
  dims = std::max<int64_t>(1, std::min(dims, cols));
  CMapR X(data, n, cols);
  const Eigen::RowVectorXf mean = X.colwise().mean();
  const MatR Xc = X.rowwise() - mean;
  const Eigen::MatrixXd cov = (Xc.transpose() * Xc).cast<double>() / (double)std::max<int64_t>(1, n - 1);
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(cov);
  // Eigenvalues ascending: the last `dims` eigenvectors, largest first.
  Eigen::MatrixXf basis(cols, dims);
  for (int64_t j = 0; j < dims; ++j) basis.col(j) = es.eigenvectors().col(cols - 1 - j).cast<float>();
  MatR out = Xc * basis;
  return std::vector<float>(out.data(), out.data() + n * dims);
}

// --- cluster layout -------------------------------------------------------------------------

HeadClustering make_clustering(const std::vector<int32_t>& labels, int64_t k) {
  HeadClustering cl;
  cl.labels = labels;
  cl.offsets.assign((size_t)k + 1, 0);
  for (int32_t l : labels) ++cl.offsets[(size_t)l + 1];
  for (int64_t c = 0; c < k; ++c) cl.offsets[(size_t)c + 1] += cl.offsets[(size_t)c];
  std::vector<int32_t> fill(cl.offsets.begin(), cl.offsets.end() - 1);
  cl.tokens.assign(labels.size(), 0);
  for (size_t t = 0; t < labels.size(); ++t) cl.tokens[(size_t)fill[(size_t)labels[t]]++] = (int32_t)t;
  return cl;
}

// --- distillation ---------------------------------------------------------------------------

namespace {

// f(i, e, acc, s) for every hidden row i of h [n x C] under the dense head W [V x C]:
// e[t] = exp(l_t - max l) of the row's logits l = W h_i, acc[c] = Σ_{t in c} e[t], s = Σ_t e[t]
// (so softmax = e / s). Rows go through the gemm 64 at a time.
template <class F>
void for_each_dense_softmax(const kern::MatView& head, const float* h, int64_t n, const HeadClustering& cl, F&& f) {
  const int64_t V = head.rows, C = head.cols, K = cl.n_clusters();
  const int64_t B = 64;
  std::vector<float> logits((size_t)(B * V));
  std::vector<double> e((size_t)V), acc((size_t)K);
  for (int64_t i0 = 0; i0 < n; i0 += B) {
    const int64_t m = std::min(B, n - i0);
    kern::kernels().gemm(head, h + i0 * C, C, m, logits.data(), V);
    for (int64_t j = 0; j < m; ++j) {
      const float* l = logits.data() + j * V;
      const float mx = *std::max_element(l, l + V);
      std::fill(acc.begin(), acc.end(), 0.0);
      double s = 0.0;
      for (int64_t t = 0; t < V; ++t) {
        e[(size_t)t] = std::exp((double)(l[t] - mx));
        acc[(size_t)cl.labels[(size_t)t]] += e[(size_t)t];
        s += e[(size_t)t];
      }
      f(i0 + j, e.data(), acc.data(), s);
    }
  }
}

}  // namespace

namespace {

// The tail mass m_t of HeadOptions::tail_prior, a row at a time: the clusters a selection by the
// row's true masses would take are chosen, every token of the others adds its probability.
class TailMass {
 public:
  TailMass(const HeadClustering& cl, int64_t V, float p_min, int64_t k_min, int64_t k_max)
      : cl_(cl), p_min_(p_min), mass_((size_t)V, 0.0), order_((size_t)cl.n_clusters()), chosen_((size_t)cl.n_clusters()) {
    const int64_t K = cl.n_clusters();
    k_min_ = std::min(K, std::max<int64_t>(0, k_min));
    k_max_ = p_min >= 1.0f ? K : std::min(K, std::max(k_max, k_min_));
  }
  void add(const double* e, const double* acc, double s) {
    std::iota(order_.begin(), order_.end(), 0);
    std::sort(order_.begin(), order_.end(),
              [&](int32_t a, int32_t b) { return acc[a] > acc[b] || (acc[a] == acc[b] && a < b); });
    std::fill(chosen_.begin(), chosen_.end(), 0);
    double taken = 0.0;
    for (int64_t c = 0; c < k_max_ && (c < k_min_ || taken < (double)p_min_ * s || p_min_ >= 1.0f); ++c) {
      chosen_[(size_t)order_[(size_t)c]] = 1;
      taken += acc[order_[(size_t)c]];
    }
    for (size_t t = 0; t < mass_.size(); ++t) {
      if (!chosen_[(size_t)cl_.labels[t]]) mass_[t] += e[t] / s;
    }
  }
  std::vector<double> take() { return std::move(mass_); }

 private:
  const HeadClustering& cl_;
  const float p_min_;
  int64_t k_min_ = 0, k_max_ = 0;
  std::vector<double> mass_;
  std::vector<int32_t> order_;
  std::vector<uint8_t> chosen_;
};

// Cluster targets and, when `tail` is given, the tail mass, in one pass over the dense head.
std::vector<float> targets_and_tail(const kern::MatView& head, const float* h, int64_t n, const HeadClustering& cl,
                                    TailMass* tail) {
  const int64_t K = cl.n_clusters();
  std::vector<float> p((size_t)(n * K), 0.0f);
  for_each_dense_softmax(head, h, n, cl, [&](int64_t i, const double* e, const double* acc, double s) {
    float* dst = p.data() + i * K;
    for (int64_t c = 0; c < K; ++c) dst[c] = (float)(acc[c] / s);
    if (tail != nullptr) tail->add(e, acc, s);
  });
  return p;
}

}  // namespace

std::vector<float> cluster_targets(const kern::MatView& head, const float* h, int64_t n, const HeadClustering& cl) {
  return targets_and_tail(head, h, n, cl, nullptr);
}

double cluster_kl(const float* h, const float* p, int64_t begin, int64_t end, int64_t C, int64_t K,
                  const std::vector<float>& w, const std::vector<float>& b) {
  if (end <= begin) return 0.0;
  CMapR W(w.data(), K, C);
  const Eigen::Map<const Eigen::RowVectorXf> bias(b.data(), K);
  double total = 0.0;
  const int64_t B = 256;
  MatR z;
  for (int64_t i0 = begin; i0 < end; i0 += B) {
    const int64_t m = std::min(B, end - i0);
    CMapR H(h + i0 * C, m, C);
    z.noalias() = H * W.transpose();
    z.rowwise() += bias;
    for (int64_t j = 0; j < m; ++j) {
      const float mx = z.row(j).maxCoeff();
      double s = 0.0;
      for (int64_t c = 0; c < K; ++c) s += std::exp((double)(z(j, c) - mx));
      const double lse = mx + std::log(s);
      const float* pj = p + (i0 + j) * K;
      for (int64_t c = 0; c < K; ++c) {
        if (pj[c] > 0.0f) total += (double)pj[c] * (std::log((double)pj[c]) - ((double)z(j, c) - lse));
      }
    }
  }
  return total / (double)(end - begin);
}

std::vector<DistillEpoch> distill_cluster_head(const float* h, const float* p, int64_t n, int64_t C, int64_t K,
                                               std::vector<float>& w, std::vector<float>& b,
                                               const DistillOptions& opt,
                                               const std::function<void(const DistillEpoch&)>& progress) {
  std::vector<DistillEpoch> hist;
  int64_t n_held = (int64_t)std::llround((double)n * std::clamp(opt.held_out, 0.0f, 0.9f));
  if (n - n_held < 1) n_held = n - 1;
  const int64_t n_train = n - n_held;
  auto record = [&](int epoch) {
    DistillEpoch e;
    e.epoch = epoch;
    e.train_kl = cluster_kl(h, p, 0, n_train, C, K, w, b);
    e.heldout_kl = cluster_kl(h, p, n_train, n, C, K, w, b);
    hist.push_back(e);
    if (progress) progress(e);
  };
  record(0);
  MapR W(w.data(), K, C);
  Eigen::Map<Eigen::RowVectorXf> bias(b.data(), K);
  MatR mW = MatR::Zero(K, C), vW = MatR::Zero(K, C);
  Eigen::RowVectorXf mb = Eigen::RowVectorXf::Zero(K), vb = Eigen::RowVectorXf::Zero(K);
  const float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  const int64_t B = std::max<int64_t>(1, std::min(opt.batch, n_train));
  const int64_t steps_per_epoch = (n_train + B - 1) / B;
  const int64_t total_steps = steps_per_epoch * std::max(0, opt.epochs);
  int64_t step = 0;
  std::vector<int64_t> idx((size_t)n_train);
  std::iota(idx.begin(), idx.end(), 0);
  std::mt19937_64 rng(opt.seed);
  MatR Hb, Pb, Z, gW;
  for (int ep = 1; ep <= opt.epochs; ++ep) {
    std::shuffle(idx.begin(), idx.end(), rng);
    for (int64_t s0 = 0; s0 < n_train; s0 += B) {
      const int64_t m = std::min(B, n_train - s0);
      Hb.resize(m, C);
      Pb.resize(m, K);
      for (int64_t j = 0; j < m; ++j) {
        const int64_t r = idx[(size_t)(s0 + j)];
        Hb.row(j) = CMapR(h + r * C, 1, C);
        Pb.row(j) = CMapR(p + r * K, 1, K);
      }
      // z = H W^T + b; dKL/dz = softmax(z) - p (per row, averaged over the batch).
      Z.noalias() = Hb * W.transpose();
      Z.rowwise() += bias;
      softmax_rows(Z);
      Z -= Pb;
      Z /= (float)m;
      gW.noalias() = Z.transpose() * Hb;
      const Eigen::RowVectorXf gb = Z.colwise().sum();
      ++step;
      // Linear decay from lr to lr / 10 over the run.
      const float lr = opt.lr * (1.0f - 0.9f * (float)(step - 1) / (float)std::max<int64_t>(1, total_steps - 1));
      const float c1 = 1.0f - std::pow(beta1, (float)step), c2 = 1.0f - std::pow(beta2, (float)step);
      mW = beta1 * mW + (1.0f - beta1) * gW;
      vW = beta2 * vW + (1.0f - beta2) * gW.cwiseProduct(gW);
      mb = beta1 * mb + (1.0f - beta1) * gb;
      vb = beta2 * vb + (1.0f - beta2) * gb.cwiseProduct(gb);
      W.array() -= lr * (mW.array() / c1) / ((vW.array() / c2).sqrt() + eps);
      bias.array() -= lr * (mb.array() / c1) / ((vb.array() / c2).sqrt() + eps);
    }
    record(ep);
  }
  return hist;
}

// --- the compress step ----------------------------------------------------------------------

void HeadProbe::on_linear(const std::string& name, const float* x, int64_t T, int64_t in, const float* y,
                          int64_t out) {
  if (name != "head") return;
  if (width == 0) width = in;
  if (in != width) return;
  int64_t take = T;
  if (max_rows > 0) take = std::min(take, max_rows - n_rows);
  if (take <= 0) return;
  hidden.insert(hidden.end(), x, x + take * in);
  n_rows += take;
}

Status compress_head(ModelFile& mf, const Model& dense, const float* hidden, int64_t n_rows, const HeadOptions& opt,
                     HeadReport* report, const HeadProgress& progress) {
  HeadReport rep;
  auto say = [&](const char* stage, const std::string& line) {
    if (progress) progress(stage, line);
  };
  const int64_t C = mf.hparams.n_embd, V = mf.hparams.n_vocab;
  if (ClusteredHead::present(mf)) return Status::Unsupported(mf.path + ": the head is clustered already");
  const TensorRef* head = mf.find("head.weight");
  if (head == nullptr) {
    return Status::Unsupported(mf.path + ": head clustering needs a dense head.weight (is the head factored?)");
  }
  if (n_rows < 2 || hidden == nullptr) {
    return Status::InvalidArgument("head clustering needs at least 2 calibration rows, got " + std::to_string(n_rows));
  }
  if (dense.hparams().n_embd != C || dense.hparams().n_vocab != V) {
    return Status::InvalidArgument("head clustering: the dense model's shape differs from the file's");
  }
  if (opt.clusters < 0 || opt.clusters > V) {
    return Status::InvalidArgument("head clustering: " + std::to_string(opt.clusters) + " clusters for a vocabulary of " +
                                   std::to_string(V));
  }
  if (!(opt.p_min >= 0.0f) || opt.k_min < 0 || opt.k_max < 1) {
    return Status::InvalidArgument("head clustering: p_min must be >= 0, k_min >= 0, k_max >= 1");
  }
  const int64_t K = opt.clusters > 0 ? opt.clusters : default_head_clusters(V);
  rep.clusters = K;

  // 1. k-means over the head rows or the PCA-reduced embeddings.
  const std::vector<float> head_f32 = matrix_f32(*head);
  std::vector<float> points;
  int64_t dims = C;
  if (opt.space == HeadClusterSpace::kPca) {
    const TensorRef* emb = mf.find("emb.weight");
    if (emb == nullptr) return Status::Unsupported(mf.path + ": emb.weight is missing");
    dims = std::max<int64_t>(1, std::min(opt.pca_dims, C));
    points = pca_project(matrix_f32(*emb).data(), V, C, dims);
  }
  say("kmeans", "k-means: " + std::to_string(K) + " clusters over " + std::to_string(V) + " tokens (" +
                    (opt.space == HeadClusterSpace::kPca ? "embeddings, PCA " + std::to_string(dims) : std::string("head rows")) + ")");
  KMeansOptions ko;
  ko.k = K;
  ko.max_iters = opt.kmeans_iters;
  ko.seed = opt.seed;
  const KMeansResult km = kmeans(points.empty() ? head_f32.data() : points.data(), V, dims, ko);
  rep.kmeans_inertia = km.inertia;
  rep.kmeans_iters = km.iters;
  rep.kmeans_repaired = km.repaired;
  const HeadClustering cl = make_clustering(km.labels, K);
  rep.min_size = V;
  for (int64_t c = 0; c < K; ++c) {
    const int64_t s = cl.offsets[(size_t)c + 1] - cl.offsets[(size_t)c];
    rep.min_size = std::min(rep.min_size, s);
    rep.max_size = std::max(rep.max_size, s);
  }
  say("kmeans", "k-means: " + std::to_string(km.iters) + " iterations, " + std::to_string(km.repaired) +
                    " empty clusters repaired, sizes " + std::to_string(rep.min_size) + ".." + std::to_string(rep.max_size));

  // 2. Targets from the dense head.
  say("targets", "cluster targets for " + std::to_string(n_rows) + " calibration rows");
  kern::MatView hv;
  hv.type = head->type;
  hv.cols = C;
  hv.rows = V;
  hv.data = head->data;
  // With --head-prior the tail mass comes from the same pass.
  std::unique_ptr<TailMass> tail;
  if (opt.tail_prior) tail = std::make_unique<TailMass>(cl, V, opt.p_min, opt.k_min, opt.k_max);
  const std::vector<float> p = targets_and_tail(hv, hidden, n_rows, cl, tail.get());

  // 3. Init from the mean of each cluster's rows; bias 0 or log n_c, whichever fits the
  // training rows better; then Adam.
  std::vector<float> w((size_t)(K * C), 0.0f), b0((size_t)K, 0.0f), b1((size_t)K);
  for (int64_t c = 0; c < K; ++c) {
    const int64_t lo = cl.offsets[(size_t)c], hi = cl.offsets[(size_t)c + 1];
    float* dst = w.data() + c * C;
    for (int64_t r = lo; r < hi; ++r) {
      const float* src = head_f32.data() + (int64_t)cl.tokens[(size_t)r] * C;
      for (int64_t j = 0; j < C; ++j) dst[j] += src[j];
    }
    for (int64_t j = 0; j < C; ++j) dst[j] /= (float)(hi - lo);
    b1[(size_t)c] = std::log((float)(hi - lo));
  }
  int64_t n_held = (int64_t)std::llround((double)n_rows * std::clamp(opt.distill.held_out, 0.0f, 0.9f));
  if (n_rows - n_held < 1) n_held = n_rows - 1;
  const int64_t n_train = n_rows - n_held;
  rep.train_rows = n_train;
  rep.heldout_rows = n_held;
  const double tr0 = cluster_kl(hidden, p.data(), 0, n_train, C, K, w, b0);
  const double tr1 = cluster_kl(hidden, p.data(), 0, n_train, C, K, w, b1);
  rep.init_kl_no_bias = cluster_kl(hidden, p.data(), n_train, n_rows, C, K, w, b0);
  rep.init_kl_log_size = cluster_kl(hidden, p.data(), n_train, n_rows, C, K, w, b1);
  say("distill", fmt("init (mean of rows): train KL %.4f with b = 0, %.4f with b = log n_c", tr0, tr1));
  std::vector<float> b = tr1 <= tr0 ? b1 : b0;
  rep.epochs = distill_cluster_head(hidden, p.data(), n_rows, C, K, w, b, opt.distill, [&](const DistillEpoch& e) {
    say("distill", fmt("epoch %.0f: train KL %.4f, held-out KL %.4f", e.epoch, e.train_kl, e.heldout_kl));
  });

  // Held-out selection statistics with the run-time settings.
  {
    CMapR W(w.data(), K, C);
    double clusters = 0.0, rows = 0.0;
    std::vector<int32_t> order((size_t)K);
    for (int64_t i = n_train; i < n_rows; ++i) {
      Eigen::RowVectorXf z = CMapR(hidden + i * C, 1, C) * W.transpose();
      for (int64_t c = 0; c < K; ++c) z[c] += b[(size_t)c];
      const float mx = z.maxCoeff();
      double s = 0.0;
      for (int64_t c = 0; c < K; ++c) s += std::exp((double)(z[c] - mx));
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(), [&](int32_t a, int32_t bb) { return z[a] > z[bb] || (z[a] == z[bb] && a < bb); });
      int64_t cnt = 0;
      double mass = 0.0;
      const int64_t k_max = opt.p_min >= 1.0f ? K : std::min(K, std::max(opt.k_max, opt.k_min));
      const int64_t k_min = std::min(K, opt.k_min);
      while (cnt < k_max && (cnt < k_min || mass < opt.p_min || opt.p_min >= 1.0f)) {
        const int32_t c = order[(size_t)cnt++];
        mass += std::exp((double)(z[c] - mx)) / s;
        rows += cl.offsets[(size_t)c + 1] - cl.offsets[(size_t)c];
      }
      clusters += (double)cnt;
    }
    if (n_held > 0) {
      rep.heldout_clusters = clusters / (double)n_held;
      rep.heldout_row_fraction = rows / ((double)n_held * (double)V);
    }
    say("distill", fmt("held-out: %.1f clusters and %.1f%% of the head rows per token (p_min %.2f)", rep.heldout_clusters,
                       100.0 * rep.heldout_row_fraction, opt.p_min));
  }

  // 4. Rewrite the file: head rows reordered (bytes copied), the cluster tensors, metadata.
  auto storage = std::make_shared<BufferStorage>();
  TensorRef new_head = *head;
  const size_t rb = dtype_row_bytes(head->type, C);
  uint8_t* dst = storage->add(rb * (size_t)V);
  for (int64_t r = 0; r < V; ++r) std::memcpy(dst + (size_t)r * rb, head->data + (size_t)cl.tokens[(size_t)r] * rb, rb);
  new_head.data = dst;
  Result<TensorRef> cw = make_matrix("head.cluster.weight", w.data(), K, C, opt.cluster_type, *storage);
  if (!cw.ok()) return cw.status();
  std::vector<float> offs(cl.offsets.begin(), cl.offsets.end()), toks(cl.tokens.begin(), cl.tokens.end());
  std::vector<TensorRef> repl = {new_head, cw.value(), make_vector("head.cluster.bias", b, DType::kF32, *storage),
                                 make_vector("head.cluster.offsets", offs, DType::kF32, *storage),
                                 make_vector("head.cluster.tokens", toks, DType::kF32, *storage)};
  if (opt.tail_prior) {
    // log of each row's share of its cluster (rows in the reordered order), f16.
    say("prior", "tail prior from " + std::to_string(n_rows) + " calibration rows");
    const std::vector<double> token_mass = tail->take();
    std::vector<float> lp((size_t)V);
    const double u = std::clamp((double)opt.prior_uniform, 1e-6, 1.0);
    for (int64_t c = 0; c < K; ++c) {
      const int64_t lo = cl.offsets[(size_t)c], hi = cl.offsets[(size_t)c + 1];
      double m = 0.0;
      for (int64_t r = lo; r < hi; ++r) m += token_mass[(size_t)cl.tokens[(size_t)r]];
      for (int64_t r = lo; r < hi; ++r) {
        const double share = m > 0.0 ? token_mass[(size_t)cl.tokens[(size_t)r]] / m : 1.0 / (double)(hi - lo);
        lp[(size_t)r] = (float)std::log((1.0 - u) * share + u / (double)(hi - lo));
      }
    }
    repl.push_back(make_vector("head.cluster.log_prior", lp, DType::kF16, *storage));
  }
  for (size_t i = 1; i < repl.size(); ++i) rep.cluster_bytes += repl[i].nbytes;
  mf.storage.push_back(storage);
  replace_tensor(mf, "head.weight", repl);
  auto num = [](double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%g", v);
    return std::string(buf);
  };
  mf.metadata[kHeadPMinKey] = num(opt.p_min);
  mf.metadata[kHeadKMinKey] = std::to_string(opt.k_min);
  mf.metadata[kHeadKMaxKey] = std::to_string(opt.k_max);
  mf.metadata[kHeadRowFractionKey] = num(opt.p_min >= 1.0f ? 1.0 : rep.heldout_row_fraction);
  mf.metadata["rwkv_edge.compress.head.clusters"] = std::to_string(K);
  mf.metadata["rwkv_edge.compress.head.space"] =
      opt.space == HeadClusterSpace::kPca ? "pca" + std::to_string(dims) : std::string("rows");
  mf.metadata["rwkv_edge.compress.head.epochs"] = std::to_string(opt.distill.epochs);
  mf.metadata["rwkv_edge.compress.head.calib_rows"] = std::to_string(n_rows);
  mf.metadata["rwkv_edge.compress.head.heldout_kl"] =
      num(rep.epochs.empty() ? 0.0 : rep.epochs.back().heldout_kl);
  mf.metadata["rwkv_edge.compress.head.tail"] =
      opt.tail_prior ? "prior (uniform share " + num(opt.prior_uniform) + ")" : std::string("uniform");
  if (report != nullptr) *report = rep;
  return Status::OK();
}

}  // namespace rwkv::compress
