#include "engine/model.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "engine/common/fp16.h"
#include "engine/models/blocks.h"
#include "engine/models/head.h"

namespace rwkv {

using detail::LayerWeights;
using detail::Linear;

Model::~Model() = default;

Result<std::shared_ptr<Model>> Model::load(const std::string& path, const LoadOptions& opt) {
  Result<ModelFile> mf = open_model_file(path);
  if (!mf.ok()) return mf.status();
  return from_file(std::move(mf).value(), opt);
}

Result<std::shared_ptr<Model>> Model::from_file(ModelFile mf, const LoadOptions& opt) {
  std::shared_ptr<Model> m(new Model());
  m->mf_ = std::move(mf);
  m->hp_ = m->mf_.hparams;
  Status st = m->build(opt);
  if (!st.ok()) return st;
  return m;
}

namespace {

// Builds the engine's view of one tensor. Vectors become f32 copies; matrices stay in place
// (any weight type) unless they must be dequantised. With a weight store (`src` set, issue 7)
// nothing is read through the file's map: vectors and resident matrices are read with pread
// into memory the model owns, and the matrices in `streamed` keep a view of the map that is
// only used for its shape and type (their rows come from the caches).
class Binder {
 public:
  Binder(const ModelFile& mf, std::vector<std::vector<float>>& owned, bool dequantize,
         const store::TensorSource* src = nullptr, const std::set<std::string>* streamed = nullptr,
         std::vector<store::AnonBuffer>* resident = nullptr)
      : mf_(mf), owned_(owned), dequantize_(dequantize), src_(src), streamed_(streamed), resident_(resident) {}

  Status vec(const std::string& name, const float** out) {
    const TensorRef* t = mf_.find(name);
    if (t == nullptr) return Status::Corruption(mf_.path + ": tensor '" + name + "' is missing");
    const uint8_t* data = t->data;
    std::vector<uint8_t> tmp;
    if (src_ != nullptr) {
      tmp.resize(t->nbytes);
      Status st = src_->read(*t, 0, t->nbytes, tmp.data());
      if (!st.ok()) return st;
      data = tmp.data();
    }
    owned_.emplace_back((size_t)t->n_elements());
    dequantize_row(t->type, data, owned_.back().data(), t->n_elements());
    *out = owned_.back().data();
    return Status::OK();
  }

  // A per-head vector (n elements) repeated over each head's S channels.
  Status vec_per_head(const std::string& name, int64_t S, const float** out) {
    const float* v = nullptr;
    Status st = vec(name, &v);
    if (!st.ok()) return st;
    const int64_t n = mf_.find(name)->n_elements();
    std::vector<float> wide((size_t)(n * S));
    for (int64_t h = 0; h < n; ++h) std::fill(wide.begin() + h * S, wide.begin() + (h + 1) * S, v[h]);
    owned_.push_back(std::move(wide));
    *out = owned_.back().data();
    return Status::OK();
  }

  // A matrix W[rows, cols] (ggml dims {cols, rows}); a 3-D tensor gives slice `slice`.
  Status mat(const std::string& name, kern::MatView* out, int64_t slice = -1) {
    const TensorRef* t = mf_.find(name);
    if (t == nullptr) return Status::Corruption(mf_.path + ": tensor '" + name + "' is missing");
    kern::MatView v;
    v.type = t->type;
    v.cols = t->ne[0];
    v.rows = t->ne[1];
    const uint8_t* base = t->data;
    if (src_ != nullptr && (streamed_ == nullptr || streamed_->count(name) == 0)) {
      Result<const uint8_t*> copy = resident_copy(*t);
      if (!copy.ok()) return copy.status();
      base = copy.value();
    }
    if (slice >= 0) base += (size_t)slice * dtype_row_bytes(t->type, v.cols) * (size_t)v.rows;
    v.data = base;
    const bool quant = v.type != DType::kF32 && v.type != DType::kF16 && v.type != DType::kQ8_0;
    // A streamed tensor keeps its file type (the store reads its rows as they are).
    const bool in_store = src_ != nullptr && streamed_ != nullptr && streamed_->count(name) != 0;
    if (dequantize_ && !in_store && (quant || v.type == DType::kQ8_0)) {
      owned_.emplace_back((size_t)(v.rows * v.cols));
      float* dst = owned_.back().data();
      for (int64_t r = 0; r < v.rows; ++r) dequantize_row(v.type, v.row(r), dst + r * v.cols, v.cols);
      v.type = DType::kF32;
      v.data = dst;
    }
    *out = v;
    return Status::OK();
  }

