// FFN activation predictors (engine/compress/ffn_predictor.*) and the sparse channel mix
// (engine/models/blocks.cpp): training on synthetic data with a known structure, the active-set
// rule, the sparse kernels against a plain loop, and whole tiny models compressed at q = 0.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "tests/common/model_logits.h"
#include "engine/common/fp16.h"
#include "engine/compress/calib.h"
#include "engine/compress/ffn_predictor.h"
#include "engine/eval.h"
#include "engine/model.h"
#include "engine/models/blocks.h"
#include "kernels/kernels.h"
#include "tests/common/test_util.h"

namespace rwkv {
namespace {

using compress::FfnLayerPredictor;
using compress::FfnLayerReport;
using compress::FfnLayerSamples;
using compress::FfnOptions;

// Synthetic layer: W_k with a few large rows of a known direction, so activity is structured:
// rows i < F/8 respond to the first input channel (often active), the rest are noise with a
// negative bias channel (mostly inactive) — a learnable, sparse pattern.
struct Synth {
  int64_t C = 32, F = 128;
  std::vector<float> wk;
  FfnLayerSamples s;
};

Synth make_synth(int64_t n, uint64_t seed) {
  Synth y;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  y.wk.resize((size_t)(y.F * y.C));
  for (int64_t i = 0; i < y.F; ++i) {
    for (int64_t c = 0; c < y.C; ++c) y.wk[(size_t)(i * y.C + c)] = 0.3f * g(rng);
    // Channel 0 is a constant 1 (like a bias): most neurons get a negative offset.
    y.wk[(size_t)(i * y.C)] = i < y.F / 8 ? 0.5f : -1.5f;
  }
  y.s.C = y.C;
  y.s.n = n;
  y.s.xk.resize((size_t)(n * y.C));
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t c = 0; c < y.C; ++c) y.s.xk[(size_t)(t * y.C + c)] = c == 0 ? 1.0f : g(rng);
  }
  return y;
}

std::vector<float> keys(const Synth& y, const float* xk, int64_t n) {
  std::vector<float> k((size_t)(n * y.F));
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t i = 0; i < y.F; ++i) {
      double acc = 0;
      for (int64_t c = 0; c < y.C; ++c) acc += (double)y.wk[(size_t)(i * y.C + c)] * xk[t * y.C + c];
      k[(size_t)(t * y.F + i)] = (float)acc;
    }
  }
  return k;
}

TEST_CASE("MLP predictor learns a known activation pattern far above chance") {
  Synth y = make_synth(4000, 7);
  const int64_t n_train = 3000, n_test = 1000;
  std::vector<float> k = keys(y, y.s.xk.data(), y.s.n);
  FfnOptions opt;
  opt.epochs = 15;
  FfnLayerPredictor p;
  p.C = y.C;
  p.F = y.F;
  p.H = 32;
  const double loss = compress::train_ffn_mlp(y.s.xk.data(), k.data(), n_train, opt, &p);
  CHECK(std::isfinite(loss));
  p.use_mlp = true;
  p.n_top = 0;
  p.logit_tau = 0.0f;  // τ = 0.5
  const float* xt = y.s.xk.data() + n_train * y.C;
  std::vector<uint8_t> m = compress::predict_ffn_active(p, xt, n_test);
  compress::FfnScore sc = compress::score_ffn_mask(m.data(), k.data() + n_train * y.F, n_test, y.F);
  // The pattern is sparse (most neurons have a -1.5 offset) and learnable.
  CHECK(sc.true_sparsity > 0.6);
  // A random guess with the same predicted fraction has recall = 1 - pred_sparsity; the MLP must
  // beat it by a wide margin while still predicting most neurons inactive.
  MESSAGE("true sp " << sc.true_sparsity << " pred sp " << sc.pred_sparsity << " recall " << sc.recall << " w-recall "
                     << sc.weighted_recall);
  CHECK(sc.recall > (1.0 - sc.pred_sparsity) + 0.3);
  CHECK(sc.weighted_recall > 0.9);
  CHECK(sc.pred_sparsity > 0.4);
}

