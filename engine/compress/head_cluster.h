// Hierarchical (clustered) head, offline part (issue 6, rwkv-lite.md §6): cluster the
// vocabulary with k-means, distil a cluster head on calibration hidden states, and rewrite the
// model file so the engine's ClusteredHead (engine/models/head.h) runs it.
//
//   HeadProbe probe;                                   // collects LN_out(x) rows (head inputs)
//   run_calibration(*dense, tokens, &probe, ...);
//   HeadReport rep;
//   Status st = compress_head(mf, *dense, probe.hidden, probe.n_rows, opts, &rep, progress);
//
// Steps of compress_head:
//  1. k-means (k-means++ seeding, Lloyd iterations, empty clusters re-seeded with the point
//     farthest from its centroid) over the head's rows, or over the embedding rows projected on
//     their top principal components (the paper's choice), K clusters.
//  2. Targets: for every calibration row h, the dense head's softmax summed per cluster,
//     p[c] = Σ_{t in c} softmax(head · h)[t].
//  3. Cluster head W_c [K x C] and bias b [K], initialised to the mean of each cluster's head
//     rows and b_c = log n_c (log-sum-exp over n_c equal logits; the bias-free init is also
//     measured and the better one kept), then trained with Adam on
//     KL(p || softmax(W_c h + b)) over the first (1 - held_out) of the rows; the rest is held out.
//  4. head.weight's rows reordered cluster by cluster (bytes copied: the rows keep their type),
//     head.cluster.{weight,bias,offsets,tokens} added, settings in metadata.
//
// Thread-safety: plain functions; no shared state.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/common/dtype.h"
#include "engine/common/status.h"
#include "engine/formats/model_file.h"
#include "engine/model.h"