  // A projection: the dense tensor `dense_name` or, when it is absent, the factors
  // `<base>.lr_a` and `<base>.lr_b` (base = dense_name without ".weight").
  Status lin(const std::string& dense_name, Linear* out) {
    std::string base = dense_name;
    const std::string suffix = ".weight";
    if (base.size() > suffix.size() && base.compare(base.size() - suffix.size(), suffix.size(), suffix) == 0) {
      base.resize(base.size() - suffix.size());
    }
    out->name = base;
    if (mf_.find(dense_name) != nullptr || mf_.find(base + ".lr_a") == nullptr) {
      if (streamed_ != nullptr && streamed_->count(dense_name) != 0) {
        out->w_file = mf_.find(dense_name);
        lins_.push_back(out);
      }
      return mat(dense_name, &out->w);
    }
    if (streamed_ != nullptr && streamed_->count(base + ".lr_a") != 0) out->a_file = mf_.find(base + ".lr_a");
    if (streamed_ != nullptr && streamed_->count(base + ".lr_b") != 0) out->b_file = mf_.find(base + ".lr_b");
    if (out->w_file != nullptr || out->a_file != nullptr || out->b_file != nullptr) lins_.push_back(out);
    Status st = mat(base + ".lr_a", &out->a);
    if (!st.ok()) return st;
    st = mat(base + ".lr_b", &out->b);
    if (!st.ok()) return st;
    if (out->a.rows != out->b.cols) {
      return Status::Corruption(mf_.path + ": tensor '" + base + ".lr_b' has " + std::to_string(out->b.cols) +
                                " columns but '" + base + ".lr_a' has rank " + std::to_string(out->a.rows));
    }
    return Status::OK();
  }

 private:
  // Tensor t read whole into an anonymous buffer the model keeps (once per tensor: the v6
  // time_maa_w2 slices share one copy).
  Result<const uint8_t*> resident_copy(const TensorRef& t) {
    auto it = copies_.find(t.name);
    if (it != copies_.end()) return it->second;
    store::AnonBuffer buf(t.nbytes);
    if (!buf.ok()) return Status::ResourceExhausted(mf_.path + ": tensor '" + t.name + "': out of memory");
    Status st = src_->read(t, 0, t.nbytes, buf.data());
    if (!st.ok()) return st;
    const uint8_t* p = buf.data();
    resident_->push_back(std::move(buf));
    copies_[t.name] = p;
    return p;
  }

