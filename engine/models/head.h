// ClusteredHead: RWKV-Lite's hierarchical output head (issue 6, rwkv-lite.md §6).
//
//   Result<std::unique_ptr<ClusteredHead>> h = ClusteredHead::from_file(mf, settings);
//   if (!h.ok()) return h.status();
//   float* dst[1] = {logits};                      // n_vocab floats, original token order
//   (*h)->compute(ln_out_rows, 1, dst);
//
// The vocabulary is split into K clusters. A small cluster head W_c [K x C] (+ bias b [K])
// gives cluster probabilities p = softmax(W_c h + b). Clusters are taken in descending p until
// their mass reaches p_min, with k_min <= count <= k_max; the tokens of the chosen clusters get
// their exact logits (head row · h; the head's rows are stored grouped by cluster, so each
// chosen cluster is one contiguous sub-matrix and one gemm); every token of an unchosen
// cluster j (n_j tokens) gets the pseudo-logit
//     m + log(Q · p_j / (P · n_j)),   m = max exact logit, Q = Σ_exact exp(l − m),
//                                     P = Σ_chosen p_c,
// i.e. cluster j's share p_j of the (estimated) partition function Q / P spread evenly over its
// tokens. When the file has head.cluster.log_prior (`compress --head-prior`), the share is
// spread by it instead: token t of cluster j gets m + log(Q · p_j / P) + log π_t, where π is the
// token's share of its cluster (Σ_{t in j} π_t = 1, renormalised at load), so the unchosen
// clusters still carry exactly p_j / P of the estimated partition function each. So the caller always receives n_vocab logits in the original token order and the
// sampler sees a proper distribution. With p_min >= 1 every cluster is chosen and the logits
// are the dense head's (up to float summation order).
//
// Tensors (model_file.h conventions, written by `rwkv-edge compress --head-clusters K`):
//   head.weight            [V x C]  the dense head's rows, REORDERED: cluster 0's tokens first
//   head.cluster.weight    [K x C]  cluster head (any weight type)
//   head.cluster.bias      [K]      cluster head bias (optional; zero when absent)
//   head.cluster.offsets   [K+1]    f32 holding integers: rows of cluster c are
//                                   [offsets[c], offsets[c+1]); offsets[0] = 0, offsets[K] = V
//   head.cluster.tokens    [V]      f32 holding integers: original token id of each head row
//   head.cluster.log_prior [V]      optional, f32 or f16: log π of each head row (head-row order)
// Offsets and token ids are stored as f32 because the GGUF path has no integer tensor type;
// f32 is exact for integers below 2^24, and n_vocab is checked to be below that at load.
// Metadata rwkv_edge.head.p_min / k_min / k_max (strings) give the default settings.
//
// Under a memory budget (issue 7) use_store() moves the cluster head into memory the model owns
// and serves head.weight's clusters from a ClusterCache (engine/store/weight_store.h): a chosen
// cluster's rows are read from the file on a miss. The logits are the same bits.
//
// Thread-safety: immutable after construction (and use_store()) except the statistics counters,
// which are atomics, and the cluster cache, which locks itself; compute() may run concurrently
// from several threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/common/status.h"
#include "engine/formats/model_file.h"
#include "kernels/kernels.h"

namespace rwkv {

namespace store {
class AnonBuffer;
class ClusterCache;
class TensorSource;
}  // namespace store

// Metadata keys of the run-time defaults.
inline constexpr const char* kHeadPMinKey = "rwkv_edge.head.p_min";
inline constexpr const char* kHeadKMinKey = "rwkv_edge.head.k_min";
inline constexpr const char* kHeadKMaxKey = "rwkv_edge.head.k_max";
// Mean fraction of head rows computed per token at the file's settings, measured by the
// compressor on held-out calibration rows (for Model::weight_bytes_per_token).
inline constexpr const char* kHeadRowFractionKey = "rwkv_edge.head.row_fraction";

struct ClusterHeadSettings {
  // Clusters are taken in descending probability until their mass is >= p_min. p_min >= 1
  // takes every cluster (k_max is then ignored): the lossless setting. Default: 0.95.
  float p_min = 0.95f;
  // At least k_min clusters (clamped to K). Default: 3.
  int64_t k_min = 3;
  // At most k_max clusters (applies only when p_min < 1; at least k_min). Default: 100.
  int64_t k_max = 100;
  // Spread unchosen clusters' mass by head.cluster.log_prior when the file has it; false
  // spreads it evenly (the paper's formula) regardless. Default: true.
  bool use_prior = true;
};

// Counters since construction (or reset_stats()): rows = head evaluations (one per token whose
// logits were wanted), clusters = clusters chosen in total, head_rows = head rows computed exactly
// in total. Averages per token: clusters / rows and head_rows / (rows · n_vocab).
struct ClusterHeadStats {
  uint64_t rows = 0;
  uint64_t clusters = 0;
  uint64_t head_rows = 0;
};

class ClusteredHead {
 public:
  // Binds the head.cluster.* tensors and head.weight of `mf` (views into its storage; `mf`
  // must outlive the head). Settings come from `settings`; fields the caller leaves negative
  // (p_min < 0, k_min < 0, k_max < 0) are taken from the metadata, else the defaults above.
  // Errors: Corruption naming the tensor for missing tensors, wrong shapes, non-integer or
  // out-of-range offsets/tokens, tokens that are not a permutation of [0, V).
  static Result<std::unique_ptr<ClusteredHead>> from_file(const ModelFile& mf, const ClusterHeadSettings& settings);

