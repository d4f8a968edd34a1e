// Model: the weights of one RWKV model (v4, v5.1, v5.2, v6, v7) and its forward pass.
//
//   Result<std::shared_ptr<Model>> m = Model::load("model.gguf", {});
//   State st = (*m)->new_state();
//   std::vector<float> logits((*m)->hparams().n_vocab);
//   Status s = (*m)->eval(st, tokens.data(), tokens.size(), logits.data());  // prefill
//   s = (*m)->eval(st, &next, 1, logits.data());                               // one step
//
// One forward pass can advance several sequences at once (Segments): their rows are stacked
// and every matrix is read once for all of them, so prefill chunks and batched decode of many
// sessions share one code path. Only the recurrences run row by row.
//
// Memory budget (issue 7): with LoadOptions::mem_budget > 0 the weights are served by a weight
// store (engine/store/weight_store.h): matrices every step needs are read whole into memory the
// model owns, the embedding rows, the sparse FFN layers' neurons and the clustered head's
// clusters are read from the file on demand into LRU caches sized by the planner
// (engine/store/planner.h). The logits are bit-identical either way. Without a budget every
// tensor stays in the file's memory map, as before.
//
// Thread-safety: a Model is immutable after load apart from its caches (each behind its own
// mutex) and statistics; forward() may run concurrently from several threads on different States.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "engine/common/status.h"
#include "engine/formats/model_file.h"
#include "engine/state.h"
#include "engine/store/planner.h"
#include "engine/store/weight_store.h"
#include "kernels/kernels.h"

namespace rwkv {

struct LoadOptions {
  // Dequantise q4/q5 matrices to f32 at load (float activations, as the independent reference
  // in shared/ computes) instead of running them with ggml-style q8 activations.
  // Default: false (rwkv.cpp-compatible).
  bool dequantize = false;
  // Clustered head (issue 6, engine/models/head.h): override the file's p_min / k_min / k_max
  // (metadata rwkv_edge.head.*). p_min >= 1 computes every head row (the dense logits).
  // Default: -1 (the file's settings, else 0.95 / 3 / 100).
  double head_p_min = -1;
  int64_t head_k_min = -1;
  int64_t head_k_max = -1;
  // Clustered head: spread unchosen clusters' mass evenly even when the file has a per-token
  // prior (head.cluster.log_prior), for side-by-side comparisons. Default: false.
  bool head_uniform_tail = false;
  // FFN predictors (issue 6): override every sparse layer's quantile q (the top 1 - q neurons by
  // the 1-bit score are active; 0 = every neuron, which gives the dense result) and MLP
  // threshold τ in (0, 1) (>= 1 turns the MLP off). A q other than 0 needs the layer's 1-bit
  // copy (blocks.N.ffn.key.sign). Default: -1 (the file's rwkv_edge.ffn.N.q / .mlp_threshold).
  double ffn_q = -1;
  double ffn_mlp_threshold = -1;
  // Memory budget in bytes for the model's weights, caches, `budget_states` sessions' states
  // and the scratch of `budget_chunk_rows`-row chunks (issue 7; the planner splits it).
  // 0 = no budget: every tensor is used in place in the file's memory map. Loading fails with
  // ResourceExhausted, naming the minimum, when the budget cannot hold the resident part.
  // Defaults: 0, 1, 64 (max_chunk_rows is set to budget_chunk_rows under a budget).
  size_t mem_budget = 0;
  int64_t budget_states = 1;
  int64_t budget_chunk_rows = 64;
};

// Which logits a segment wants.
enum class LogitsMode { kNone, kLast, kAll };

// One sequence in a forward pass: feed `n_tokens` tokens to `state`.
struct Segment {
  State* state = nullptr;
  const int32_t* tokens = nullptr;
  int64_t n_tokens = 0;
  LogitsMode logits_mode = LogitsMode::kLast;
  // kLast: n_vocab floats; kAll: n_tokens * n_vocab floats (row t = after token t).
  float* logits = nullptr;
};

// Calibration probe: sees the input and output rows of every matrix product of a forward pass.
// Offline tools (rwkv-edge compress) use it to gather activation statistics.
struct Probe {
  virtual ~Probe() = default;
  // Called after every matrix product. `name` is the tensor base name ("blocks.3.att.key",
  // "blocks.3.ffn.key", "blocks.3.att.w1", "blocks.3.att.time_maa_w2.0", "head"); x holds T
  // input rows of `in` floats, y the T output rows of `out` floats (for ffn.key: W_k·xk before
  // the relu). Both are valid only during the call.
  virtual void on_linear(const std::string& name, const float* x, int64_t T, int64_t in, const float* y,
                         int64_t out) = 0;
  // Called by the paths that read only some rows of a matrix (the sparse channel mix), once per
  // input row and tensor: `rows` of the `of` rows of tensor `tensor` (a file tensor name, e.g.
  // "blocks.3.ffn.value_t.weight") were read for that row; 0 when a predictor went unused.
  // rwkv-edge eval measures the weight bytes touched per token with it. Default: ignored.
  virtual void on_rows_read(const std::string& tensor, int64_t rows, int64_t of) {}
};

class ClusteredHead;

namespace detail {
struct LayerWeights;
struct Linear;
}

class Model {
 public:
  static Result<std::shared_ptr<Model>> load(const std::string& path, const LoadOptions& opt);
  static Result<std::shared_ptr<Model>> from_file(ModelFile mf, const LoadOptions& opt);
  ~Model();