  const ModelFile& mf_;
  std::vector<std::vector<float>>& owned_;
  bool dequantize_;
  const store::TensorSource* src_;
 public:
  std::vector<Linear*> lins_;  // projections with a streamed tensor (their stream is set later)
 private:
  const std::set<std::string>* streamed_;
  std::vector<store::AnonBuffer>* resident_;
  std::map<std::string, const uint8_t*> copies_;
};

// A metadata number, or `fallback` when the key is absent or not a number.
double meta_number(const ModelFile& mf, const std::string& key, double fallback) {
  auto it = mf.metadata.find(key);
  if (it == mf.metadata.end()) return fallback;
  char* end = nullptr;
  const double v = std::strtod(it->second.c_str(), &end);
  return end != it->second.c_str() ? v : fallback;
}

// The sparse channel mix of layer l (issue 6) when the file stores blocks.l.ffn.value_t.weight:
// W_v^T, the optional 1-bit key copy and MLP predictor, and q / τ from the metadata or `opt`.
Status bind_ffn_sparse(Binder& b, const ModelFile& mf, const Hparams& hp, const LoadOptions& opt, int64_t l,
                       detail::FfnSparse* sp) {
  const std::string p = "blocks." + std::to_string(l) + ".ffn.";
  Status st = b.mat(p + "value_t.weight", &sp->value_t);
  if (!st.ok()) return st;
  if (!kern::sparse_supports(sp->value_t.type)) {
    return Status::Unsupported(mf.path + ": tensor '" + p + "value_t.weight' is " + dtype_name(sp->value_t.type) +
                               "; the sparse channel mix reads f32, f16, q8_0 or i8r");
  }
  if (mf.find(p + "key.sign") != nullptr) {
    st = b.mat(p + "key.sign", &sp->sign);
    if (!st.ok()) return st;
  }
  if (mf.find(p + "pred.w1") != nullptr) {
    st = b.mat(p + "pred.w1", &sp->w1);
    if (st.ok()) st = b.mat(p + "pred.w2", &sp->w2);
    if (!st.ok()) return st;
  }
  const std::string m = "rwkv_edge.ffn." + std::to_string(l) + ".";
  const int64_t F = hp.n_ffn;
  double q = opt.ffn_q >= 0 ? opt.ffn_q : meta_number(mf, m + "q", 0.0);
  if (sp->sign.data == nullptr && q > 0.0 && q < 1.0) q = 1.0;  // no 1-bit copy: only the MLP (if any)
  sp->n_top = F - (int64_t)std::llround(std::min(1.0, std::max(0.0, q)) * (double)F);
  double tau = opt.ffn_mlp_threshold > 0 ? opt.ffn_mlp_threshold : meta_number(mf, m + "mlp_threshold", 0.7);
  if (sp->w1.data == nullptr || !(tau > 0.0 && tau < 1.0)) {
    sp->w1 = sp->w2 = kern::MatView{};
    tau = 0.0;
  }
  sp->logit_tau = tau > 0.0 ? (float)std::log(tau / (1.0 - tau)) : 0.0f;
  // Neither predictor left (q = 1 without the MLP): keep every neuron rather than none.
  if (sp->w1.data == nullptr && sp->n_top == 0) sp->n_top = F;
  sp->expected_active = sp->n_top >= F ? 1.0 : meta_number(mf, m + "active", 1.0);
  if (opt.ffn_q >= 0 || opt.ffn_mlp_threshold > 0) {
    sp->expected_active = sp->n_top >= F ? 1.0 : std::max((double)sp->n_top / (double)F, sp->expected_active);
  }
  sp->enabled = true;
  return Status::OK();
}

// The tensors a weight store streams instead of holding whole (issue 7): the embedding, a
// clustered head's rows, and each sparse FFN layer's W_v^T and W_k (W_k only when the sparse
// kernels read its type; otherwise it is resident and computed whole).
// With LoadOptions::dequantize only f32/f16 FFN matrices are streamed (the others are used
// dequantised, which the row caches do not do).
std::set<std::string> streamed_tensors(const ModelFile& mf, const Hparams& hp, bool dequantize) {
  auto ok_type = [dequantize](DType t) { return !dequantize || t == DType::kF32 || t == DType::kF16; };
  std::set<std::string> s{"emb.weight"};
  if (ClusteredHead::present(mf)) s.insert("head.weight");
  for (int64_t l = 0; l < hp.n_layer; ++l) {
    const std::string p = "blocks." + std::to_string(l) + ".ffn.";
    const TensorRef* v = mf.find(p + "value_t.weight");
    if (v == nullptr || !ok_type(v->type)) continue;
    s.insert(p + "value_t.weight");
    const TensorRef* k = mf.find(p + "key.weight");
    if (k != nullptr && kern::sparse_supports(k->type) && ok_type(k->type)) s.insert(p + "key.weight");
  }
  return s;
}

// What the planner needs to know about the model under a weight store.
store::StoreLayout store_layout(const ModelFile& mf, const Hparams& hp, const LoadOptions& opt,
                                const std::set<std::string>& streamed) {
  store::StoreLayout L;
  const int64_t C = hp.n_embd, F = hp.n_ffn, V = hp.n_vocab;
  L.n_vocab = V;
  for (const TensorRef& t : mf.tensors) {
    if (streamed.count(t.name) != 0) continue;
    int non_unit = 0;
    for (int d = 0; d < 4; ++d) non_unit += t.ne[d] > 1;
    // Vectors become f32 copies; matrices are read as they are, or dequantised to f32.
    const bool f32_copy = non_unit <= 1 || (opt.dequantize && t.type != DType::kF32 && t.type != DType::kF16);
    L.resident_bytes += f32_copy ? (size_t)t.n_elements() * sizeof(float) : t.nbytes;
  }
  if (const TensorRef* emb = mf.find("emb.weight")) L.emb_row_bytes = dtype_row_bytes(emb->type, emb->ne[0]);
  for (int64_t l = 0; l < hp.n_layer; ++l) {
    const std::string p = "blocks." + std::to_string(l) + ".ffn.";
    const TensorRef* v = mf.find(p + "value_t.weight");
    if (v == nullptr) continue;
    store::StoreLayout::FfnLayer f;
    f.layer = l;
    f.n_ffn = v->ne[1];
    f.neuron_bytes = dtype_row_bytes(v->type, v->ne[0]);
    if (streamed.count(p + "key.weight") != 0) {
      const TensorRef* k = mf.find(p + "key.weight");
      f.neuron_bytes += dtype_row_bytes(k->type, k->ne[0]);
    }
    const std::string m = "rwkv_edge.ffn." + std::to_string(l) + ".";
    f.expected_active = std::clamp(meta_number(mf, m + "active", 1.0), 0.0, 1.0);
    if (opt.ffn_q >= 0) f.expected_active = std::max(f.expected_active, 1.0 - std::min(1.0, opt.ffn_q));
    L.ffn.push_back(f);
  }
  if (ClusteredHead::present(mf)) {
    const TensorRef* h = mf.find("head.weight");
    if (h != nullptr) {
      L.head_bytes = h->nbytes;
      L.largest_cluster_bytes = h->nbytes;  // unless the offsets say better
      const size_t row = dtype_row_bytes(h->type, h->ne[0]);
      std::vector<int32_t> off;
      if (read_int_tensor(mf, "head.cluster.offsets", 0, V, &off).ok() && off.size() >= 2) {
        int64_t largest = 0;
        for (size_t c = 0; c + 1 < off.size(); ++c) largest = std::max<int64_t>(largest, off[c + 1] - off[c]);
        L.largest_cluster_bytes = (size_t)largest * row;
      }
      L.head_row_fraction = opt.head_p_min < 0 ? std::clamp(meta_number(mf, kHeadRowFractionKey, 1.0), 0.0, 1.0) : 1.0;
      // The clustered head's token map, offsets and log sizes (and the per-token prior).
      L.resident_bytes += (size_t)V * sizeof(int32_t) + off.size() * 3 * sizeof(float);
      if (mf.find("head.cluster.log_prior") != nullptr) L.resident_bytes += (size_t)V * sizeof(float);
    }
  }
  // Dense matrices of the projections (and a dense head) may be streamed: 2-D tensors named
  // *.weight, *.lr_a, *.lr_b other than the ones above, the cluster head and the predictors.
  for (const TensorRef& t : mf.tensors) {
    if (streamed.count(t.name) != 0 || t.n_dims < 2 || t.ne[1] < 2 || t.ne[2] > 1) continue;
    auto ends = [&](const std::string& suf) {
      return t.name.size() > suf.size() && t.name.compare(t.name.size() - suf.size(), suf.size(), suf) == 0;
    };
    if (!(ends(".weight") || ends(".lr_a") || ends(".lr_b"))) continue;
    if (opt.dequantize && t.type != DType::kF32 && t.type != DType::kF16) continue;  // used dequantised
    if (t.name == "head.cluster.weight" || t.name.find(".ffn.pred.") != std::string::npos ||
        t.name.find(".ffn.key.sign") != std::string::npos) {
      continue;
    }
    L.streamable.emplace_back(t.name, t.nbytes);
  }
  L.state_bytes = State(hp).size_bytes();
  // Scratch of forward_chunk per row: the 16 T x width buffers of detail::Scratch (time mix
  // and channel mix, about 18 C + 5 F floats), plus the logits the callers keep (2 V floats).
  L.scratch_bytes_per_row = sizeof(float) * (size_t)(18 * C + 5 * F);
  L.scratch_bytes_fixed = sizeof(float) * (size_t)(2 * V);
  return L;
}

}  // namespace

Status Model::build(const LoadOptions& opt) {
  // Under a memory budget, plan first: a budget too small is refused before anything is read.
  std::set<std::string> streamed;
  if (opt.mem_budget > 0) {
    source_ = std::make_unique<store::TensorSource>(store::TensorSource::from(mf_));
    streamed = streamed_tensors(mf_, hp_, opt.dequantize);
    store::PlanRequest req;
    req.budget = opt.mem_budget;
    req.states = std::max<int64_t>(1, opt.budget_states);
    req.chunk_rows = std::max<int64_t>(1, opt.budget_chunk_rows);
    Result<store::MemoryPlan> plan = store::plan_memory(store_layout(mf_, hp_, opt, streamed), req);
    if (!plan.ok()) return plan.status().with_context(mf_.path);
    plan_ = std::move(plan).value();
    mem_budget_ = opt.mem_budget;
    for (const std::string& name : plan_.streamed) streamed.insert(name);
    max_chunk_rows = req.chunk_rows;
  }
  Binder b(mf_, owned_, opt.dequantize, source_.get(), &streamed, &resident_);
  // Vectors are bound before any vector push_back could move them: owned_ holds vectors of
  // floats, and moving the outer vector keeps inner buffers, so pointers stay valid.
  Status st;
  auto check = [&](Status s) {
    if (st.ok() && !s.ok()) st = s;
  };
  check(b.mat("emb.weight", &emb_));
  head_ = std::make_unique<Linear>();
  check(b.lin("head.weight", head_.get()));
  if (ClusteredHead::present(mf_)) {
    // head.weight's rows are grouped by cluster: only the clustered head may read them.
    ClusterHeadSettings hs;
    hs.p_min = (float)opt.head_p_min;
    hs.k_min = opt.head_k_min;
    hs.k_max = opt.head_k_max;
    hs.use_prior = !opt.head_uniform_tail;
    Result<std::unique_ptr<ClusteredHead>> ch = ClusteredHead::from_file(mf_, hs);
    if (!ch.ok()) return ch.status();
    cluster_head_ = std::move(ch).value();
  }
  check(b.vec("blocks.0.ln0.weight", &ln0_w_));
  check(b.vec("blocks.0.ln0.bias", &ln0_b_));
  check(b.vec("ln_out.weight", &ln_out_w_));
  check(b.vec("ln_out.bias", &ln_out_b_));
  layers_.resize((size_t)hp_.n_layer);
  const RwkvVersion ver = hp_.version;
  for (int64_t l = 0; l < hp_.n_layer; ++l) {
    LayerWeights& w = layers_[(size_t)l];
    const std::string p = "blocks." + std::to_string(l) + ".";
    check(b.vec(p + "ln1.weight", &w.ln1_w));
    check(b.vec(p + "ln1.bias", &w.ln1_b));
    check(b.vec(p + "ln2.weight", &w.ln2_w));
    check(b.vec(p + "ln2.bias", &w.ln2_b));
    check(b.lin(p + "att.receptance.weight", &w.att_r));
    check(b.lin(p + "att.key.weight", &w.att_k));
    check(b.lin(p + "att.value.weight", &w.att_v));
    check(b.lin(p + "att.output.weight", &w.att_o));
    check(b.lin(p + "ffn.key.weight", &w.ffn_k));
    if (mf_.find(p + "ffn.value_t.weight") != nullptr) {
      check(bind_ffn_sparse(b, mf_, hp_, opt, l, &w.ffn_sparse));
    } else {
      check(b.lin(p + "ffn.value.weight", &w.ffn_v));
    }
    if (ver != RwkvVersion::kV4) {
      check(b.vec(p + "att.ln_x.weight", &w.ln_x_w));
      check(b.vec(p + "att.ln_x.bias", &w.ln_x_b));
    }
    switch (ver) {
      case RwkvVersion::kV4:
      case RwkvVersion::kV5_1:
      case RwkvVersion::kV5_2:
        check(b.vec(p + "att.time_mix_k", &w.mix_k));
        check(b.vec(p + "att.time_mix_v", &w.mix_v));
        check(b.vec(p + "att.time_mix_r", &w.mix_r));
        check(b.vec(p + "ffn.time_mix_k", &w.ffn_mix_k));
        check(b.vec(p + "ffn.time_mix_r", &w.ffn_mix_r));
        check(b.lin(p + "ffn.receptance.weight", &w.ffn_r));
        if (ver == RwkvVersion::kV4) {
          check(b.vec(p + "att.time_decay", &w.decay));
          check(b.vec(p + "att.time_first", &w.first));
        } else if (ver == RwkvVersion::kV5_1) {
          check(b.vec_per_head(p + "att.time_decay", hp_.head_size, &w.decay));
          // rwkv.cpp stores exp(u); the recurrence wants the bonus factor itself.
          check(b.vec_per_head(p + "att.time_first", hp_.head_size, &w.first));
        } else {
          check(b.vec(p + "att.time_mix_g", &w.mix_g));
          check(b.lin(p + "att.gate.weight", &w.att_g));
          check(b.vec(p + "att.time_decay", &w.decay));
          check(b.vec(p + "att.time_faaaa", &w.first));
        }
        break;
      case RwkvVersion::kV6:
        check(b.vec(p + "att.time_maa_x", &w.mix_x));
        check(b.vec(p + "att.time_maa_w", &w.mix_w));
        check(b.vec(p + "att.time_maa_k", &w.mix_k));
        check(b.vec(p + "att.time_maa_v", &w.mix_v));
        check(b.vec(p + "att.time_maa_r", &w.mix_r));
        check(b.vec(p + "att.time_maa_g", &w.mix_g));
        check(b.lin(p + "att.time_maa_w1", &w.maa_w1));
        for (int i = 0; i < 5; ++i) check(b.mat(p + "att.time_maa_w2", &w.maa_w2[i], i));
        check(b.vec(p + "att.time_decay", &w.decay));
        check(b.lin(p + "att.time_decay_w1", &w.decay_w1));
        check(b.lin(p + "att.time_decay_w2", &w.decay_w2));
        check(b.vec(p + "att.time_faaaa", &w.first));
        check(b.lin(p + "att.gate.weight", &w.att_g));
        check(b.vec(p + "ffn.time_maa_k", &w.ffn_mix_k));
        check(b.vec(p + "ffn.time_maa_r", &w.ffn_mix_r));
        check(b.lin(p + "ffn.receptance.weight", &w.ffn_r));
        break;
      case RwkvVersion::kV7: {
        const float* x6 = nullptr;
        check(b.vec(p + "att.x_rwkvag", &x6));
        if (x6 != nullptr) {
          // att.x_rwkvag [C,1,6]: the six mix vectors in order r, w, k, v, a, g.
          const int64_t C = hp_.n_embd;
          w.x_r = x6;
          w.x_w = x6 + C;
          w.x_k = x6 + 2 * C;
          w.x_v = x6 + 3 * C;
          w.x_a = x6 + 4 * C;
          w.x_g = x6 + 5 * C;
        }
        check(b.vec(p + "att.w0", &w.w0));
        check(b.lin(p + "att.w1", &w.w1));
        check(b.lin(p + "att.w2", &w.w2));
        check(b.vec(p + "att.a0", &w.a0));
        check(b.lin(p + "att.a1", &w.a1));
        check(b.lin(p + "att.a2", &w.a2));
        if (l > 0) {
          check(b.vec(p + "att.v0", &w.v0));
          check(b.lin(p + "att.v1", &w.v1));
          check(b.lin(p + "att.v2", &w.v2));
        }
        check(b.lin(p + "att.g1", &w.g1));
        check(b.lin(p + "att.g2", &w.g2));
        check(b.vec(p + "att.k_k", &w.k_k));
        check(b.vec(p + "att.k_a", &w.k_a));
        check(b.vec(p + "att.r_k", &w.r_k));
        check(b.vec(p + "ffn.x_k", &w.ffn_mix_k));
        break;
      }
    }
  }
  if (!st.ok() || mem_budget_ == 0) return st;
  return build_store(streamed, b.lins_);
}

Status Model::build_store(const std::set<std::string>& streamed, const std::vector<Linear*>& streamed_lins) {
  const store::TensorSource* src = source_.get();
  if (!streamed_lins.empty()) {
    matrix_stream_ = std::make_unique<store::MatrixStream>(src, plan_.stream_buffer_bytes);
    for (Linear* lin : streamed_lins) lin->stream = matrix_stream_.get();
  }
  emb_cache_ = std::make_unique<store::EmbeddingCache>(src, *mf_.find("emb.weight"), plan_.emb_rows);
  size_t i = 0;
  for (int64_t l = 0; l < hp_.n_layer; ++l) {
    detail::FfnSparse& sp = layers_[(size_t)l].ffn_sparse;
    if (!sp.enabled) continue;
    const std::string p = "blocks." + std::to_string(l) + ".ffn.";
    const TensorRef* key = streamed.count(p + "key.weight") != 0 ? mf_.find(p + "key.weight") : nullptr;
    if (i >= plan_.ffn_neurons.size()) return Status::Internal("memory plan: fewer FFN layers than the model has");
    ffn_caches_.push_back(
        std::make_unique<store::NeuronCache>(src, key, *mf_.find(p + "value_t.weight"), plan_.ffn_neurons[i++]));
    sp.cache = ffn_caches_.back().get();
  }
  if (cluster_head_ != nullptr) {
    head_cache_ = std::make_unique<store::ClusterCache>(src, *mf_.find("head.weight"), cluster_head_->offsets(),
                                                        plan_.head_cache_bytes);
    Status st = cluster_head_->use_store(*src, head_cache_.get(), &resident_);
    if (!st.ok()) return st;
  }
  // Pages of the map touched while loading (header, tokenizer, head offsets) leave the
  // resident set; from now on the file is only read with pread.
  src->release_pages();
  return Status::OK();
}

store::StoreStats Model::store_stats() const {
  store::StoreStats s;
  if (mem_budget_ == 0) return s;
  s.enabled = true;
  s.budget = mem_budget_;
  s.resident_bytes = 0;
  for (const store::AnonBuffer& b : resident_) s.resident_bytes += b.size();
  if (emb_cache_) s.emb = emb_cache_->stats();
  for (const auto& c : ffn_caches_) s.ffn += c->stats();
  if (head_cache_) s.head = head_cache_->stats();
  if (matrix_stream_) s.dense = matrix_stream_->stats();
  return s;
}

void Model::reset_store_stats() const {
  if (emb_cache_) emb_cache_->reset_stats();
  for (const auto& c : ffn_caches_) c->reset_stats();
  if (head_cache_) head_cache_->reset_stats();
  if (matrix_stream_) matrix_stream_->reset_stats();
}

size_t Model::weight_bytes_per_token() const {
  // Everything but the embedding table, of which one row is read.
  size_t total = 0;
  for (const TensorRef& t : mf_.tensors) total += t.nbytes;
  const TensorRef* emb = mf_.find("emb.weight");
  if (emb != nullptr) total = total - emb->nbytes + emb->nbytes / (size_t)emb->ne[1];
  // A clustered head reads only the chosen clusters' rows of head.weight: count the expected
  // fraction (measured on held-out calibration rows at compression).
  const TensorRef* head = mf_.find("head.weight");
  if (cluster_head_ != nullptr && head != nullptr) {
    total -= (size_t)((1.0 - cluster_head_->expected_row_fraction()) * (double)head->nbytes);
  }
  // A sparse channel mix reads only the predicted-active rows of W_k and W_v^T: count the
  // expected active fraction (measured on held-out calibration rows at compression).
  for (int64_t l = 0; l < (int64_t)layers_.size(); ++l) {
    const detail::FfnSparse& sp = layers_[(size_t)l].ffn_sparse;
    if (!sp.enabled) continue;
    const std::string p = "blocks." + std::to_string(l) + ".ffn.";
    const TensorRef* k = mf_.find(p + "key.weight");
    const TensorRef* v = mf_.find(p + "value_t.weight");
    const size_t kv = (k != nullptr ? k->nbytes : 0) + (v != nullptr ? v->nbytes : 0);
    total -= (size_t)((1.0 - sp.expected_active) * (double)kv);
  }
  return total;
}

Status Model::eval(State& st, const int32_t* tokens, size_t n, float* logits) const {
  Segment seg;
  seg.state = &st;
  seg.tokens = tokens;
  seg.n_tokens = (int64_t)n;
  seg.logits_mode = logits != nullptr ? LogitsMode::kLast : LogitsMode::kNone;
  seg.logits = logits;
  return forward(&seg, 1);
}

Status Model::forward(Segment* segs, size_t n_segs) const {
  for (size_t i = 0; i < n_segs; ++i) {
    const Segment& s = segs[i];
    if (s.state == nullptr || !s.state->compatible_with(hp_)) {
      return Status::InvalidArgument("segment " + std::to_string(i) + ": state does not belong to this model");
    }
    if (s.n_tokens <= 0 || s.tokens == nullptr) return Status::InvalidArgument("segment " + std::to_string(i) + ": no tokens");
    if (s.logits_mode != LogitsMode::kNone && s.logits == nullptr) {
      return Status::InvalidArgument("segment " + std::to_string(i) + ": logits requested without a buffer");
    }
    for (int64_t t = 0; t < s.n_tokens; ++t) {
      if (s.tokens[t] < 0 || s.tokens[t] >= hp_.n_vocab) {
        return Status::InvalidArgument("token id " + std::to_string(s.tokens[t]) + " is outside the vocabulary [0, " +
                                       std::to_string(hp_.n_vocab) + ")");
      }
    }
  }
  // Split into chunks of at most max_chunk_rows rows; a long segment spans several chunks.
  std::vector<Segment> chunk;
  int64_t rows = 0;
  auto flush = [&]() -> Status {
    if (chunk.empty()) return Status::OK();
    Status st = forward_chunk(chunk.data(), chunk.size());
    chunk.clear();
    rows = 0;
    return st;
  };
  const int64_t cap = std::max<int64_t>(1, max_chunk_rows);
  for (size_t i = 0; i < n_segs; ++i) {
    const Segment& s = segs[i];
    int64_t done = 0;
    while (done < s.n_tokens) {
      if (rows == cap) {
        Status st = flush();
        if (!st.ok()) return st;
      }
      const int64_t take = std::min(cap - rows, s.n_tokens - done);
      Segment part = s;
      part.tokens = s.tokens + done;
      part.n_tokens = take;
      const bool is_end = done + take == s.n_tokens;
      if (s.logits_mode == LogitsMode::kAll) {
        part.logits = s.logits + done * hp_.n_vocab;
      } else if (s.logits_mode == LogitsMode::kLast && !is_end) {
        part.logits_mode = LogitsMode::kNone;
      }
      chunk.push_back(part);
      rows += take;
      done += take;
    }
  }
  return flush();
}

Status Model::forward_chunk(Segment* segs, size_t n_segs) const {
  const int64_t C = hp_.n_embd, V = hp_.n_vocab;
  detail::Rows rows;
  for (size_t i = 0; i < n_segs; ++i) rows.T += segs[i].n_tokens;
  rows.state.resize((size_t)rows.T);
  rows.first.resize((size_t)rows.T);
  rows.last.resize((size_t)rows.T);
  std::vector<int32_t> tokens((size_t)rows.T);
  {
    int64_t t = 0;
    for (size_t i = 0; i < n_segs; ++i) {
      for (int64_t j = 0; j < segs[i].n_tokens; ++j, ++t) {
        rows.state[(size_t)t] = segs[i].state;
        rows.first[(size_t)t] = j == 0;
        rows.last[(size_t)t] = j == segs[i].n_tokens - 1;
        tokens[(size_t)t] = segs[i].tokens[j];
      }
    }
  }
  const int64_t T = rows.T;
  // Per calling thread and kept between passes: the buffers stay at the largest chunk seen
  // (at most max_chunk_rows rows, which the memory planner already counts), so a decode step
  // neither allocates nor zeroes them. Every buffer is written before it is read within a pass,
  // as it already had to be from the second layer on.
  thread_local detail::Scratch tls_scratch;
  detail::Scratch& s = tls_scratch;
  s.probe = probe_;
  s.error = Status::OK();
  float* x = s.get(14, (size_t)(T * C));
  float* tmp = s.get(15, (size_t)(T * C));
  std::vector<float> v_first;
  if (hp_.version == RwkvVersion::kV7) v_first.resize((size_t)(T * C));

  // x = LN0(emb[token])
  const kern::Kernels& k = kern::kernels();
  for (int64_t t = 0; t < T; ++t) {
    if (emb_cache_ != nullptr) {
      Status st = emb_cache_->get_row(tokens[(size_t)t], tmp + t * C);
      if (!st.ok()) return st;
    } else {
      k.get_row(emb_, tokens[(size_t)t], tmp + t * C);
    }
    detail::layer_norm(tmp + t * C, x + t * C, C, ln0_w_, ln0_b_);
  }
  for (int64_t l = 0; l < hp_.n_layer; ++l) {
    const LayerWeights& lw = layers_[(size_t)l];
    // x += TimeMix(LN1(x))
    detail::layer_norm_rows(x, tmp, T, C, lw.ln1_w, lw.ln1_b);
    switch (hp_.version) {
      case RwkvVersion::kV4: detail::time_mix_v4(hp_, lw, rows, l, tmp, x, s); break;
      case RwkvVersion::kV5_1:
      case RwkvVersion::kV5_2: detail::time_mix_v5(hp_, lw, rows, l, tmp, x, s); break;
      case RwkvVersion::kV6: detail::time_mix_v6(hp_, lw, rows, l, tmp, x, s); break;
      case RwkvVersion::kV7: detail::time_mix_v7(hp_, lw, rows, l, tmp, x, v_first.data(), s); break;
    }
    // x += ChannelMix(LN2(x))
    detail::layer_norm_rows(x, tmp, T, C, lw.ln2_w, lw.ln2_b);
    Status st = detail::channel_mix(hp_, lw, rows, l, tmp, x, s);
    if (!st.ok()) return st;
    if (!s.error.ok()) return s.error;  // a streamed matrix could not be read
    if (hp_.rescale_every > 0 && (l + 1) % hp_.rescale_every == 0) {
      for (int64_t i = 0; i < T * C; ++i) x[i] *= 0.5f;
    }
  }
  // logits = head . LN_out(x), only for the rows that want them.
  std::vector<int64_t> want;
  std::vector<float*> dst;
  {
    int64_t t = 0;
    for (size_t i = 0; i < n_segs; ++i) {
      const Segment& sg = segs[i];
      for (int64_t j = 0; j < sg.n_tokens; ++j, ++t) {
        if (sg.logits_mode == LogitsMode::kAll) {
          want.push_back(t);
          dst.push_back(sg.logits + j * V);
        } else if (sg.logits_mode == LogitsMode::kLast && j == sg.n_tokens - 1) {
          want.push_back(t);
          dst.push_back(sg.logits);
        }
      }
    }
  }
  if (want.empty()) return Status::OK();
  const int64_t n = (int64_t)want.size();
  for (int64_t i = 0; i < n; ++i) detail::layer_norm(x + want[(size_t)i] * C, tmp + i * C, C, ln_out_w_, ln_out_b_);
  if (cluster_head_ != nullptr) {
    // Clustered head: exact logits for the likely clusters, pseudo-logits for the rest,
    // written straight into the callers' buffers in token order (engine/models/head.h).
    Status st = cluster_head_->compute_checked(tmp, n, dst.data());
    if (!st.ok()) return st;
    if (s.probe != nullptr) {
      std::vector<float> out((size_t)(n * V));
      for (int64_t i = 0; i < n; ++i) std::memcpy(out.data() + i * V, dst[(size_t)i], (size_t)V * sizeof(float));
      detail::probe_product(s, "head", tmp, C, n, C, out.data(), V);
    }
    return Status::OK();
  }
  if (n == 1) {
    detail::linear(*head_, tmp, 1, dst[0], s);
    return s.error;
  }
  // Several rows: one gemm into a staging block (not zeroed: the gemm writes all of it), then
  // each row to its caller's buffer.
  std::unique_ptr<float[]> out(new float[(size_t)(n * V)]);
  detail::linear(*head_, tmp, n, out.get(), s);
  if (!s.error.ok()) return s.error;
  for (int64_t i = 0; i < n; ++i) std::memcpy(dst[(size_t)i], out.get() + i * V, (size_t)V * sizeof(float));
  return Status::OK();
}

}  // namespace rwkv