namespace rwkv::compress {

// The default cluster count for a vocabulary of n_vocab tokens: the paper's 200 clusters for
// 65,536 tokens scaled by the square root of the vocabulary, round(200 · sqrt(V / 65536)),
// clamped to [2, V] (V = 12288 -> 87, V = 256 -> 13). Square root, not linear: the mean
// cluster size then also grows as sqrt(V) (328 tokens at 65k, 141 at 12k), which balances the
// cost of the cluster head (K rows) against the rows of the chosen clusters.
int64_t default_head_clusters(int64_t n_vocab);

// --- k-means ------------------------------------------------------------------------------

struct KMeansOptions {
  int64_t k = 8;            // clusters. REQUIRES: 1 <= k <= n.
  int max_iters = 50;       // Lloyd iterations at most. Default: 50.
  uint64_t seed = 1;        // k-means++ seeding. Default: 1.
};

struct KMeansResult {
  std::vector<int32_t> labels;     // [n] cluster of each point
  std::vector<float> centroids;    // [k x dims]
  double inertia = 0.0;            // Σ squared distance to the own centroid
  int iters = 0;                   // Lloyd iterations run
  int repaired = 0;                // empty clusters re-seeded
};

// Clusters the n points (rows of `data`, n x dims, row-major). Every cluster ends non-empty.
// Deterministic for a given seed.
KMeansResult kmeans(const float* data, int64_t n, int64_t dims, const KMeansOptions& opt);

// Projects the n rows (n x cols) on their top `dims` principal components (rows centred first):
// returns n x dims.
std::vector<float> pca_project(const float* data, int64_t n, int64_t cols, int64_t dims);

// --- cluster layout -------------------------------------------------------------------------

struct HeadClustering {
  std::vector<int32_t> offsets;  // [K+1]: reordered rows of cluster c are [offsets[c], offsets[c+1])
  std::vector<int32_t> tokens;   // [V]: original token of each reordered row (ascending within a cluster)
  std::vector<int32_t> labels;   // [V]: cluster of each original token
  int64_t n_clusters() const { return (int64_t)offsets.size() - 1; }
};
// REQUIRES: labels in [0, k), every cluster non-empty.
HeadClustering make_clustering(const std::vector<int32_t>& labels, int64_t k);

// --- distillation ---------------------------------------------------------------------------

// Cluster targets p [n x K] of the hidden rows h [n x C] under the dense head W [V x C]
// (any weight type): p[i][c] = Σ_{t in c} softmax(W h_i)[t].
std::vector<float> cluster_targets(const kern::MatView& head, const float* h, int64_t n,
                                   const HeadClustering& cl);

struct DistillOptions {
  int epochs = 8;          // passes over the training rows. Default: 8.
  int64_t batch = 64;      // rows per Adam step. Default: 64.
  float lr = 2e-3f;        // Adam step size, decayed linearly to lr/10. Default: 2e-3.
  float held_out = 0.1f;   // last fraction of the rows kept out of training. Default: 0.1.
  uint64_t seed = 1;       // shuffling. Default: 1.
};

struct DistillEpoch {
  int epoch = 0;           // 0 = before training
  double train_kl = 0.0;   // mean KL(p || q) in nats over the training rows
  double heldout_kl = 0.0; // same over the held-out rows
};

// Mean KL(p || softmax(W h + b)) over rows [begin, end) (nats).
double cluster_kl(const float* h, const float* p, int64_t begin, int64_t end, int64_t C, int64_t K,
                  const std::vector<float>& w, const std::vector<float>& b);

// Trains w [K x C] and b [K] in place with Adam on the KL to the targets p [n x K].
// `progress` gets one entry per epoch (after the epoch-0 entry for the initial weights).
// Returns the per-epoch history.
std::vector<DistillEpoch> distill_cluster_head(const float* h, const float* p, int64_t n, int64_t C, int64_t K,
                                               std::vector<float>& w, std::vector<float>& b,
                                               const DistillOptions& opt,
                                               const std::function<void(const DistillEpoch&)>& progress = nullptr);

// --- the compress step ----------------------------------------------------------------------

enum class HeadClusterSpace { kRows, kPca };

struct HeadOptions {
  // Clusters; 0 = default_head_clusters(V). Default: 0.
  int64_t clusters = 0;
  // What k-means clusters: the head's rows (kRows) or the embedding rows projected on their
  // top `pca_dims` principal components (kPca, the paper's choice). Default: kRows.
  HeadClusterSpace space = HeadClusterSpace::kRows;
  int64_t pca_dims = 64;   // Default: 64 (clamped to C).
  int kmeans_iters = 50;   // Default: 50.
  DistillOptions distill;
  // Run-time defaults written to the metadata (engine/models/head.h). Defaults: 0.95, 3, 100.
  float p_min = 0.95f;
  int64_t k_min = 3;
  int64_t k_max = 100;
  // Type of head.cluster.weight in the file (f32, f16, q8_0, i8r). Default: f32 (it is small).
  DType cluster_type = DType::kF32;
  // Write head.cluster.log_prior: each token's share of its cluster, so that an unchosen
  // cluster's mass is spread by it instead of evenly (engine/models/head.h). The share is
  // (1 - prior_uniform) * m_t / (the same summed over t's cluster) + prior_uniform / n_c, where
  // m_t is t's dense-head probability summed over the calibration rows where its cluster would
  // not be chosen (selection by the true cluster masses at p_min / k_min / k_max below): the
  // maximum-likelihood spread of an unchosen cluster's mass. (The average over all rows is
  // dominated by the rows where the cluster is chosen; it favoured frequent tokens far too much
  // and measured worse than the even spread.) Default: off.
  bool tail_prior = false;
  float prior_uniform = 0.1f;  // REQUIRES: 0 < prior_uniform <= 1. Default: 0.1.
  uint64_t seed = 1;
};

struct HeadReport {
  int64_t clusters = 0;
  int64_t min_size = 0, max_size = 0;     // tokens per cluster
  double kmeans_inertia = 0.0;
  int kmeans_iters = 0, kmeans_repaired = 0;
  double init_kl_no_bias = 0.0;           // held-out KL of mean-of-rows init, b = 0
  double init_kl_log_size = 0.0;          // held-out KL of mean-of-rows init, b = log n_c
  std::vector<DistillEpoch> epochs;
  int64_t train_rows = 0, heldout_rows = 0;
  // On the held-out rows with the final cluster head and the settings above: mean clusters
  // chosen and mean fraction of head rows computed per token.
  double heldout_clusters = 0.0;
  double heldout_row_fraction = 0.0;
  size_t cluster_bytes = 0;               // head.cluster.* bytes added
};

// Progress: a stage name ("kmeans", "targets", "distill") and a line of text.
using HeadProgress = std::function<void(const std::string& stage, const std::string& line)>;

// Clusters the head of `mf` (which must be the file `dense` was loaded from, or a copy with
// the same head and embedding), distils the cluster head on the n_rows hidden rows (n_rows x C,
// the head's inputs LN_out(x) from `dense`) and rewrites `mf` as described above. Records the
// settings in rwkv_edge.compress.head.* metadata and the run-time defaults in
// rwkv_edge.head.{p_min,k_min,k_max}.
// Errors: InvalidArgument for bad options or too few rows (< 2), Unsupported when head.weight
// is absent (e.g. factored) or the head is clustered already.
Status compress_head(ModelFile& mf, const Model& dense, const float* hidden, int64_t n_rows, const HeadOptions& opt,
                     HeadReport* report, const HeadProgress& progress = nullptr);

// Collects the head's inputs (LN_out rows) seen during calibration, up to max_rows.
struct HeadProbe : Probe {
  int64_t max_rows = 0;  // 0 = no limit
  int64_t n_rows = 0;
  int64_t width = 0;
  std::vector<float> hidden;  // n_rows x width
  void on_linear(const std::string& name, const float* x, int64_t T, int64_t in, const float* y,
                 int64_t out) override;
};

}  // namespace rwkv::compress