TEST_CASE("fit_ffn_layer reaches the recall target on held-out rows with real sparsity") {
  Synth y = make_synth(5000, 11);
  FfnOptions opt;
  opt.recall = 0.98;
  opt.epochs = 10;
  opt.hidden = 32;
  FfnLayerPredictor p;
  FfnLayerReport r;
  // f16 W_k and W_v^T rows.
  const size_t row_bytes = 2 * 2 * (size_t)y.C;
  REQUIRE(compress::fit_ffn_layer(y.wk.data(), y.F, y.s, 0, opt, row_bytes, &p, &r).ok());
  MESSAGE(compress::format_ffn_report({r}));
  CHECK(r.calib.weighted_recall >= 0.98 - 0.005);  // the top-k ties may move it a hair
  CHECK(r.heldout.weighted_recall > 0.95);
  CHECK(r.heldout.pred_sparsity > 0.3);
  CHECK(r.heldout.recall > 1.0 - r.heldout.pred_sparsity);
  CHECK(r.q >= 0.0);
  CHECK(r.q <= 1.0);

  SUBCASE("1-bit only, fixed q") {
    FfnOptions o2 = opt;
    o2.mlp = false;
    o2.q = {0.75};
    REQUIRE(compress::fit_ffn_layer(y.wk.data(), y.F, y.s, 0, o2, row_bytes, &p, &r).ok());
    CHECK(r.sparse);
    CHECK(p.n_top == 32);
    CHECK(!p.use_mlp);
    CHECK(r.heldout.pred_sparsity == doctest::Approx(0.75));
    // The sign copy of a structured matrix ranks the often-active neurons first.
    CHECK(r.heldout.recall > 0.25 + 0.3);
  }
}

TEST_CASE("active set: top n_top by score, union MLP logits, ascending") {
  detail::FfnSparse sp;
  sp.n_top = 2;
  sp.logit_tau = 0.5f;
  const float scores[6] = {0.1f, 5.0f, -1.0f, 3.0f, 0.2f, 0.0f};
  const float logits[6] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.9f};
  std::vector<int32_t> act;
  std::vector<uint8_t> mark;
  detail::ffn_active_set(sp, 6, scores, logits, act, mark);
  CHECK(act == std::vector<int32_t>{1, 3, 5});
  detail::ffn_active_set(sp, 6, scores, nullptr, act, mark);
  CHECK(act == std::vector<int32_t>{1, 3});
  sp.n_top = 6;
  detail::ffn_active_set(sp, 6, scores, logits, act, mark);
  CHECK(act.size() == 6);
}

TEST_CASE("sparse kernels equal a plain loop over the active rows (f16, f32)") {
  const int64_t rows = 40, cols = 24;
  std::mt19937 rng(3);
  std::normal_distribution<float> g;
  std::vector<float> w((size_t)(rows * cols)), x((size_t)cols);
  for (float& v : w) v = g(rng);
  for (float& v : x) v = g(rng);
  std::vector<uint16_t> w16(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    w16[i] = fp32_to_fp16(w[i]);
    w[i] = fp16_to_fp32(w16[i]);
  }
  const std::vector<int32_t> act = {0, 3, 4, 17, 39};
  const std::vector<float> h = {0.5f, -1.0f, 2.0f, 0.25f, 1.5f};
  for (DType t : {DType::kF32, DType::kF16}) {
    kern::MatView m{t, rows, cols, t == DType::kF32 ? (const void*)w.data() : (const void*)w16.data()};
    std::vector<float> y(act.size()), acc((size_t)cols, 0.0f), want_acc((size_t)cols, 0.0f);
    kern::kernels().gemv_rows(m, act.data(), (int64_t)act.size(), x.data(), y.data());
    kern::kernels().axpy_rows(m, act.data(), h.data(), (int64_t)act.size(), acc.data());
    for (size_t j = 0; j < act.size(); ++j) {
      double d = 0;
      for (int64_t c = 0; c < cols; ++c) {
        d += (double)w[(size_t)(act[j] * cols + c)] * x[(size_t)c];
        want_acc[(size_t)c] += h[j] * w[(size_t)(act[j] * cols + c)];
      }
      CHECK(y[j] == doctest::Approx(d).epsilon(1e-5));  // f32 accumulation of 24 terms
    }
    for (int64_t c = 0; c < cols; ++c) CHECK(acc[(size_t)c] == doctest::Approx(want_acc[(size_t)c]).epsilon(1e-5));
  }
}

std::vector<int32_t> byte_tokens(const std::string& text) {
  std::vector<int32_t> t;
  for (unsigned char c : text) t.push_back((int32_t)c);
  return t;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  float d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
  return d;
}

