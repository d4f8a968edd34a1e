// FFN activation predictors (issue 6, RWKV-Lite §4): which channel-mix neurons will be active
// (relu(W_k·xk) > 0) for a given input, so that only their rows of W_k and of W_v^T are read.
//
//   FfnProbe probe(mf.hparams.n_layer, /*max_rows=*/16384);
//   Status st = run_calibration(*model, tokens, &probe);        // collects xk per layer
//   std::vector<FfnLayerReport> report;
//   st = compress_ffn(mf, probe.samples(), FfnOptions{}, nullptr, &report);
//   // mf now holds blocks.N.ffn.key.sign / ffn.pred.w1 / ffn.pred.w2 / ffn.value_t.weight
//
// Per layer two predictors are fitted and used as a union (the paper's ensemble):
// - 1-bit: the signs of W_k with one scale per row (DType::kI1R); score = W_sign·xk; the top
//   (1 - q) fraction of neurons by score is predicted active.
// - MLP: sigmoid(W2·relu(W1·xk)) > τ with W1 [H x C], W2 [F x H] (no biases, H = 64), trained
//   with class-weighted binary cross-entropy (positive weight #neg/#pos) and Adam.
// q and τ are chosen per layer so that the recall of the activation mass (Σ relu(k)² over the
// truly active neurons that are predicted, over Σ relu(k)²) on the calibration rows reaches
// `FfnOptions::recall`, at the fewest weight bytes touched per token (a layer whose cheapest
// choice is not cheaper than dense stays dense). The last `heldout_fraction` of the rows is
// never trained on; reports give both.
//
// Representation written (docs in notes/issue6-common.md): tensors blocks.N.ffn.key.sign (i1r
// [F x C], absent when q = 1), blocks.N.ffn.pred.w1 [H x C] and .w2 [F x H] (f16; absent when
// the MLP is not used), blocks.N.ffn.value_t.weight [F x C] replacing ffn.value.weight, and
// metadata rwkv_edge.ffn.N.q, rwkv_edge.ffn.N.mlp_threshold, rwkv_edge.ffn.N.active (the
// expected active fraction on held-out rows) and rwkv_edge.compress.ffn.* (the settings).
//
// Thread-safety: functions are reentrant; FfnProbe is used by one forward pass at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/common/status.h"
#include "engine/formats/model_file.h"
#include "engine/model.h"

namespace rwkv::compress {

struct FfnOptions {
  // Target recall on the calibration (training) rows; q (and τ when tuned) are chosen per layer
  // as the cheapest setting reaching it. Default: 0.99.
  double recall = 0.99;
  // Measure recall weighted by relu(k)² (the size of a missed neuron's contribution) instead of
  // counting neurons. Default: true.
  bool weighted_recall = true;
  // Fixed quantiles instead of the recall target: one value for every layer or one per layer.
  // Default: empty (chosen from `recall`).
  std::vector<double> q;
  // MLP threshold τ in (0, 1); <= 0 tunes it per layer among {0.5, 0.6, 0.7, 0.8, 0.9, 0.95}
  // and "no MLP". Default: 0 (tuned).
  double mlp_threshold = 0.0;
  // Fit the MLP at all (false: 1-bit predictor only). Default: true.
  bool mlp = true;
  // Hidden width of the MLP. Default: 64 (the paper's; 32 is not much worse).
  int hidden = 64;
  // Training: epochs over the training rows, mini-batch size, Adam learning rate, seed.
  // Defaults: 20, 256, 0.005 (the paper's lr), 1.
  int epochs = 20;
  int batch = 256;
  double lr = 0.005;
  uint64_t seed = 1;
  // The last fraction of each layer's rows is held out (never trained on). Default: 0.2.
  double heldout_fraction = 0.2;
  // Layers to give a predictor; empty = all. Default: empty.
  std::vector<int64_t> layers;
};

// Calibration rows of one layer: n rows of xk (the channel-mix key input, C floats each).
struct FfnLayerSamples {
  int64_t C = 0;
  int64_t n = 0;
  std::vector<float> xk;  // n x C
};

// Collects the input of every `blocks.N.ffn.key` product, up to `max_rows` rows per layer.
class FfnProbe : public Probe {
 public:
  FfnProbe(int64_t n_layer, int64_t max_rows);
  void on_linear(const std::string& name, const float* x, int64_t T, int64_t in, const float* y,
                 int64_t out) override;
  const std::vector<FfnLayerSamples>& samples() const { return samples_; }