  const Hparams& hparams() const { return hp_; }
  const ModelFile& file() const { return mf_; }
  State new_state() const { return State(hp_); }

  // Advances every segment by its tokens. Long inputs are processed in chunks of
  // `max_chunk_rows` rows. Errors: InvalidArgument for a token id out of range, a state of
  // another model, or an empty segment.
  Status forward(Segment* segs, size_t n_segs) const;
  // Convenience: one sequence; logits of the last token into `logits` (may be null).
  Status eval(State& st, const int32_t* tokens, size_t n, float* logits) const;

  int64_t max_chunk_rows = 64;

  // Bytes of the weights one decode step reads (every matrix and vector once; a factored
  // projection reads its two factors; of the embedding only one row).
  size_t weight_bytes_per_token() const;

  // Installs a probe called after every matrix product (nullptr removes it). For offline tools
  // only: not thread-safe with forward(), and the probe must outlive its use. No cost when unset.
  void set_probe(Probe* p) const { probe_ = p; }

  // The clustered head when the file has one (head.cluster.*), else null. Its stats() count the
  // clusters chosen and head rows computed per token.
  const ClusteredHead* clustered_head() const { return cluster_head_.get(); }

  // Weight store counters (issue 7): hits, misses and bytes read per cache since load or the
  // last reset; `enabled` is false (all zero) without a memory budget. Thread-safe.
  store::StoreStats store_stats() const;
  void reset_store_stats() const;
  // How the budget was split; null without a budget.
  const store::MemoryPlan* memory_plan() const { return mem_budget_ > 0 ? &plan_ : nullptr; }

 private:
  Model() = default;
  Status build(const LoadOptions& opt);
  Status build_store(const std::set<std::string>& streamed, const std::vector<detail::Linear*>& streamed_lins);
  Status forward_chunk(Segment* segs, size_t n_segs) const;

  ModelFile mf_;
  Hparams hp_;
  std::vector<std::vector<float>> owned_;  // f32 copies of vectors and dequantised matrices
  kern::MatView emb_;
  std::unique_ptr<detail::Linear> head_;
  std::unique_ptr<ClusteredHead> cluster_head_;  // null: dense head
  mutable Probe* probe_ = nullptr;
  const float* ln0_w_ = nullptr;
  const float* ln0_b_ = nullptr;
  const float* ln_out_w_ = nullptr;
  const float* ln_out_b_ = nullptr;
  std::vector<detail::LayerWeights> layers_;

  // Weight store (only with a memory budget). Constant after load; the caches lock themselves.
  size_t mem_budget_ = 0;
  store::MemoryPlan plan_;
  std::unique_ptr<store::TensorSource> source_;
  std::vector<store::AnonBuffer> resident_;  // resident tensors read from the file
  std::unique_ptr<store::EmbeddingCache> emb_cache_;
  std::vector<std::unique_ptr<store::NeuronCache>> ffn_caches_;
  std::unique_ptr<store::ClusterCache> head_cache_;
  std::unique_ptr<store::MatrixStream> matrix_stream_;
};

}  // namespace rwkv
