#include "engine/eval.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <string>

#include "engine/models/head.h"

namespace rwkv {
namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

int64_t argmax(const float* x, int64_t n) { return std::max_element(x, x + n) - x; }

}  // namespace

double log_sum_exp(const float* logits, int64_t n) {
  float mx = logits[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, logits[i]);
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += std::exp((double)logits[i] - mx);
  return mx + std::log(s);
}

Result<PerplexityResult> eval_perplexity(const Model& m, const std::vector<int32_t>& ids, int64_t text_bytes,
                                         int64_t chunk, const EvalProgress& progress) {
  if (ids.size() < 2) return Status::InvalidArgument("perplexity needs at least 2 tokens, got " + std::to_string(ids.size()));
  const int64_t V = m.hparams().n_vocab;
  const auto t0 = clock_type::now();
  State st = m.new_state();
  PerplexityResult r;
  chunk = std::max<int64_t>(1, chunk);
  std::vector<float> logits((size_t)(chunk * V));
  const int64_t n = (int64_t)ids.size() - 1;  // positions that predict a next token
  for (int64_t pos = 0; pos < n; pos += chunk) {
    const int64_t len = std::min(chunk, n - pos);
    Segment seg{&st, ids.data() + pos, len, LogitsMode::kAll, logits.data()};
    Status s = m.forward(&seg, 1);
    if (!s.ok()) return s;
    for (int64_t i = 0; i < len; ++i) {
      const float* row = logits.data() + i * V;
      r.total_nll += log_sum_exp(row, V) - row[ids[(size_t)(pos + i + 1)]];
    }
    if (progress) progress(pos + len, n);
  }
  r.tokens_scored = n;
  r.perplexity = std::exp(r.total_nll / (double)n);
  r.bits_per_byte = text_bytes > 0 ? r.total_nll / std::log(2.0) / (double)text_bytes : 0.0;
  r.seconds = seconds_since(t0);
  return r;
}

Result<DriftResult> eval_drift(const Model& m, const Model& reference, const std::vector<int32_t>& ids, int64_t chunk,
                               const EvalProgress& progress) {
  const int64_t V = m.hparams().n_vocab;
  if (reference.hparams().n_vocab != V) {
    return Status::InvalidArgument("the models have different vocabularies (" + std::to_string(V) + " vs " +
                                   std::to_string(reference.hparams().n_vocab) + ")");
  }
  if (ids.size() < 2) return Status::InvalidArgument("drift needs at least 2 tokens");
  chunk = std::max<int64_t>(1, chunk);
  State sa = m.new_state(), sb = reference.new_state();
  std::vector<float> la((size_t)(chunk * V)), lb((size_t)(chunk * V));
  DriftResult r;
  double kl = 0, nll_a = 0, nll_b = 0;
  int64_t agree = 0;
  const int64_t n = (int64_t)ids.size() - 1;
  for (int64_t pos = 0; pos < n; pos += chunk) {
    const int64_t len = std::min(chunk, n - pos);
    Segment a{&sa, ids.data() + pos, len, LogitsMode::kAll, la.data()};
    Segment b{&sb, ids.data() + pos, len, LogitsMode::kAll, lb.data()};
    Status s = m.forward(&a, 1);
    if (!s.ok()) return s;
    s = reference.forward(&b, 1);
    if (!s.ok()) return s;
    for (int64_t i = 0; i < len; ++i) {
      const float* pa = la.data() + i * V;
      const float* pb = lb.data() + i * V;
      const double za = log_sum_exp(pa, V), zb = log_sum_exp(pb, V);
      // KL(P_ref || P_model) = sum_v p_ref(v) (log p_ref(v) - log p_model(v))
      double k = 0.0;
      for (int64_t v = 0; v < V; ++v) {
        const double lpb = pb[v] - zb;
        k += std::exp(lpb) * (lpb - (pa[v] - za));
      }
      kl += std::max(0.0, k);
      agree += argmax(pa, V) == argmax(pb, V);
      const int32_t next = ids[(size_t)(pos + i + 1)];
      nll_a += za - pa[next];
      nll_b += zb - pb[next];
    }
    if (progress) progress(pos + len, n);
  }
  r.tokens = n;
  r.mean_kl = kl / (double)n;
  r.top1_agreement = (double)agree / (double)n;
  r.model_perplexity = std::exp(nll_a / (double)n);
  r.reference_perplexity = std::exp(nll_b / (double)n);
  return r;
}

bool split_lambada(const std::string& text, std::string* context, std::string* target) {
  const size_t sp = text.rfind(' ');
  if (sp == std::string::npos || sp == 0 || sp + 1 >= text.size()) return false;
  *context = text.substr(0, sp);
  *target = text.substr(sp);  // " word"
  return true;
}

