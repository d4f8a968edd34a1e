#include "engine/models/head.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>

#include "engine/store/weight_store.h"

namespace rwkv {
namespace {

Status head_error(const ModelFile& mf, const std::string& name, const std::string& what) {
  return Status::Corruption(mf.path + ": tensor '" + name + "': " + what);
}

Status bind_matrix(const ModelFile& mf, const std::string& name, int64_t cols, int64_t rows, kern::MatView* out) {
  const TensorRef* t = mf.find(name);
  if (t == nullptr) return Status::Corruption(mf.path + ": tensor '" + name + "' is missing (clustered head)");
  if (t->n_dims != 2 || t->ne[0] != cols || (rows >= 0 && t->ne[1] != rows)) {
    return head_error(mf, name, "has shape " + t->shape_string() + ", expected [" + std::to_string(cols) + ", " +
                                    (rows >= 0 ? std::to_string(rows) : std::string("K")) + "]");
  }
  // Any weight type gemm reads (q8_1 is an activation type only).
  if (!dtype_is_known((uint32_t)t->type) || t->type == DType::kQ8_1) {
    return head_error(mf, name, std::string("type ") + dtype_name(t->type) + " is not a weight type");
  }
  out->type = t->type;
  out->cols = t->ne[0];
  out->rows = t->ne[1];
  out->data = t->data;
  return Status::OK();
}

// Parses metadata `key` as a number into *out when present. Errors: Corruption for text that
// is not a number.
Status meta_number(const ModelFile& mf, const char* key, double* out) {
  auto it = mf.metadata.find(key);
  if (it == mf.metadata.end()) return Status::OK();
  char* end = nullptr;
  const double v = std::strtod(it->second.c_str(), &end);
  if (end == it->second.c_str() || *end != '\0' || !std::isfinite(v)) {
    return Status::Corruption(mf.path + ": metadata " + key + " = '" + it->second + "' is not a number");
  }
  *out = v;
  return Status::OK();
}

}  // namespace

Status read_int_tensor(const ModelFile& mf, const std::string& name, int64_t lo, int64_t hi,
                       std::vector<int32_t>* out) {
  const TensorRef* t = mf.find(name);
  if (t == nullptr) return Status::Corruption(mf.path + ": tensor '" + name + "' is missing (clustered head)");
  if (t->type != DType::kF32 && t->type != DType::kF16) {
    return head_error(mf, name, std::string("is ") + dtype_name(t->type) + "; expected f32 integers");
  }
  const int64_t n = t->n_elements();
  std::vector<float> v((size_t)n);
  dequantize_row(t->type, t->data, v.data(), n);
  out->resize((size_t)n);
  for (int64_t i = 0; i < n; ++i) {
    const float f = v[(size_t)i];
    if (!(f == std::floor(f)) || f < (float)lo || f > (float)hi) {
      return head_error(mf, name, "element " + std::to_string(i) + " = " + std::to_string(f) +
                                      " is not an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    (*out)[(size_t)i] = (int32_t)f;
  }
  return Status::OK();
}

bool ClusteredHead::present(const ModelFile& mf) { return mf.find("head.cluster.weight") != nullptr; }

Result<std::unique_ptr<ClusteredHead>> ClusteredHead::from_file(const ModelFile& mf,
                                                                 const ClusterHeadSettings& settings) {
  std::unique_ptr<ClusteredHead> h(new ClusteredHead());
  const int64_t C = mf.hparams.n_embd, V = mf.hparams.n_vocab;
  if (V >= (1 << 24)) return Status::Unsupported(mf.path + ": clustered head with a vocabulary of 2^24 or more");
  Status st = bind_matrix(mf, "head.weight", C, V, &h->rows_);
  if (!st.ok()) return st;
  st = bind_matrix(mf, "head.cluster.weight", C, -1, &h->cluster_w_);
  if (!st.ok()) return st;
  const int64_t K = h->cluster_w_.rows;
  if (K < 1 || K > V) return head_error(mf, "head.cluster.weight", "has " + std::to_string(K) + " clusters for " + std::to_string(V) + " tokens");
  st = read_int_tensor(mf, "head.cluster.offsets", 0, V, &h->offsets_);
  if (!st.ok()) return st;
  if ((int64_t)h->offsets_.size() != K + 1) {
    return head_error(mf, "head.cluster.offsets", "has " + std::to_string(h->offsets_.size()) + " elements, expected " +
                                                      std::to_string(K + 1));
  }
  if (h->offsets_.front() != 0 || h->offsets_.back() != V) {
    return head_error(mf, "head.cluster.offsets", "must start at 0 and end at " + std::to_string(V));
  }
  h->log_size_.resize((size_t)K);
  for (int64_t c = 0; c < K; ++c) {
    const int64_t n_c = h->offsets_[(size_t)c + 1] - h->offsets_[(size_t)c];
    if (n_c < 1) return head_error(mf, "head.cluster.offsets", "cluster " + std::to_string(c) + " is empty or reversed");
    h->log_size_[(size_t)c] = std::log((float)n_c);
  }
  st = read_int_tensor(mf, "head.cluster.tokens", 0, V - 1, &h->tokens_);
  if (!st.ok()) return st;
  if ((int64_t)h->tokens_.size() != V) {
    return head_error(mf, "head.cluster.tokens", "has " + std::to_string(h->tokens_.size()) + " elements, expected " +
                                                     std::to_string(V));
  }
  std::vector<uint8_t> seen((size_t)V, 0);
  for (int32_t t : h->tokens_) {
    if (seen[(size_t)t]) return head_error(mf, "head.cluster.tokens", "token " + std::to_string(t) + " appears twice");
    seen[(size_t)t] = 1;
  }
  if (const TensorRef* lp = mf.find("head.cluster.log_prior"); lp != nullptr && settings.use_prior) {
    if (lp->n_elements() != V || (lp->type != DType::kF32 && lp->type != DType::kF16)) {
      return head_error(mf, "head.cluster.log_prior", "must be an f32/f16 vector of " + std::to_string(V) + " elements");
    }
    h->log_prior_.resize((size_t)V);
    dequantize_row(lp->type, lp->data, h->log_prior_.data(), V);
    // Renormalise each cluster's shares in double (f16 storage rounds them), so every unchosen
    // cluster carries exactly its mass.
    for (int64_t c = 0; c < K; ++c) {
      const int32_t lo = h->offsets_[(size_t)c], hi = h->offsets_[(size_t)c + 1];
      double mx = -INFINITY;
      for (int32_t r = lo; r < hi; ++r) {
        const float v = h->log_prior_[(size_t)r];
        if (!std::isfinite(v)) {
          return head_error(mf, "head.cluster.log_prior", "element " + std::to_string(r) + " is not finite");
        }
        mx = std::max(mx, (double)v);
      }
      double sum = 0.0;
      for (int32_t r = lo; r < hi; ++r) sum += std::exp((double)h->log_prior_[(size_t)r] - mx);
      const double lse = mx + std::log(sum);
      for (int32_t r = lo; r < hi; ++r) h->log_prior_[(size_t)r] = (float)((double)h->log_prior_[(size_t)r] - lse);
    }
  }
  h->cluster_b_.assign((size_t)K, 0.0f);
  if (const TensorRef* b = mf.find("head.cluster.bias")) {
    if (b->n_elements() != K || (b->type != DType::kF32 && b->type != DType::kF16)) {
      return head_error(mf, "head.cluster.bias", "must be an f32/f16 vector of " + std::to_string(K) + " elements");
    }
    dequantize_row(b->type, b->data, h->cluster_b_.data(), K);
  }
  // Settings: the caller's, else the file's metadata, else the defaults.
  ClusterHeadSettings def;
  double p_min = def.p_min, k_min = (double)def.k_min, k_max = (double)def.k_max;
  st = meta_number(mf, kHeadPMinKey, &p_min);
  if (st.ok()) st = meta_number(mf, kHeadKMinKey, &k_min);
  if (st.ok()) st = meta_number(mf, kHeadKMaxKey, &k_max);
  if (!st.ok()) return st;
  h->settings_.p_min = settings.p_min >= 0 ? settings.p_min : (float)p_min;
  h->settings_.k_min = settings.k_min >= 0 ? settings.k_min : (int64_t)k_min;
  h->settings_.k_max = settings.k_max >= 0 ? settings.k_max : (int64_t)k_max;
  double fraction = 1.0;
  st = meta_number(mf, kHeadRowFractionKey, &fraction);
  if (!st.ok()) return st;
  const bool file_settings = h->settings_.p_min == (float)p_min && h->settings_.k_min == (int64_t)k_min &&
                             h->settings_.k_max == (int64_t)k_max;
  h->expected_row_fraction_ = file_settings && h->settings_.p_min < 1.0f ? std::clamp(fraction, 0.0, 1.0) : 1.0;
  if (!(h->settings_.p_min >= 0.0f) || h->settings_.k_min < 0 || h->settings_.k_max < 1) {
    return Status::InvalidArgument(mf.path + ": clustered head settings out of range (p_min " +
                                   std::to_string(h->settings_.p_min) + ", k_min " + std::to_string(h->settings_.k_min) +
                                   ", k_max " + std::to_string(h->settings_.k_max) + ")");
  }
  return h;
}

void ClusteredHead::cluster_probs(float* z, float* p) const {
  const int64_t K = n_clusters();
  float zmax = z[0];
  for (int64_t c = 1; c < K; ++c) zmax = std::max(zmax, z[c]);
  double sum = 0.0;
  for (int64_t c = 0; c < K; ++c) sum += std::exp((double)(z[c] - zmax));
  const float lse = zmax + (float)std::log(sum);
  // z becomes log p (kept for pseudo-logits of clusters whose p underflows), p = exp(log p).
  for (int64_t c = 0; c < K; ++c) {
    z[c] -= lse;
    p[c] = std::exp(z[c]);
  }
}

int64_t ClusteredHead::select(const float* p, std::vector<int32_t>& order) const {
  const int64_t K = n_clusters();
  order.resize((size_t)K);
  std::iota(order.begin(), order.end(), 0);
  // Ties broken by cluster index, so the choice does not depend on the sort's implementation.
  auto by_p = [p](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); };
  if (settings_.p_min >= 1.0f) {
    std::sort(order.begin(), order.end(), by_p);
    return K;
  }
  const int64_t k_max = std::min(K, std::max(settings_.k_max, settings_.k_min));
  const int64_t k_min = std::min(K, settings_.k_min);
  std::partial_sort(order.begin(), order.begin() + k_max, order.end(), by_p);
  double mass = 0.0;
  int64_t n = 0;
  while (n < k_max && (n < k_min || mass < (double)settings_.p_min)) mass += p[order[(size_t)n++]];
  return n;
}

std::vector<int32_t> ClusteredHead::choose(const float* h) const {
  const int64_t K = n_clusters(), C = n_embd();
  std::vector<float> z((size_t)K), p((size_t)K);
  kern::kernels().gemm(cluster_w_, h, C, 1, z.data(), K);
  for (int64_t c = 0; c < K; ++c) z[(size_t)c] += cluster_b_[(size_t)c];
  cluster_probs(z.data(), p.data());
  std::vector<int32_t> order;
  const int64_t n = select(p.data(), order);
  order.resize((size_t)n);
  return order;
}

Status ClusteredHead::use_store(const store::TensorSource& src, store::ClusterCache* cache,
                                std::vector<store::AnonBuffer>* resident) {
  const size_t bytes = cluster_w_.row_bytes() * (size_t)cluster_w_.rows;
  TensorRef t;
  t.name = "head.cluster.weight";
  t.type = cluster_w_.type;
  t.data = static_cast<const uint8_t*>(cluster_w_.data);
  t.nbytes = bytes;
  store::AnonBuffer buf(bytes);
  if (!buf.ok()) return Status::ResourceExhausted("head.cluster.weight: out of memory");
  Status st = src.read(t, 0, bytes, buf.data());
  if (!st.ok()) return st;
  cluster_w_.data = buf.data();
  resident->push_back(std::move(buf));
  cache_ = cache;
  return Status::OK();
}

void ClusteredHead::compute(const float* h, int64_t n, float* const* out) const {
  // Without a cache nothing can fail (REQUIRES in head.h).
  (void)compute_checked(h, n, out);
}

Status ClusteredHead::compute_checked(const float* h, int64_t n, float* const* out) const {
  if (n <= 0) return Status::OK();
  const int64_t K = n_clusters(), C = n_embd();
  const kern::Kernels& k = kern::kernels();
  // 1. Cluster log-probabilities of every row: logp[n x K], p[n x K].
  std::vector<float> logp((size_t)(n * K)), p((size_t)(n * K));
  k.gemm(cluster_w_, h, C, n, logp.data(), K);
  for (int64_t i = 0; i < n; ++i) {
    float* z = logp.data() + i * K;
    for (int64_t c = 0; c < K; ++c) z[c] += cluster_b_[(size_t)c];
    cluster_probs(z, p.data() + i * K);
  }
  // 2. The chosen clusters of each row; rows grouped by cluster so that each chosen cluster's
  // rows are read once for all the rows that chose it.
  std::vector<std::vector<int32_t>> order((size_t)n);
  std::vector<int64_t> count((size_t)n);
  std::vector<std::vector<int32_t>> users((size_t)K);
  uint64_t n_clusters_chosen = 0, n_head_rows = 0;
  for (int64_t i = 0; i < n; ++i) {
    count[(size_t)i] = select(p.data() + i * K, order[(size_t)i]);
    n_clusters_chosen += (uint64_t)count[(size_t)i];
    for (int64_t j = 0; j < count[(size_t)i]; ++j) users[(size_t)order[(size_t)i][(size_t)j]].push_back((int32_t)i);
  }
  // 3. Exact logits of the chosen clusters' tokens: y[m x n_c] = H_users · W_c^T, scattered to
  // the original token order.
  std::vector<float> xs, ys;
  // Under a memory budget the cache stays locked while its rows are in use.
  std::unique_lock<std::mutex> cache_lock;
  if (cache_ != nullptr) cache_lock = cache_->begin_round();
  for (int64_t c = 0; c < K; ++c) {
    const std::vector<int32_t>& u = users[(size_t)c];
    if (u.empty()) continue;
    const int64_t lo = offsets_[(size_t)c], n_c = offsets_[(size_t)c + 1] - lo, m = (int64_t)u.size();
    kern::MatView sub = rows_;
    sub.data = rows_.row(lo);
    sub.rows = n_c;
    if (cache_ != nullptr) {
      Result<const uint8_t*> cached = cache_->get((int32_t)c);
      if (!cached.ok()) return cached.status();
      sub.data = cached.value();
    }
    const float* x = h + (int64_t)u[0] * C;
    if (m > 1) {
      xs.resize((size_t)(m * C));
      for (int64_t j = 0; j < m; ++j) std::copy(h + u[(size_t)j] * C, h + (u[(size_t)j] + 1) * C, xs.data() + j * C);
      x = xs.data();
    }
    ys.resize((size_t)(m * n_c));
    k.gemm(sub, x, C, m, ys.data(), n_c);
    n_head_rows += (uint64_t)(m * n_c);
    for (int64_t j = 0; j < m; ++j) {
      float* dst = out[u[(size_t)j]];
      const float* y = ys.data() + j * n_c;
      for (int64_t r = 0; r < n_c; ++r) dst[tokens_[(size_t)(lo + r)]] = y[r];
    }
  }
  if (cache_lock.owns_lock()) cache_lock.unlock();
  // 4. Pseudo-logits of the other clusters: m + log(Q · p_j / (P · n_j)) (or with log π_t in
  // place of -log n_j when the file has a prior), computed in the log
  // domain (log p_j from the cluster log-softmax) so that clusters whose p_j underflows still
  // get a finite logit.
  std::vector<uint8_t> chosen((size_t)K);
  for (int64_t i = 0; i < n; ++i) {
    if (count[(size_t)i] == K) continue;
    float* dst = out[i];
    const float* lp = logp.data() + i * K;
    const float* pi = p.data() + i * K;
    std::fill(chosen.begin(), chosen.end(), 0);
    float mx = -INFINITY;
    double P = 0.0;
    for (int64_t j = 0; j < count[(size_t)i]; ++j) {
      const int32_t c = order[(size_t)i][(size_t)j];
      chosen[(size_t)c] = 1;
      P += pi[c];
      for (int32_t r = offsets_[(size_t)c]; r < offsets_[(size_t)c + 1]; ++r) mx = std::max(mx, dst[tokens_[(size_t)r]]);
    }
    double Q = 0.0;
    for (int64_t j = 0; j < count[(size_t)i]; ++j) {
      const int32_t c = order[(size_t)i][(size_t)j];
      for (int32_t r = offsets_[(size_t)c]; r < offsets_[(size_t)c + 1]; ++r) {
        Q += std::exp((double)(dst[tokens_[(size_t)r]] - mx));
      }
    }
    const double base = (double)mx + std::log(Q) - std::log(P);
    for (int64_t c = 0; c < K; ++c) {
      if (chosen[(size_t)c]) continue;
      if (!log_prior_.empty()) {
        const double cb = base + (double)lp[c];
        for (int32_t r = offsets_[(size_t)c]; r < offsets_[(size_t)c + 1]; ++r) {
          dst[tokens_[(size_t)r]] = (float)(cb + (double)log_prior_[(size_t)r]);
        }
        continue;
      }
      const float v = (float)(base + (double)lp[c] - (double)log_size_[(size_t)c]);
      for (int32_t r = offsets_[(size_t)c]; r < offsets_[(size_t)c + 1]; ++r) dst[tokens_[(size_t)r]] = v;
    }
  }
  stat_rows_.fetch_add((uint64_t)n, std::memory_order_relaxed);
  stat_clusters_.fetch_add(n_clusters_chosen, std::memory_order_relaxed);
  stat_head_rows_.fetch_add(n_head_rows, std::memory_order_relaxed);
  return Status::OK();
}

ClusterHeadStats ClusteredHead::stats() const {
  ClusterHeadStats s;
  s.rows = stat_rows_.load(std::memory_order_relaxed);
  s.clusters = stat_clusters_.load(std::memory_order_relaxed);
  s.head_rows = stat_head_rows_.load(std::memory_order_relaxed);
  return s;
}

void ClusteredHead::reset_stats() const {
  stat_rows_.store(0, std::memory_order_relaxed);
  stat_clusters_.store(0, std::memory_order_relaxed);
  stat_head_rows_.store(0, std::memory_order_relaxed);
}

}  // namespace rwkv