  // Does `mf` hold a clustered head (head.cluster.weight present)?
  static bool present(const ModelFile& mf);

  // out[i][0..V) = logits of row i of h (n rows of C floats), in original token order.
  // REQUIRES: out[i] are distinct buffers of n_vocab floats that do not overlap h.
  // REQUIRES: no cluster cache (use_store() not called): without one nothing can fail.
  void compute(const float* h, int64_t n, float* const* out) const;
  // The same, with the clusters' rows from the cache when there is one. Errors: IOError from
  // the cache (out is then partial).
  Status compute_checked(const float* h, int64_t n, float* const* out) const;

  // Weight store (issue 7): reads head.cluster.weight into a buffer appended to `resident` and
  // takes head.weight's rows from `cache` from now on. Call once, before any compute().
  // `cache` must outlive the head. Errors: IOError reading the file.
  Status use_store(const store::TensorSource& src, store::ClusterCache* cache, std::vector<store::AnonBuffer>* resident);
  // Row ranges of the clusters: [K+1].
  const std::vector<int32_t>& offsets() const { return offsets_; }

  // Which clusters row h (C floats) takes, most probable first (exposed for tests and tools).
  std::vector<int32_t> choose(const float* h) const;

  int64_t n_clusters() const { return (int64_t)offsets_.size() - 1; }
  int64_t n_vocab() const { return rows_.rows; }
  int64_t n_embd() const { return rows_.cols; }
  const ClusterHeadSettings& settings() const { return settings_; }
  // Are unchosen clusters' masses spread by the file's per-token prior?
  bool uses_prior() const { return !log_prior_.empty(); }
  // Expected fraction of head.weight's rows read per token: the file's measured
  // rwkv_edge.head.row_fraction at its own settings; 1 when the settings are overridden (not
  // measured) or p_min >= 1.
  double expected_row_fraction() const { return expected_row_fraction_; }
  ClusterHeadStats stats() const;
  void reset_stats() const;

 private:
  ClusteredHead() = default;
  // Cluster probabilities p[K] and log p (numerically safe for tiny p) from cluster logits z.
  void cluster_probs(float* z, float* p) const;
  // The chosen clusters for probabilities p (sorted by descending p), written to `order`;
  // returns how many of them are chosen.
  int64_t select(const float* p, std::vector<int32_t>& order) const;

  // Constant after construction.
  ClusterHeadSettings settings_;
  kern::MatView cluster_w_;         // [K x C]
  std::vector<float> cluster_b_;    // [K] (zeros when the file has no bias)
  kern::MatView rows_;              // head.weight, reordered [V x C]
  std::vector<int32_t> offsets_;    // [K+1]
  std::vector<int32_t> tokens_;     // [V]
  std::vector<float> log_size_;     // [K] log n_c
  std::vector<float> log_prior_;    // [V] log π per head row; empty: spread evenly
  store::ClusterCache* cache_ = nullptr;  // null: rows_ is read in place
  double expected_row_fraction_ = 1.0;

  mutable std::atomic<uint64_t> stat_rows_{0};
  mutable std::atomic<uint64_t> stat_clusters_{0};
  mutable std::atomic<uint64_t> stat_head_rows_{0};
};

// Reads an f32 tensor holding integers (head.cluster.offsets / tokens) into int32.
// Errors: Corruption when a value is not an integer in [lo, hi].
Status read_int_tensor(const ModelFile& mf, const std::string& name, int64_t lo, int64_t hi,
                       std::vector<int32_t>* out);

}  // namespace rwkv