 private:
  int64_t max_rows_;
  std::vector<FfnLayerSamples> samples_;
};

// Recall and sparsity of a predictor on a set of rows.
struct FfnScore {
  int64_t rows = 0;
  double true_sparsity = 0;   // fraction of neurons with k <= 0
  double pred_sparsity = 0;   // fraction predicted inactive
  double recall = 0;          // active neurons predicted / active neurons
  double weighted_recall = 0; // Σ relu(k)² of predicted active / Σ relu(k)²
};

struct FfnLayerReport {
  int64_t layer = 0;
  bool sparse = false;      // false: the layer stays dense (no predictor is cheaper)
  double q = 0;             // quantile of the 1-bit predictor (1 = unused)
  double mlp_threshold = 0; // τ (0 = MLP unused)
  FfnScore calib, heldout;
  double mlp_loss = 0;      // final training loss (mean weighted BCE)
  size_t dense_bytes = 0;   // W_k + W_v bytes per token, dense
  size_t sparse_bytes = 0;  // predictor + expected active rows of W_k and W_v^T (held out)
};

// A fitted predictor of one layer, in f32 (the 1-bit one as signs and per-row scales).
struct FfnLayerPredictor {
  int64_t C = 0, F = 0, H = 0;
  std::vector<float> wk;        // F x C: the key matrix used (dequantised)
  std::vector<float> sign;      // F x C: the i1r copy of wk, dequantised (±scale)
  std::vector<float> w1, w2;    // H x C, F x H; empty when the MLP is unused (rounded to f16)
  int64_t n_top = 0;            // neurons taken by the 1-bit score (F - round(q F))
  float logit_tau = 0;          // MLP logit threshold = log(τ / (1 - τ))
  bool use_mlp = false;
};

// Trains the MLP on rows xk [n x C] with labels from k [n x F]. Fills p.w1, p.w2 (rounded to
// f16, as stored) and returns the final mean training loss. REQUIRES: p.C, p.F, p.H set, n > 0.
double train_ffn_mlp(const float* xk, const float* k, int64_t n, const FfnOptions& opt, FfnLayerPredictor* p);

// The predicted-active mask [n x F] of predictor p on rows xk; same rule as the engine:
// the n_top best 1-bit scores of each row, union the MLP logits above logit_tau.
std::vector<uint8_t> predict_ffn_active(const FfnLayerPredictor& p, const float* xk, int64_t n);

// Scores a mask against the true keys k [n x F].
FfnScore score_ffn_mask(const uint8_t* mask, const float* k, int64_t n, int64_t F);

// Fits the predictor of one layer from W_k [F x C] (f32) and calibration rows; chooses q / τ
// as FfnOptions says. `row_bytes_kv` is the bytes of one row of W_k plus one of W_v^T, used to
// compare the cost of candidate settings. Errors: InvalidArgument (no rows, bad options).
Status fit_ffn_layer(const float* wk, int64_t F, const FfnLayerSamples& s, int64_t layer, const FfnOptions& opt,
                     size_t row_bytes_kv, FfnLayerPredictor* out, FfnLayerReport* report);

// (layer done, layers total, message).
using FfnProgress = std::function<void(int64_t done, int64_t total, const std::string& msg)>;

// Fits a predictor per layer on `samples` (one entry per layer, from FfnProbe) and rewrites
// `mf` in place: adds the predictor tensors, replaces ffn.value.weight with ffn.value_t.weight
// on sparse layers and records the settings in the metadata. On error `mf` is unchanged.
// Errors: InvalidArgument (options, missing samples), Unsupported (a factored ffn.key).
Status compress_ffn(ModelFile& mf, const std::vector<FfnLayerSamples>& samples, const FfnOptions& opt,
                    const FfnProgress& progress, std::vector<FfnLayerReport>* report);

// A plain-text table of the reports (one line per layer) for the command line and the docs.
std::string format_ffn_report(const std::vector<FfnLayerReport>& report);

// Parses "0.9" or "0.95,0.9,0.85,..." into FfnOptions::q. Errors: InvalidArgument.
Status parse_ffn_q_list(const std::string& s, std::vector<double>* out);

}  // namespace rwkv::compress
