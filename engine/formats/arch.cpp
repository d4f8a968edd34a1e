// Version detection, hyper-parameter inference and shape checks: one table per RWKV version.
//
// Adding a version = one row group in tensor_specs() + detection in detect_version().
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "engine/formats/model_file.h"

namespace rwkv {
namespace {

// How a tensor's shape is checked. Vectors are checked by element count only, because
// rwkv.cpp keeps unit dims ([1,S,H], [C,1,1]) that other writers squeeze.
enum class Kind { kVector, kMatrix, kMatrix3 };
enum class Dim { kC, kF, kV, kH, kS, kD5, kDmaa, kDdecay, kDw, kDa, kDv, kDg, kOne, kSix, kFive };

struct Spec {
  const char* suffix;  // after "blocks.N." (or the full name for globals)
  Kind kind;
  Dim d0, d1, d2;      // vectors: element count = d0*d1 (d1 = kOne unless given)
  bool skip_layer0 = false;  // v7 v0/v1/v2 do not exist in layer 0
};

struct Dims {
  int64_t C, F, V, H, S, Dmaa, Ddecay, Dw, Da, Dv, Dg;
  int64_t get(Dim d) const {
    switch (d) {
      case Dim::kC: return C;
      case Dim::kF: return F;
      case Dim::kV: return V;
      case Dim::kH: return H;
      case Dim::kS: return S;
      case Dim::kD5: return 5 * Dmaa;
      case Dim::kDmaa: return Dmaa;
      case Dim::kDdecay: return Ddecay;
      case Dim::kDw: return Dw;
      case Dim::kDa: return Da;
      case Dim::kDv: return Dv;
      case Dim::kDg: return Dg;
      case Dim::kOne: return 1;
      case Dim::kSix: return 6;
      case Dim::kFive: return 5;
    }
    return 0;
  }
};

#define VEC(name, a) {name, Kind::kVector, Dim::a, Dim::kOne, Dim::kOne}
#define VEC2(name, a, b) {name, Kind::kVector, Dim::a, Dim::b, Dim::kOne}
// MAT(name, in, out): W[out, in], ggml dims {in, out}.
#define MAT(name, in, out) {name, Kind::kMatrix, Dim::in, Dim::out, Dim::kOne}

const std::vector<Spec> kGlobal = {
    MAT("emb.weight", kC, kV),         VEC("blocks.0.ln0.weight", kC), VEC("blocks.0.ln0.bias", kC),
    VEC("ln_out.weight", kC),          VEC("ln_out.bias", kC),         MAT("head.weight", kC, kV),
};

const std::vector<Spec> kCommonLayer = {
    VEC("ln1.weight", kC), VEC("ln1.bias", kC), VEC("ln2.weight", kC), VEC("ln2.bias", kC),
};

const std::vector<Spec> kFfnV4 = {
    MAT("ffn.key.weight", kC, kF), MAT("ffn.value.weight", kF, kC), MAT("ffn.receptance.weight", kC, kC),
};

const std::vector<Spec> kAttV4 = {
    VEC("att.time_mix_k", kC), VEC("att.time_mix_v", kC), VEC("att.time_mix_r", kC),
    VEC("att.time_first", kC), VEC("att.time_decay", kC),
    MAT("att.key.weight", kC, kC), MAT("att.value.weight", kC, kC),
    MAT("att.receptance.weight", kC, kC), MAT("att.output.weight", kC, kC),
    VEC("ffn.time_mix_k", kC), VEC("ffn.time_mix_r", kC),
};

const std::vector<Spec> kAttV5_1 = {
    VEC("att.time_mix_k", kC), VEC("att.time_mix_v", kC), VEC("att.time_mix_r", kC),
    VEC("att.time_first", kH), VEC("att.time_decay", kH),
    VEC("att.ln_x.weight", kC), VEC("att.ln_x.bias", kC),
    MAT("att.key.weight", kC, kC), MAT("att.value.weight", kC, kC),
    MAT("att.receptance.weight", kC, kC), MAT("att.output.weight", kC, kC),
    VEC("ffn.time_mix_k", kC), VEC("ffn.time_mix_r", kC),
};

const std::vector<Spec> kAttV5_2 = {
    VEC("att.time_mix_k", kC), VEC("att.time_mix_v", kC), VEC("att.time_mix_r", kC),
    VEC("att.time_mix_g", kC), VEC2("att.time_faaaa", kS, kH), VEC2("att.time_decay", kS, kH),
    VEC("att.ln_x.weight", kC), VEC("att.ln_x.bias", kC),
    MAT("att.key.weight", kC, kC), MAT("att.value.weight", kC, kC),
    MAT("att.receptance.weight", kC, kC), MAT("att.output.weight", kC, kC),
    MAT("att.gate.weight", kC, kC),
    VEC("ffn.time_mix_k", kC), VEC("ffn.time_mix_r", kC),
};

const std::vector<Spec> kAttV6 = {
    VEC("att.time_maa_x", kC), VEC("att.time_maa_w", kC), VEC("att.time_maa_k", kC),
    VEC("att.time_maa_v", kC), VEC("att.time_maa_r", kC), VEC("att.time_maa_g", kC),
    MAT("att.time_maa_w1", kC, kD5),
    {"att.time_maa_w2", Kind::kMatrix3, Dim::kDmaa, Dim::kC, Dim::kFive},
    VEC2("att.time_decay", kS, kH), MAT("att.time_decay_w1", kC, kDdecay),
    MAT("att.time_decay_w2", kDdecay, kC), VEC2("att.time_faaaa", kS, kH),
    MAT("att.receptance.weight", kC, kC), MAT("att.key.weight", kC, kC),
    MAT("att.value.weight", kC, kC), MAT("att.output.weight", kC, kC),
    MAT("att.gate.weight", kC, kC), VEC("att.ln_x.weight", kC), VEC("att.ln_x.bias", kC),
    VEC("ffn.time_maa_k", kC), VEC("ffn.time_maa_r", kC),
};

const std::vector<Spec> kAttV7 = {
    VEC2("att.x_rwkvag", kC, kSix),
    VEC("att.w0", kC), MAT("att.w1", kC, kDw), MAT("att.w2", kDw, kC),
    VEC("att.a0", kC), MAT("att.a1", kC, kDa), MAT("att.a2", kDa, kC),
    {"att.v0", Kind::kVector, Dim::kC, Dim::kOne, Dim::kOne, true},
    {"att.v1", Kind::kMatrix, Dim::kC, Dim::kDv, Dim::kOne, true},
    {"att.v2", Kind::kMatrix, Dim::kDv, Dim::kC, Dim::kOne, true},
    MAT("att.g1", kC, kDg), MAT("att.g2", kDg, kC),
    VEC("att.k_k", kC), VEC("att.k_a", kC), VEC2("att.r_k", kS, kH),
    MAT("att.receptance.weight", kC, kC), MAT("att.key.weight", kC, kC),
    MAT("att.value.weight", kC, kC), MAT("att.output.weight", kC, kC),
    VEC("att.ln_x.weight", kC), VEC("att.ln_x.bias", kC),
    VEC("ffn.x_k", kC), MAT("ffn.key.weight", kC, kF), MAT("ffn.value.weight", kF, kC),
};

#undef VEC
#undef VEC2
#undef MAT

std::vector<Spec> layer_specs(RwkvVersion v) {
  std::vector<Spec> out = kCommonLayer;
  const std::vector<Spec>* att = nullptr;
  switch (v) {
    case RwkvVersion::kV4: att = &kAttV4; break;
    case RwkvVersion::kV5_1: att = &kAttV5_1; break;
    case RwkvVersion::kV5_2: att = &kAttV5_2; break;
    case RwkvVersion::kV6: att = &kAttV6; break;
    case RwkvVersion::kV7: att = &kAttV7; break;
  }
  out.insert(out.end(), att->begin(), att->end());
  if (v != RwkvVersion::kV7) out.insert(out.end(), kFfnV4.begin(), kFfnV4.end());
  return out;
}

RwkvVersion detect_version(const ModelFile& mf) {
  if (mf.find("blocks.0.att.r_k") || mf.find("blocks.0.att.k_k")) return RwkvVersion::kV7;
  if (mf.find("blocks.0.att.time_maa_x")) return RwkvVersion::kV6;
  if (mf.find("blocks.0.att.ln_x.weight")) {
    // 5.2 has a gate (dense, or low-rank factors after `rwkv-edge compress`).
    const bool gate = mf.find("blocks.0.att.gate.weight") || mf.find("blocks.0.att.gate.lr_a");
    return gate ? RwkvVersion::kV5_2 : RwkvVersion::kV5_1;
  }
  return RwkvVersion::kV4;
}

Status tensor_error(const ModelFile& mf, const std::string& name, const std::string& what) {
  return Status::Corruption(mf.path + ": tensor '" + name + "': " + what);
}

// Reads a dimension from a tensor that must exist.
Status need(const ModelFile& mf, const std::string& name, const TensorRef** out) {
  *out = mf.find(name);
  if (*out == nullptr) {
    return Status::Corruption(mf.path + ": tensor '" + name + "' is missing (needed to read the model's shape)");
  }
  return Status::OK();
}

bool is_weight_type(DType t) {
  switch (t) {
    case DType::kF32: case DType::kF16: case DType::kQ4_0: case DType::kQ4_1:
    case DType::kQ5_0: case DType::kQ5_1: case DType::kQ8_0: case DType::kI8R: return true;
    default: return false;
  }
}

// The base name of a projection's low-rank factors: "blocks.3.att.key.weight" ->
// "blocks.3.att.key"; names without ".weight" (v7 "blocks.3.att.w1") are their own base.
std::string factor_base(const std::string& name) {
  const std::string suffix = ".weight";
  if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
    return name.substr(0, name.size() - suffix.size());
  }
  return name;
}

// The output width of matrix `name`, dense or factored (`<base>.lr_b` [out x r]); null when
// neither form is present.
const TensorRef* matrix_out_tensor(const ModelFile& mf, const std::string& name) {
  const TensorRef* t = mf.find(name);
  if (t != nullptr) return t;
  return mf.find(factor_base(name) + ".lr_b");
}

Status check_matrix_type(const ModelFile& mf, const TensorRef* t) {
  if (!is_weight_type(t->type)) {
    return tensor_error(mf, t->name, std::string("type ") + dtype_name(t->type) + " is not a weight type");
  }
  if (dtype_block_size(t->type) > 1 && t->ne[0] % dtype_block_size(t->type) != 0) {
    return tensor_error(mf, t->name, std::string("is ") + dtype_name(t->type) + " but its rows (" +
                                         std::to_string(t->ne[0]) + ") are not a multiple of " +
                                         std::to_string(dtype_block_size(t->type)));
  }
  return Status::OK();
}

// A projection W [out x in] stored as low-rank factors lr_a [r x in] (ne {in, r}) and
// lr_b [out x r] (ne {r, out}) instead of `name` (issue 6).
Status check_factors(const ModelFile& mf, const std::string& name, int64_t in, int64_t out) {
  const std::string base = factor_base(name);
  const TensorRef* a = mf.find(base + ".lr_a");
  const TensorRef* b = mf.find(base + ".lr_b");
  if (a == nullptr || b == nullptr) {
    return Status::Corruption(mf.path + ": tensor '" + (a == nullptr ? base + ".lr_a" : base + ".lr_b") +
                              "' is missing: '" + name + "' is absent, so it must be stored as the low-rank factors " +
                              base + ".lr_a and " + base + ".lr_b");
  }
  const int64_t r = a->ne[1];
  if (a->n_dims != 2 || a->ne[0] != in || r < 1 || r > std::max(in, out)) {
    return tensor_error(mf, a->name, "has shape " + a->shape_string() + ", expected [" + std::to_string(in) +
                                         ", r] with 1 <= r <= " + std::to_string(std::max(in, out)));
  }
  if (b->n_dims != 2 || b->ne[0] != r || b->ne[1] != out) {
    return tensor_error(mf, b->name, "has shape " + b->shape_string() + ", expected [" + std::to_string(r) + ", " +
                                         std::to_string(out) + "] (rank " + std::to_string(r) + " from " + a->name +
                                         ")");
  }
  Status st = check_matrix_type(mf, a);
  if (!st.ok()) return st;
  return check_matrix_type(mf, b);
}

// A 2-D tensor `name` of shape ne = {e0, e1} (W [e1 x e0]) in a weight type.
Status check_2d(const ModelFile& mf, const TensorRef* t, int64_t e0, int64_t e1) {
  if (t->n_dims > 2 || t->ne[0] != e0 || t->ne[1] != e1) {
    return tensor_error(mf, t->name, "has shape " + t->shape_string() + ", expected [" + std::to_string(e0) + ", " +
                                         std::to_string(e1) + "]");
  }
  return check_matrix_type(mf, t);
}

// The sparse channel mix of one layer (issue 6, RWKV-Lite §4), all optional: the 1-bit key
// copy ffn.key.sign (i1r, [C, F]) and the MLP predictor ffn.pred.w1 [C, H] / ffn.pred.w2 [H, F].
// (ffn.value_t.weight, W_v^T [C, F], replaces ffn.value.weight: see check_tensor.)
Status check_ffn_sparse(const ModelFile& mf, const std::string& prefix, const Dims& d) {
  const TensorRef* sign = mf.find(prefix + "ffn.key.sign");
  const TensorRef* w1 = mf.find(prefix + "ffn.pred.w1");
  const TensorRef* w2 = mf.find(prefix + "ffn.pred.w2");
  if ((sign != nullptr || w1 != nullptr) && mf.find(prefix + "ffn.value_t.weight") == nullptr) {
    return Status::Corruption(mf.path + ": tensor '" + prefix + "ffn.value_t.weight' is missing: layer has an FFN "
                              "predictor, which needs the transposed value matrix");
  }
  if (sign != nullptr) {
    if (sign->type != DType::kI1R) {
      return tensor_error(mf, sign->name, std::string("is ") + dtype_name(sign->type) + ", expected i1r");
    }
    if (sign->n_dims > 2 || sign->ne[0] != d.C || sign->ne[1] != d.F) {
      return tensor_error(mf, sign->name, "has shape " + sign->shape_string() + ", expected [" + std::to_string(d.C) +
                                              ", " + std::to_string(d.F) + "]");
    }
  }
  if ((w1 == nullptr) != (w2 == nullptr)) {
    return Status::Corruption(mf.path + ": tensor '" + prefix + (w1 == nullptr ? "ffn.pred.w1" : "ffn.pred.w2") +
                              "' is missing: the MLP predictor needs both");
  }
  if (w1 != nullptr) {
    const int64_t H = w1->ne[1];
    Status st = check_2d(mf, w1, d.C, H);
    if (st.ok()) st = check_2d(mf, w2, H, d.F);
    if (!st.ok()) return st;
  }
  return Status::OK();
}

Status check_tensor(const ModelFile& mf, const std::string& name, const Spec& s, const Dims& d) {
  const TensorRef* t = mf.find(name);
  // A sparse channel mix stores W_v transposed (neuron-major) as ffn.value_t.weight.
  const std::string value_suffix = "ffn.value.weight";
  if (t == nullptr && name.size() > value_suffix.size() &&
      name.compare(name.size() - value_suffix.size(), value_suffix.size(), value_suffix) == 0) {
    const TensorRef* vt = mf.find(name.substr(0, name.size() - value_suffix.size()) + "ffn.value_t.weight");
    if (vt != nullptr) return check_2d(mf, vt, d.get(s.d1), d.get(s.d0));
  }
  if (t == nullptr && s.kind == Kind::kMatrix && name != "emb.weight" &&
      (mf.find(factor_base(name) + ".lr_a") != nullptr || mf.find(factor_base(name) + ".lr_b") != nullptr)) {
    return check_factors(mf, name, d.get(s.d0), d.get(s.d1));
  }
  if (t == nullptr) {
    return Status::Corruption(mf.path + ": tensor '" + name + "' is missing (required by RWKV v" +
                              version_name(mf.hparams.version) + ")");
  }
  if (!is_weight_type(t->type)) {
    return tensor_error(mf, name, std::string("type ") + dtype_name(t->type) + " is not a weight type");
  }
  const int64_t e0 = d.get(s.d0), e1 = d.get(s.d1), e2 = d.get(s.d2);
  if (s.kind == Kind::kVector) {
    if (t->n_elements() != e0 * e1) {
      return tensor_error(mf, name, "has shape " + t->shape_string() + " (" + std::to_string(t->n_elements()) +
                                        " elements), expected " + std::to_string(e0 * e1) + " elements");
    }
    if (t->type != DType::kF32 && t->type != DType::kF16) {
      return tensor_error(mf, name, std::string("is a vector stored as ") + dtype_name(t->type) +
                                        "; vectors must be f32 or f16");
    }
    return Status::OK();
  }
  const bool ok2 = t->ne[0] == e0 && t->ne[1] == e1 && t->ne[2] == e2 && t->ne[3] == 1;
  if (!ok2) {
    std::string want = "[" + std::to_string(e0) + ", " + std::to_string(e1);
    if (s.kind == Kind::kMatrix3) want += ", " + std::to_string(e2);
    want += "]";
    return tensor_error(mf, name, "has shape " + t->shape_string() + ", expected " + want);
  }
  return check_matrix_type(mf, t);
}

// The clustered head (issue 6, engine/models/head.h), optional: head.cluster.weight [K x C],
// head.cluster.offsets [K+1], head.cluster.tokens [V], head.cluster.bias [K] and
// head.cluster.log_prior [V] (both optional).
// Values (offsets monotone, tokens a permutation) are checked when the model is built.
Status check_cluster_head(const ModelFile& mf, const Dims& d) {
  const TensorRef* w = mf.find("head.cluster.weight");
  if (w == nullptr) {
    for (const char* n : {"head.cluster.offsets", "head.cluster.tokens", "head.cluster.bias", "head.cluster.log_prior"}) {
      if (mf.find(n) != nullptr) return tensor_error(mf, n, "is present without head.cluster.weight");
    }
    return Status::OK();
  }
  const int64_t K = w->ne[1];
  if (w->n_dims != 2 || w->ne[0] != d.C || K < 1 || K > d.V) {
    return tensor_error(mf, w->name, "has shape " + w->shape_string() + ", expected [" + std::to_string(d.C) +
                                         ", K] with 1 <= K <= " + std::to_string(d.V));
  }
  if (!is_weight_type(w->type)) {
    return tensor_error(mf, w->name, std::string("type ") + dtype_name(w->type) + " is not a weight type");
  }
  if (mf.find("head.weight") == nullptr) return tensor_error(mf, "head.weight", "a clustered head needs the dense rows");
  const struct { const char* name; int64_t n; bool required; } vecs[] = {
      {"head.cluster.offsets", K + 1, true}, {"head.cluster.tokens", d.V, true}, {"head.cluster.bias", K, false},
      {"head.cluster.log_prior", d.V, false}};
  for (const auto& v : vecs) {
    const TensorRef* t = mf.find(v.name);
    if (t == nullptr) {
      if (!v.required) continue;
      return Status::Corruption(mf.path + ": tensor '" + v.name + "' is missing (head.cluster.weight is present)");
    }
    if (t->n_elements() != v.n || (t->type != DType::kF32 && t->type != DType::kF16)) {
      return tensor_error(mf, v.name, "has shape " + t->shape_string() + " and type " + dtype_name(t->type) +
                                          ", expected an f32 vector of " + std::to_string(v.n) + " elements");
    }
  }
  return Status::OK();
}

}  // namespace