// Compresses a tiny model's FFNs; returns the compressed file (predictor tensors, W_v^T).
ModelFile compress_tiny(const std::string& file, const FfnOptions& opt, std::vector<FfnLayerReport>* rep) {
  Result<ModelFile> mf = open_model_file(test::tiny_model(file));
  REQUIRE_MESSAGE(mf.ok(), mf.status().to_string());
  Result<std::shared_ptr<Model>> dense = Model::from_file(mf.value(), {});
  REQUIRE(dense.ok());
  compress::FfnProbe probe(mf.value().hparams.n_layer, 4096);
  const std::vector<int32_t> calib = byte_tokens(
      "The quick brown fox jumps over the lazy dog. In the beginning was the word, and the word was with "
      "the model; the model predicted the next byte, and the next, until the text was done. 0123456789 "
      "Pack my box with five dozen liquor jugs. How vexingly quick daft zebras jump!");
  REQUIRE(compress::run_calibration(*dense.value(), calib, &probe).ok());
  ModelFile out = mf.value();
  Status st = compress::compress_ffn(out, probe.samples(), opt, nullptr, rep);
  REQUIRE_MESSAGE(st.ok(), st.to_string());
  return out;
}

const char* const kTinyModels[] = {"tiny-rwkv-4v0-660K-FP32.bin", "tiny-rwkv-5v1-730K-FP32.bin",
                                   "tiny-rwkv-5v2-730K-FP32.bin", "tiny-rwkv-6v0-1m-FP32.bin",
                                   "tiny-rwkv-7v0-834K-FP32.bin", "tiny-rwkv-5v2-730K-FP16.bin"};

TEST_CASE("tiny models compressed at q = 0 reproduce their dense logits (every version)") {
  const std::vector<int32_t> text = byte_tokens("\"in the sparse channel mix every neuron is active at q = 0\"");
  for (const char* file : kTinyModels) {
    CAPTURE(file);
    Result<std::shared_ptr<Model>> dense = Model::load(test::tiny_model(file), {});
    REQUIRE(dense.ok());
    FfnOptions opt;
    opt.q = {0.0};
    opt.mlp = false;
    std::vector<FfnLayerReport> rep;
    ModelFile mf = compress_tiny(file, opt, &rep);
    REQUIRE(mf.find("blocks.0.ffn.value_t.weight") != nullptr);
    REQUIRE(mf.find("blocks.0.ffn.value.weight") == nullptr);
    REQUIRE(finalize_model_file(mf, true).ok());
    Result<std::shared_ptr<Model>> sparse = Model::from_file(mf, {});
    REQUIRE_MESSAGE(sparse.ok(), sparse.status().to_string());
    // Only the order of the sums over the FFN neurons differs (axpy over neurons vs a dot per
    // output): f32 rounding, far below 1e-4 on logits of size ~10.
    CHECK(max_abs_diff(test::all_logits(*dense.value(), text), test::all_logits(*sparse.value(), text)) < 1e-4f);
  }
}

TEST_CASE("a fitted predictor survives a GGUF round trip; LoadOptions q = 0 gives the dense logits") {
  const char* file = "tiny-rwkv-5v2-730K-FP32.bin";
  FfnOptions opt;
  opt.recall = 0.95;
  opt.epochs = 5;
  opt.hidden = 16;
  opt.heldout_fraction = 0.25;
  opt.q = {0.5};  // force a predictor on every layer (the tiny model is too small to profit)
  std::vector<FfnLayerReport> rep;
  ModelFile mf = compress_tiny(file, opt, &rep);
  REQUIRE(rep.size() == (size_t)mf.hparams.n_layer);
  MESSAGE(compress::format_ffn_report(rep));
  REQUIRE(mf.find("blocks.0.ffn.key.sign") != nullptr);
  CHECK(mf.find("blocks.0.ffn.key.sign")->type == DType::kI1R);
  test::TempDir dir;
  GgufWriteOptions w;
  w.keep_types = true;
  REQUIRE(write_gguf(mf, dir.file("ffn.gguf"), w).ok());
  Result<std::shared_ptr<Model>> sparse = Model::load(dir.file("ffn.gguf"), {});
  REQUIRE_MESSAGE(sparse.ok(), sparse.status().to_string());
  CHECK(sparse.value()->file().metadata.count("rwkv_edge.ffn.0.q") == 1);
  Result<std::shared_ptr<Model>> dense = Model::load(test::tiny_model(file), {});
  REQUIRE(dense.ok());
  const std::vector<int32_t> text = byte_tokens("a sparse FFN");
  std::vector<float> ld = test::all_logits(*dense.value(), text);
  std::vector<float> ls = test::all_logits(*sparse.value(), text);
  for (float v : ls) REQUIRE(std::isfinite(v));
  // q = 0.5 drops neurons, so the logits move, but not wildly.
  CHECK(max_abs_diff(ld, ls) > 0.0f);
  CHECK(sparse.value()->weight_bytes_per_token() < dense.value()->weight_bytes_per_token() + 1);
  LoadOptions all;
  all.ffn_q = 0.0;
  Result<std::shared_ptr<Model>> full = Model::load(dir.file("ffn.gguf"), all);
  REQUIRE(full.ok());
  CHECK(max_abs_diff(ld, test::all_logits(*full.value(), text)) < 1e-4f);
}