BytesMeter::BytesMeter(const Model& m) : m_(m) {
  m_.set_probe(this);
  if (m_.clustered_head() != nullptr) m_.clustered_head()->reset_stats();
}

BytesMeter::~BytesMeter() { m_.set_probe(nullptr); }

void BytesMeter::on_rows_read(const std::string& tensor, int64_t rows, int64_t of) {
  if (of > 0) read_[tensor] += (double)rows / (double)of;
}

WeightBytes BytesMeter::result(int64_t tokens) const {
  WeightBytes w;
  const ModelFile& mf = m_.file();
  const double n = (double)std::max<int64_t>(1, tokens);
  const ClusteredHead* ch = m_.clustered_head();
  if (ch != nullptr) {
    const ClusterHeadStats st = ch->stats();
    if (st.rows > 0) {
      w.head_row_fraction = (double)st.head_rows / ((double)st.rows * (double)ch->n_vocab());
      w.head_clusters = (double)st.clusters / (double)st.rows;
    }
  }
  w.ffn_active.assign((size_t)m_.hparams().n_layer, -1.0);
  for (const TensorRef& t : mf.tensors) {
    const std::string& name = t.name;
    const double bytes = (double)t.nbytes;
    if (name == "emb.weight") {
      w.embedding = t.ne[1] > 0 ? bytes / (double)t.ne[1] : bytes;
      continue;
    }
    const bool is_head = name == "head.weight" || name.rfind("head.cluster.", 0) == 0;
    if (name == "head.weight" && ch != nullptr) {
      w.head += bytes * w.head_row_fraction;
      continue;
    }
    if (is_head) {
      w.head += bytes;
      continue;
    }
    // A tensor of a layer whose channel mix is sparse: counted by what the engine reported.
    const size_t ffn = name.find(".ffn.");
    const bool sparse_layer =
        ffn != std::string::npos && name.rfind("blocks.", 0) == 0 && mf.find(name.substr(0, ffn) + ".ffn.value_t.weight") != nullptr;
    const bool sparse_part =
        sparse_layer && (name.find(".ffn.key.") != std::string::npos || name.find(".ffn.pred.") != std::string::npos ||
                         name.find(".ffn.value_t.") != std::string::npos);
    if (sparse_part) {
      auto it = read_.find(name);
      const double frac = it == read_.end() ? 0.0 : it->second / n;
      w.ffn_sparse += bytes * frac;
      if (name.find(".ffn.value_t.") != std::string::npos) {
        const int64_t layer = std::atoll(name.c_str() + 7);
        if (layer >= 0 && layer < (int64_t)w.ffn_active.size()) w.ffn_active[(size_t)layer] = frac;
      }
      continue;
    }
    w.rest += bytes;
  }
  w.per_token = w.embedding + w.head + w.ffn_sparse + w.rest;
  return w;
}

Result<LambadaResult> eval_lambada(const Model& m, const std::vector<LambadaItem>& items, const EvalProgress& progress) {
  const int64_t V = m.hparams().n_vocab;
  const auto t0 = clock_type::now();
  LambadaResult r;
  double total_ll = 0;
  std::vector<float> first((size_t)V);
  std::vector<float> rest;
  for (size_t k = 0; k < items.size(); ++k) {
    const LambadaItem& it = items[k];
    if (it.context.empty() || it.target.empty()) return Status::InvalidArgument("LAMBADA item " + std::to_string(k) + " is empty");
    State st = m.new_state();
    Status s = m.eval(st, it.context.data(), it.context.size(), first.data());
    if (!s.ok()) return s;
    // Logits predicting target[0] come from the context; the others from target[0..n-2].
    const int64_t nt = (int64_t)it.target.size();
    rest.resize((size_t)(std::max<int64_t>(nt - 1, 1) * V));
    if (nt > 1) {
      Segment seg{&st, it.target.data(), nt - 1, LogitsMode::kAll, rest.data()};
      s = m.forward(&seg, 1);
      if (!s.ok()) return s;
    }
    double ll = 0;
    bool greedy = true;
    for (int64_t j = 0; j < nt; ++j) {
      const float* row = j == 0 ? first.data() : rest.data() + (j - 1) * V;
      ll += row[it.target[(size_t)j]] - log_sum_exp(row, V);
      greedy = greedy && argmax(row, V) == it.target[(size_t)j];
    }
    total_ll += ll;
    r.correct += greedy;
    ++r.items;
    if (progress) progress(r.items, (int64_t)items.size());
  }
  r.accuracy = r.items ? (double)r.correct / (double)r.items : 0.0;
  r.perplexity = r.items ? std::exp(-total_ll / (double)r.items) : 0.0;
  r.seconds = seconds_since(t0);
  return r;
}

}  // namespace rwkv