Status finalize_model_file(ModelFile& mf, bool keep_scalars) {
  Hparams& hp = mf.hparams;
  const RwkvVersion detected = detect_version(mf);
  hp.version = detected;

  const TensorRef* emb = nullptr;
  Status st = need(mf, "emb.weight", &emb);
  if (!st.ok()) return st;
  if (emb->n_dims != 2) return tensor_error(mf, "emb.weight", "must be 2-D, got " + emb->shape_string());
  hp.n_embd = emb->ne[0];
  hp.n_vocab = emb->ne[1];
  if (hp.n_embd <= 0 || hp.n_embd > 65536) return tensor_error(mf, "emb.weight", "embedding width out of range");
  if (hp.n_vocab <= 0 || hp.n_vocab > (1 << 24)) return tensor_error(mf, "emb.weight", "vocabulary size out of range");

  int64_t n_layer = 0;
  while (mf.find("blocks." + std::to_string(n_layer) + ".ln1.weight") != nullptr) ++n_layer;
  if (n_layer == 0) return Status::Corruption(mf.path + ": tensor 'blocks.0.ln1.weight' is missing: no layers found");
  hp.n_layer = n_layer;

  const TensorRef* fk = matrix_out_tensor(mf, "blocks.0.ffn.key.weight");
  if (fk == nullptr) {
    st = need(mf, "blocks.0.ffn.key.weight", &fk);
    if (!st.ok()) return st;
  }
  hp.n_ffn = fk->ne[1];

  Dims d{};
  d.C = hp.n_embd;
  d.F = hp.n_ffn;
  d.V = hp.n_vocab;
  hp.n_head = 0;
  hp.head_size = 0;
  const TensorRef* t = nullptr;
  switch (detected) {
    case RwkvVersion::kV4: break;
    case RwkvVersion::kV5_1:
      st = need(mf, "blocks.0.att.time_decay", &t);
      if (!st.ok()) return st;
      hp.n_head = t->n_elements();
      break;
    case RwkvVersion::kV5_2:
    case RwkvVersion::kV6:
      st = need(mf, "blocks.0.att.time_faaaa", &t);
      if (!st.ok()) return st;
      // rwkv.cpp shape [1, S, H]; a squeezed writer may give [S, H].
      hp.n_head = t->n_dims >= 3 ? t->ne[2] : t->ne[1];
      break;
    case RwkvVersion::kV7:
      st = need(mf, "blocks.0.att.r_k", &t);
      if (!st.ok()) return st;
      hp.n_head = t->ne[1];
      break;
  }
  if (detected != RwkvVersion::kV4) {
    if (hp.n_head <= 0 || hp.n_embd % hp.n_head != 0) {
      return tensor_error(mf, t ? t->name : "att", "head count " + std::to_string(hp.n_head) +
                                                       " does not divide the width " + std::to_string(hp.n_embd));
    }
    hp.head_size = hp.n_embd / hp.n_head;
  }
  d.H = hp.n_head;
  d.S = hp.head_size;
  if (detected == RwkvVersion::kV6) {
    st = need(mf, "blocks.0.att.time_maa_w2", &t);
    if (!st.ok()) return st;
    d.Dmaa = t->ne[0];
    t = matrix_out_tensor(mf, "blocks.0.att.time_decay_w1");
    if (t == nullptr) {
      st = need(mf, "blocks.0.att.time_decay_w1", &t);
      if (!st.ok()) return st;
    }
    d.Ddecay = t->ne[1];
  }
  if (detected == RwkvVersion::kV7) {
    const char* names[4] = {"blocks.0.att.w1", "blocks.0.att.a1", "blocks.1.att.v1", "blocks.0.att.g1"};
    int64_t* dst[4] = {&d.Dw, &d.Da, &d.Dv, &d.Dg};
    for (int i = 0; i < 4; ++i) {
      const TensorRef* lr = matrix_out_tensor(mf, names[i]);
      if (lr == nullptr && i == 2 && n_layer == 1) continue;  // one-layer model: no v1 anywhere
      if (lr == nullptr) {
        st = need(mf, names[i], &lr);
        if (!st.ok()) return st;
      }
      *dst[i] = lr->ne[1];
    }
  }

  if (!keep_scalars) {
    hp.gn_eps = (detected == RwkvVersion::kV6 || detected == RwkvVersion::kV7) ? 64e-5f : 1e-5f;
    hp.rescale_every = 0;
  }
  if (!(hp.gn_eps > 0.0f && hp.gn_eps < 1.0f)) {
    return Status::Corruption(mf.path + ": group-norm epsilon " + std::to_string(hp.gn_eps) + " is out of range (0, 1)");
  }
  if (hp.rescale_every < 0 || hp.rescale_every > 1000) {
    return Status::Corruption(mf.path + ": rescale_every " + std::to_string(hp.rescale_every) + " is out of range");
  }

  for (const Spec& s : kGlobal) {
    st = check_tensor(mf, s.suffix, s, d);
    if (!st.ok()) return st;
  }
  st = check_cluster_head(mf, d);
  if (!st.ok()) return st;
  const std::vector<Spec> per_layer = layer_specs(detected);
  for (int64_t l = 0; l < n_layer; ++l) {
    const std::string prefix = "blocks." + std::to_string(l) + ".";
    for (const Spec& s : per_layer) {
      if (s.skip_layer0 && l == 0) continue;
      st = check_tensor(mf, prefix + s.suffix, s, d);
      if (!st.ok()) return st;
    }
    st = check_ffn_sparse(mf, prefix, d);
    if (!st.ok()) return st;
  }
  return Status::OK();
}

}  // namespace rwkv