TEST_CASE("q lists parse; bad options are refused") {
  std::vector<double> q;
  CHECK(compress::parse_ffn_q_list("0.9", &q).ok());
  CHECK(q == std::vector<double>{0.9});
  CHECK(compress::parse_ffn_q_list("0.95,0.9,0.85", &q).ok());
  CHECK(q.size() == 3);
  CHECK(!compress::parse_ffn_q_list("0.9,x", &q).ok());
  CHECK(!compress::parse_ffn_q_list("1.5", &q).ok());
  ModelFile mf;
  mf.hparams.n_layer = 2;
  FfnOptions opt;
  opt.recall = 0;
  CHECK(!compress::compress_ffn(mf, {}, opt, nullptr, nullptr).ok());
}

}  // namespace
}  // namespace rwkv

namespace rwkv {
namespace {

// Bytes per token measured by BytesMeter over a short text (tokens fed = ids.size() - 1).
WeightBytes measured_bytes(const Model& m, const std::vector<int32_t>& ids) {
  BytesMeter meter(m);
  Result<PerplexityResult> r = eval_perplexity(m, ids, (int64_t)ids.size(), 4, nullptr);
  REQUIRE(r.ok());
  return meter.result(r->tokens_scored);
}

}  // namespace

TEST_CASE("BytesMeter counts the rows the sparse channel mix read, and the predictors only when used") {
  const char* file = "tiny-rwkv-5v2-730K-FP32.bin";
  const std::vector<int32_t> text = byte_tokens("bytes touched per token, measured as the engine reads them");
  Result<std::shared_ptr<Model>> dense = Model::load(test::tiny_model(file), {});
  REQUIRE(dense.ok());
  // Dense: every tensor once, one embedding row: the file's static count.
  const WeightBytes wd = measured_bytes(*dense.value(), text);
  CHECK(wd.per_token == doctest::Approx((double)dense.value()->weight_bytes_per_token()));
  CHECK(wd.ffn_sparse == 0.0);
  for (double a : wd.ffn_active) CHECK(a == -1.0);

  FfnOptions opt;
  opt.q = {0.5};
  opt.mlp = false;
  std::vector<FfnLayerReport> rep;
  ModelFile mf = compress_tiny(file, opt, &rep);
  REQUIRE(finalize_model_file(mf, true).ok());
  const int64_t F = mf.hparams.n_ffn, L = mf.hparams.n_layer;
  const double n_top = (double)(F - (int64_t)std::llround(0.5 * (double)F));
  Result<std::shared_ptr<Model>> sparse = Model::from_file(mf, {});
  REQUIRE(sparse.ok());
  const WeightBytes ws = measured_bytes(*sparse.value(), text);
  double kv = 0, sign = 0;
  for (int64_t l = 0; l < L; ++l) {
    CHECK(ws.ffn_active[(size_t)l] == doctest::Approx(n_top / (double)F));
    const std::string p = "blocks." + std::to_string(l) + ".ffn.";
    kv += (double)(mf.find(p + "key.weight")->nbytes + mf.find(p + "value_t.weight")->nbytes);
    sign += (double)mf.find(p + "key.sign")->nbytes;
  }
  // W_k and W_v^T: the top n_top rows; the 1-bit copies in full.
  CHECK(ws.ffn_sparse == doctest::Approx(kv * n_top / (double)F + sign));
  CHECK(ws.per_token == doctest::Approx(wd.per_token - kv * (1.0 - n_top / (double)F) + sign));

  // q = 0 at load: every neuron, the 1-bit copy is never computed, so it is not counted.
  LoadOptions all;
  all.ffn_q = 0.0;
  Result<std::shared_ptr<Model>> full = Model::from_file(mf, all);
  REQUIRE(full.ok());
  const WeightBytes wf = measured_bytes(*full.value(), text);
  for (int64_t l = 0; l < L; ++l) CHECK(wf.ffn_active[(size_t)l] == doctest::Approx(1.0));
  CHECK(wf.per_token == doctest::Approx(wd.per_token));
}

}  // namespace rwkv
