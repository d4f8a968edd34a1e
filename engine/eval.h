// Language-model quality measurements over token streams: perplexity, bits per byte, LAMBADA,
// and the drift of one model from another (KL divergence, top-1 agreement).
//
//   EvalProgress progress = [](int64_t done, int64_t total) { ... };
//   Result<PerplexityResult> r = eval_perplexity(model, ids, text.size(), 64, progress);
//
// Protocol (documented so other implementations can reproduce it): the whole token stream is
// fed from a fresh state in order; token t+1 is scored given tokens 0..t; the first token is
// not scored. Perplexity = exp(mean NLL over the n-1 scored tokens); bits per byte = total NLL
// / ln 2 / bytes of text.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "engine/common/status.h"
#include "engine/model.h"

namespace rwkv {

using EvalProgress = std::function<void(int64_t done, int64_t total)>;

struct PerplexityResult {
  int64_t tokens_scored = 0;
  double total_nll = 0;  // nats
  double perplexity = 0;
  double bits_per_byte = 0;
  double seconds = 0;
};

// REQUIRES: ids.size() >= 2. `text_bytes` is the byte length of the text the ids came from.
Result<PerplexityResult> eval_perplexity(const Model& m, const std::vector<int32_t>& ids, int64_t text_bytes,
                                         int64_t chunk, const EvalProgress& progress);

struct DriftResult {
  int64_t tokens = 0;
  double mean_kl = 0;        // mean over positions of KL(P_reference || P_model), nats
  double top1_agreement = 0; // fraction of positions where both argmaxes agree
  double model_perplexity = 0;
  double reference_perplexity = 0;
};

// Both models see the same ids from fresh states; every position's distribution is compared.
// InvalidArgument when the vocabularies differ.
Result<DriftResult> eval_drift(const Model& m, const Model& reference, const std::vector<int32_t>& ids, int64_t chunk,
                               const EvalProgress& progress);

// One LAMBADA item: the context, and the continuation (" " + the last word) to predict.
struct LambadaItem {
  std::vector<int32_t> context;
  std::vector<int32_t> target;
};

struct LambadaResult {
  int64_t items = 0;
  int64_t correct = 0;  // every target token is the argmax (greedy), as lm-evaluation-harness
  double accuracy = 0;
  double perplexity = 0;  // exp(-mean over items of the target's total log-likelihood)
  double seconds = 0;
};

Result<LambadaResult> eval_lambada(const Model& m, const std::vector<LambadaItem>& items, const EvalProgress& progress);

// Splits a LAMBADA text the way lm-evaluation-harness does: context = text up to the last
// space, target = " " + the last word. False when the text has no space.
bool split_lambada(const std::string& text, std::string* context, std::string* target);

// log-softmax helpers (double accumulation).
double log_sum_exp(const float* logits, int64_t n);

// Weight bytes a model touched per token over an evaluation, as the engine read them: every
// tensor once per token, except the embedding (one row), a clustered head's head.weight (the rows
// of the chosen clusters, counted by ClusteredHead::stats()) and the tensors the sparse channel
// mix reads in part (W_k rows, W_v^T rows and the predictors, counted through
// Probe::on_rows_read: a predictor that went unused counts 0).
struct WeightBytes {
  double per_token = 0;        // the total
  double embedding = 0;        // one row of emb.weight
  double head = 0;             // head.weight (measured rows when clustered) + head.cluster.*
  double ffn_sparse = 0;       // sparse layers' W_k, W_v^T, 1-bit copies and MLPs
  double rest = 0;             // everything else (read in full)
  double head_row_fraction = 1;  // head rows computed / (tokens x n_vocab); 1 for a dense head
  double head_clusters = 0;      // mean clusters chosen per token (0 for a dense head)
  // Per layer with a sparse channel mix: mean fraction of neurons read (-1: dense layer).
  std::vector<double> ffn_active;
};

// Installed as `m`'s probe (Model::set_probe) for its lifetime; also resets the clustered
// head's counters. Only one meter per model at a time, and the model must not be used by other
// threads meanwhile (Probe rules).
class BytesMeter : public Probe {
 public:
  explicit BytesMeter(const Model& m);
  ~BytesMeter() override;
  BytesMeter(const BytesMeter&) = delete;
  BytesMeter& operator=(const BytesMeter&) = delete;

  void on_linear(const std::string&, const float*, int64_t, int64_t, const float*, int64_t) override {}
  void on_rows_read(const std::string& tensor, int64_t rows, int64_t of) override;

  // The bytes per token after the model was fed `tokens` tokens (each with its logits computed,
  // as eval_perplexity / eval_drift do). REQUIRES: tokens > 0.
  WeightBytes result(int64_t tokens) const;

 private:
  const Model& m_;
  std::map<std::string, double> read_;  // tensor -> Σ rows/of over the reports
};

}  // namespace rwkv
