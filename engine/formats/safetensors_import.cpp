// BlinkDL checkpoint tensors (raw values, PyTorch shapes) -> canonical rwkv.cpp form.
//
// Mirrors rwkv.cpp's python/convert_pytorch_to_ggml.py (rwkv-math.md §3): dims reversed to
// ggml order, ".time_" tensors squeezed, then per version
//   v4   time_decay = -exp(w)
//   v5.1 time_decay = exp(-exp(w)) [1,1,H], time_first = exp(u) [1,1,H]   (no gate)
//   v5.2 time_decay = exp(-exp(w)) [1,S,H], time_faaaa [1,S,H]             (gate)
//   v6   time_decay [1,S,H] raw, time_faaaa [1,S,H], time_maa_w1 / time_decay_w1 / _w2
//        transposed to out x in, time_maa_w2 (5,D,C) -> (5,C,D)
//   v7   x_r,x_w,x_k,x_v,x_a,x_g -> att.x_rwkvag [C,1,6]; w1,w2,a1,a2,v1,v2,g1,g2 transposed
// and undoes the Ai00 / web-rwkv ".st" changes first (renames, pre-transposed low-rank maps).
//
// Settled ambiguities:
//   * ChatRWKV "5.1" (gate + per-head decay) has no rwkv.cpp form; its per-head decay and bonus
//     are repeated per channel (as web-rwkv does), which makes it an exact v5.2 model.
//   * Low-rank orientation: the dim equal to C is the input (rwkv-math.md §13); only when
//     both dims equal C does the source flavour decide.
#include <cmath>
#include <cstring>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/common/fp16.h"
#include "engine/formats/safetensors.h"

namespace rwkv {
namespace {

const char* const kMixNames[6] = {"x_r", "x_w", "x_k", "x_v", "x_a", "x_g"};  // x_rwkvag order

std::string lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
  }
  return s;
}

void replace_all(std::string* s, const std::string& from, const std::string& to) {
  for (size_t pos = s->find(from); pos != std::string::npos; pos = s->find(from, pos + to.size())) {
    s->replace(pos, from.size(), to);
  }
}

float bf16_to_fp32(uint16_t h) {
  const uint32_t bits = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<int64_t> squeeze(const std::vector<int64_t>& shape) {
  std::vector<int64_t> s;
  for (int64_t d : shape) {
    if (d != 1) s.push_back(d);
  }
  return s;
}

// "blocks.12.att.key.weight" -> layer 12, suffix "att.key.weight". False for global names.
bool split_block_name(const std::string& name, int64_t* layer, std::string* suffix) {
  if (name.compare(0, 7, "blocks.") != 0) return false;
  const size_t dot = name.find('.', 7);
  if (dot == std::string::npos || dot == 7) return false;
  int64_t l = 0;
  for (size_t i = 7; i < dot; ++i) {
    if (name[i] < '0' || name[i] > '9' || l > 100000) return false;
    l = l * 10 + (name[i] - '0');
  }
  *layer = l;
  *suffix = name.substr(dot + 1);
  return true;
}

bool is_model_name(const std::string& name) {
  return name.compare(0, 4, "emb.") == 0 || name.compare(0, 7, "blocks.") == 0 || name.compare(0, 7, "ln_out.") == 0 ||
         name.compare(0, 5, "head.") == 0;
}

class Importer {
 public:
  explicit Importer(const SafetensorsFile& f) : f_(f), buffers_(std::make_shared<BufferStorage>()) {}

  Result<ModelFile> run();

 private:
  enum class Layout { kBlinkDL, kWebRwkv };
  // Low-rank map directions: kFromC maps C -> D (raw C x D), kToC maps D -> C (raw D x C).
  enum class LowRank { kFromC, kToC };

  const SafetensorsTensor* find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &f_.tensors[it->second];
  }
  void reindex() {
    index_.clear();
    for (size_t i = 0; i < names_.size(); ++i) index_.emplace(names_[i], i);
  }
  std::string ctx(const std::string& name) const { return f_.path + ": tensor '" + name + "'"; }

  Status detect();
  Status import_one(size_t index);
  Status emit_mix_concat(int64_t layer);
  Status to_f32(const SafetensorsTensor& t, const std::string& name, std::vector<float>* out) const;
  void emit_f32(const std::string& name, std::vector<int64_t> ggml_dims, const std::vector<float>& v);
  Status emit_matrix(const std::string& name, const SafetensorsTensor& t);
  Status emit_low_rank(const std::string& name, const SafetensorsTensor& t, LowRank dir);
  Status per_channel(const std::string& name, const SafetensorsTensor& t, std::vector<float>* v) const;
  Status read_overrides();

  const SafetensorsFile& f_;
  std::shared_ptr<BufferStorage> buffers_;
  ModelFile mf_;
  std::vector<std::string> names_;  // canonical source name per f_.tensors index
  std::unordered_map<std::string, size_t> index_;  // names_ -> index
  RwkvVersion version_ = RwkvVersion::kV4;
  Layout layout_ = Layout::kBlinkDL;
  int64_t C_ = 0, H_ = 0, S_ = 0;
  std::set<int64_t> mixed_layers_;  // v7 layers whose x_rwkvag is done
  std::vector<std::string> dropped_;
  bool dropped_state_ = false;
};

Status Importer::detect() {
  for (const SafetensorsTensor& t : f_.tensors) names_.push_back(lower(t.name));
  reindex();
  auto has = [&](const char* n) { return find(n) != nullptr; };

  const SafetensorsTensor* emb = find("emb.weight");
  if (emb == nullptr) return Status::Corruption(f_.path + ": tensor 'emb.weight' is missing (not an RWKV checkpoint?)");
  if (emb->shape.size() != 2) return Status::Corruption(ctx("emb.weight") + ": expected 2 dims [vocab, width]");
  C_ = emb->shape[1];
  if (C_ <= 0) return Status::Corruption(ctx("emb.weight") + ": width is 0");

  // Flavour: our script says so; web-rwkv writes {"format": "pt"} and Ai00 {"rwkv_version":
  // ..., "model_type": ...}, both with every tensor F16. Only v6 (by names, below) and square
  // v7 low-rank maps (C == rank, tiny models only) depend on it.
  auto layout = f_.metadata.find("rwkv_edge.layout");
  bool all_f16 = true;
  for (const SafetensorsTensor& t : f_.tensors) all_f16 = all_f16 && t.dtype == "F16";
  if (layout != f_.metadata.end()) {
    layout_ = layout->second == "web-rwkv" ? Layout::kWebRwkv : Layout::kBlinkDL;
  } else {
    auto format = f_.metadata.find("format");
    const bool web_rwkv = format != f_.metadata.end() && format->second == "pt";
    const bool ai00 = f_.metadata.count("rwkv_version") != 0 || f_.metadata.count("model_type") != 0;
    if ((web_rwkv || ai00) && all_f16) layout_ = Layout::kWebRwkv;
  }

  const bool gated = has("blocks.0.att.gate.weight");
  if (has("blocks.0.att.r_k") || has("blocks.0.att.k_k")) {
    version_ = RwkvVersion::kV7;
  } else if (has("blocks.0.att.time_maa_x") || has("blocks.0.att.time_mix_x")) {
    version_ = RwkvVersion::kV6;
    // web-rwkv always renames time_maa -> time_mix, so the names settle the flavour.
    layout_ = has("blocks.0.att.time_mix_x") ? Layout::kWebRwkv : Layout::kBlinkDL;
  } else if (has("blocks.0.att.ln_x.weight")) {
    version_ = gated ? RwkvVersion::kV5_2 : RwkvVersion::kV5_1;
  }

  // Undo web-rwkv's renames. Gated v5 and v6 only have a bonus called time_faaaa; v4 and
  // un-gated v5 have a genuine (log-space) time_first.
  const bool bonus_is_faaaa = version_ == RwkvVersion::kV5_2 || version_ == RwkvVersion::kV6;
  for (std::string& n : names_) {
    if (version_ == RwkvVersion::kV6) replace_all(&n, ".time_mix_", ".time_maa_");
    if (bonus_is_faaaa) replace_all(&n, ".time_first", ".time_faaaa");
  }
  reindex();
  if (index_.size() != names_.size()) {
    std::set<std::string> seen;
    for (const std::string& n : names_) {
      if (!seen.insert(n).second) return Status::Corruption(ctx(n) + ": appears twice (after normalising the name)");
    }
  }

  // Heads: the leading dim of an (H, S) tensor. Only trailing unit dims are dropped, since
  // H itself may be 1 (the tiny v7 model has one 64-wide head).
  auto heads_of = [&](const char* n, bool allow_per_head) -> int64_t {
    const SafetensorsTensor* c = find(n);
    if (c == nullptr) return 0;
    std::vector<int64_t> s = c->shape;
    while (s.size() > 1 && s.back() == 1) s.pop_back();
    if (s.size() >= 2) return s[s.size() - 2];
    if (allow_per_head && s.size() == 1 && s[0] < C_) return s[0];  // ChatRWKV 5.1: one value per head
    return 0;
  };
  switch (version_) {
    case RwkvVersion::kV4: return Status::OK();
    case RwkvVersion::kV5_1: {
      const SafetensorsTensor* t = find("blocks.0.att.time_decay");
      if (t == nullptr) return Status::Corruption(f_.path + ": tensor 'blocks.0.att.time_decay' is missing");
      H_ = numel(t->shape);
      break;
    }
    case RwkvVersion::kV5_2:
      H_ = heads_of("blocks.0.att.time_faaaa", true);
      if (H_ == 0) H_ = heads_of("blocks.0.att.time_decay", true);
      break;
    case RwkvVersion::kV6:
      H_ = heads_of("blocks.0.att.time_faaaa", false);
      break;
    case RwkvVersion::kV7:
      H_ = heads_of("blocks.0.att.r_k", false);
      if (H_ == 0) return Status::Corruption(ctx("blocks.0.att.r_k") + ": missing or not [heads, head_size]");
      break;
  }
  if (H_ == 0) {
    return Status::Corruption(ctx("blocks.0.att.time_faaaa") + ": missing or not [heads, head_size]; cannot tell the head count");
  }
  if (H_ <= 0 || C_ % H_ != 0) {
    return Status::Corruption(f_.path + ": head count " + std::to_string(H_) + " does not divide the width " + std::to_string(C_));
  }
  S_ = C_ / H_;
  return Status::OK();
}

Status Importer::to_f32(const SafetensorsTensor& t, const std::string& name, std::vector<float>* out) const {
  const size_t n = (size_t)numel(t.shape);
  out->resize(n);
  if (t.dtype == "F32") {
    std::memcpy(out->data(), t.data, n * 4);
  } else if (t.dtype == "F16" || t.dtype == "BF16") {
    const bool bf = t.dtype == "BF16";
    for (size_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, t.data + 2 * i, 2);
      (*out)[i] = bf ? bf16_to_fp32(h) : fp16_to_fp32(h);
    }
  } else {
    return Status::Unsupported(ctx(name) + ": dtype " + t.dtype + " is not supported (use F32, F16 or BF16)");
  }
  return Status::OK();
}

void Importer::emit_f32(const std::string& name, std::vector<int64_t> ggml_dims, const std::vector<float>& v) {
  if (ggml_dims.empty()) ggml_dims.push_back(1);
  TensorRef r;
  r.name = name;
  r.type = DType::kF32;
  r.n_dims = (int)ggml_dims.size();
  for (size_t i = 0; i < ggml_dims.size(); ++i) r.ne[i] = ggml_dims[i];
  r.nbytes = v.size() * 4;
  uint8_t* dst = buffers_->add(r.nbytes);
  std::memcpy(dst, v.data(), r.nbytes);
  r.data = dst;
  mf_.add_tensor(std::move(r));
}

std::vector<int64_t> reversed(const std::vector<int64_t>& s) { return std::vector<int64_t>(s.rbegin(), s.rend()); }

// A matrix that needs no value change keeps F32/F16 (BF16 becomes f32); PyTorch (out, in)
// row-major is already ggml [in, out].
Status Importer::emit_matrix(const std::string& name, const SafetensorsTensor& t) {
  if (t.shape.size() > 4) return Status::Unsupported(ctx(name) + ": rank " + std::to_string(t.shape.size()) + " > 4");
  if (t.dtype == "BF16") {
    std::vector<float> v;
    Status st = to_f32(t, name, &v);
    if (!st.ok()) return st;
    emit_f32(name, reversed(t.shape), v);
    return Status::OK();
  }
  if (t.dtype != "F32" && t.dtype != "F16") {
    return Status::Unsupported(ctx(name) + ": dtype " + t.dtype + " is not supported (use F32, F16 or BF16)");
  }
  TensorRef r;
  r.name = name;
  r.type = t.dtype == "F32" ? DType::kF32 : DType::kF16;
  const std::vector<int64_t> dims = reversed(t.shape);
  r.n_dims = (int)dims.size();
  for (size_t i = 0; i < dims.size(); ++i) r.ne[i] = dims[i];
  r.nbytes = t.nbytes;
  // Point into the map when aligned like a heap buffer; copy otherwise.
  if (reinterpret_cast<uintptr_t>(t.data) % 16 == 0) {
    r.data = t.data;
  } else {
    uint8_t* dst = buffers_->add(t.nbytes);
    std::memcpy(dst, t.data, t.nbytes);
    r.data = dst;
  }
  mf_.add_tensor(std::move(r));
  return Status::OK();
}

// Raw BlinkDL low-rank maps are input-major: kFromC (C, D), kToC (D, C); canonical is out x in.
// The last two dims are swapped unless the source already has the canonical orientation.
Status Importer::emit_low_rank(const std::string& name, const SafetensorsTensor& t, LowRank dir) {
  const size_t r = t.shape.size();
  if (r < 2 || r > 3) return Status::Corruption(ctx(name) + ": expected a 2-D (or 3-D) low-rank map");
  const int64_t a = t.shape[r - 2], b = t.shape[r - 1];
  const bool a_is_c = a == C_, b_is_c = b == C_;
  bool transpose;
  if (a_is_c != b_is_c) {
    transpose = dir == LowRank::kFromC ? a_is_c : b_is_c;
  } else {
    transpose = layout_ == Layout::kBlinkDL;  // square (or broken): trust the flavour
  }
  std::vector<float> v;
  Status st = to_f32(t, name, &v);
  if (!st.ok()) return st;
  std::vector<int64_t> shape = t.shape;
  if (transpose) {
    std::vector<float> out(v.size());
    const int64_t batch = numel(shape) / (a * b);
    for (int64_t k = 0; k < batch; ++k) {
      const float* src = v.data() + k * a * b;
      float* dst = out.data() + k * a * b;
      for (int64_t i = 0; i < a; ++i) {
        for (int64_t j = 0; j < b; ++j) dst[j * a + i] = src[i * b + j];
      }
    }
    v.swap(out);
    std::swap(shape[r - 2], shape[r - 1]);
  }
  emit_f32(name, reversed(shape), v);
  return Status::OK();
}

// v5.2 decay / bonus as C values, one per channel; a per-head vector (ChatRWKV 5.1) is
// repeated over the head's S channels.
Status Importer::per_channel(const std::string& name, const SafetensorsTensor& t, std::vector<float>* v) const {
  Status st = to_f32(t, name, v);
  if (!st.ok()) return st;
  if ((int64_t)v->size() == C_) return Status::OK();
  if ((int64_t)v->size() != H_) {
    return Status::Corruption(ctx(name) + ": " + std::to_string(v->size()) + " values; expected " + std::to_string(C_) +
                              " (per channel) or " + std::to_string(H_) + " (per head)");
  }
  std::vector<float> out((size_t)C_);
  for (int64_t h = 0; h < H_; ++h) {
    for (int64_t s = 0; s < S_; ++s) out[(size_t)(h * S_ + s)] = (*v)[(size_t)h];
  }
  v->swap(out);
  return Status::OK();
}

Status Importer::emit_mix_concat(int64_t layer) {
  const std::string prefix = "blocks." + std::to_string(layer) + ".att.";
  std::vector<float> all, one;
  for (const char* m : kMixNames) {
    const SafetensorsTensor* t = find(prefix + m);
    if (t == nullptr) return Status::Corruption(f_.path + ": tensor '" + prefix + m + "' is missing (v7 needs x_r..x_g)");
    Status st = to_f32(*t, prefix + m, &one);
    if (!st.ok()) return st;
    if ((int64_t)one.size() != C_) {
      return Status::Corruption(ctx(prefix + m) + ": " + std::to_string(one.size()) + " values, expected " + std::to_string(C_));
    }
    all.insert(all.end(), one.begin(), one.end());
  }
  emit_f32(prefix + "x_rwkvag", {C_, 1, 6}, all);
  return Status::OK();
}

Status Importer::import_one(size_t index) {
  const SafetensorsTensor& t = f_.tensors[index];
  const std::string& name = names_[index];
  if (!is_model_name(name)) {
    dropped_.push_back(t.name);
    return Status::OK();
  }
  int64_t layer = -1;
  std::string suffix;
  split_block_name(name, &layer, &suffix);
  if (suffix == "att.time_state") {  // state tuning: not part of the weights (yet)
    dropped_state_ = true;
    return Status::OK();
  }
  if (t.shape.empty()) {  // a scalar such as a stored head_size: not a weight
    dropped_.push_back(t.name);
    return Status::OK();
  }
  std::vector<float> v;
  Status st;
  const bool is_time = name.find(".time_") != std::string::npos;

  switch (version_) {
    case RwkvVersion::kV4:
      if (suffix == "att.time_decay") {
        if (!(st = to_f32(t, name, &v)).ok()) return st;
        for (float& x : v) x = (float)-std::exp((double)x);
        emit_f32(name, reversed(squeeze(t.shape)), v);
        return Status::OK();
      }
      break;
    case RwkvVersion::kV5_1:
      if (suffix == "att.time_decay" || suffix == "att.time_first") {
        if (!(st = to_f32(t, name, &v)).ok()) return st;
        const bool decay = suffix == "att.time_decay";
        for (float& x : v) x = (float)(decay ? std::exp(-std::exp((double)x)) : std::exp((double)x));
        emit_f32(name, {1, 1, (int64_t)v.size()}, v);
        return Status::OK();
      }
      break;
    case RwkvVersion::kV5_2:
      if (suffix == "att.time_decay" || suffix == "att.time_faaaa") {
        if (!(st = per_channel(name, t, &v)).ok()) return st;
        if (suffix == "att.time_decay") {
          for (float& x : v) x = (float)std::exp(-std::exp((double)x));
        }
        emit_f32(name, {1, S_, H_}, v);
        return Status::OK();
      }
      break;
    case RwkvVersion::kV6:
      if (suffix == "att.time_decay" || suffix == "att.time_faaaa") {
        if (!(st = to_f32(t, name, &v)).ok()) return st;
        if ((int64_t)v.size() != C_) {
          return Status::Corruption(ctx(name) + ": " + std::to_string(v.size()) + " values, expected " + std::to_string(C_));
        }
        emit_f32(name, {1, S_, H_}, v);
        return Status::OK();
      }
      if (suffix == "att.time_maa_w1" || suffix == "att.time_decay_w1") return emit_low_rank(name, t, LowRank::kFromC);
      if (suffix == "att.time_maa_w2" || suffix == "att.time_decay_w2") return emit_low_rank(name, t, LowRank::kToC);
      break;
    case RwkvVersion::kV7: {
      for (const char* m : kMixNames) {
        if (suffix == std::string("att.") + m) {
          if (!mixed_layers_.insert(layer).second) return Status::OK();
          return emit_mix_concat(layer);
        }
      }
      if (suffix == "att.w0" || suffix == "att.a0" || suffix == "att.v0" || suffix == "att.k_k" || suffix == "att.k_a" ||
          suffix == "ffn.x_k") {
        if (!(st = to_f32(t, name, &v)).ok()) return st;
        emit_f32(name, {(int64_t)v.size(), 1, 1}, v);
        return Status::OK();
      }
      if (suffix == "att.r_k") {
        if (!(st = to_f32(t, name, &v)).ok()) return st;
        emit_f32(name, reversed(t.shape), v);
        return Status::OK();
      }
      for (const char* m : {"att.w1", "att.a1", "att.v1", "att.g1"}) {
        if (suffix == m) return emit_low_rank(name, t, LowRank::kFromC);
      }
      for (const char* m : {"att.w2", "att.a2", "att.v2", "att.g2"}) {
        if (suffix == m) return emit_low_rank(name, t, LowRank::kToC);
      }
      break;
    }
  }
  // Generic: ".time_" tensors squeezed (as rwkv.cpp does), other vectors f32 with their
  // unit dims, matrices as they are.
  if (is_time || squeeze(t.shape).size() <= 1) {
    if (!(st = to_f32(t, name, &v)).ok()) return st;
    emit_f32(name, reversed(is_time ? squeeze(t.shape) : t.shape), v);
    return Status::OK();
  }
  return emit_matrix(name, t);
}

Status Importer::read_overrides() {
  auto eps = f_.metadata.find("rwkv_edge.group_norm_epsilon");
  if (eps != f_.metadata.end()) {
    char* end = nullptr;
    const double v = std::strtod(eps->second.c_str(), &end);
    if (end == eps->second.c_str() || *end != '\0' || !(v > 0.0 && v < 1.0)) {
      return Status::Corruption(f_.path + ": metadata 'rwkv_edge.group_norm_epsilon' = '" + eps->second +
                                "' is not a number in (0, 1)");
    }
    mf_.hparams.gn_eps = (float)v;
  }
  auto rescale = f_.metadata.find("rwkv_edge.rescale_every");
  if (rescale != f_.metadata.end()) {
    char* end = nullptr;
    const long v = std::strtol(rescale->second.c_str(), &end, 10);
    if (end == rescale->second.c_str() || *end != '\0' || v < 0 || v > 1000) {
      return Status::Corruption(f_.path + ": metadata 'rwkv_edge.rescale_every' = '" + rescale->second +
                                "' is not an integer in [0, 1000]");
    }
    mf_.hparams.rescale_every = (int32_t)v;
  }
  return Status::OK();
}

Result<ModelFile> Importer::run() {
  Status st = detect();
  if (!st.ok()) return st;
  mf_.path = f_.path;
  mf_.source_format = "safetensors";
  mf_.storage.push_back(f_.file);
  mf_.storage.push_back(buffers_);
  for (size_t i = 0; i < f_.tensors.size(); ++i) {
    st = import_one(i);
    if (!st.ok()) return st;
  }

  // rwkv-math.md §9: BlinkDL checkpoints use 64e-5 (GN on y/8) for every version with GN.
  mf_.hparams.gn_eps = version_ == RwkvVersion::kV4 ? 1e-5f : 64e-5f;
  mf_.hparams.rescale_every = 0;
  st = read_overrides();
  if (!st.ok()) return st;
  for (const auto& kv : f_.metadata) {
    if (kv.first.compare(0, 10, "rwkv_edge.") == 0) continue;
    mf_.metadata["safetensors." + kv.first] = kv.second;
  }
  mf_.metadata["rwkv_edge.source_layout"] = layout_ == Layout::kWebRwkv ? "web-rwkv" : "blinkdl";
  std::string warning;
  if (dropped_state_) warning = "ignored att.time_state tensors (state tuning is not applied)";
  if (!dropped_.empty()) {
    if (!warning.empty()) warning += "; ";
    warning += "ignored non-weight entries:";
    for (const std::string& n : dropped_) warning += " " + n;
  }
  if (!warning.empty()) mf_.metadata["rwkv_edge.import_warning"] = warning;

  st = finalize_model_file(mf_, /*keep_scalars=*/true);
  if (!st.ok()) return st;
  if (mf_.hparams.version != version_) {
    return Status::Corruption(f_.path + ": tensors look like RWKV v" + std::string(version_name(version_)) +
                              " before conversion but v" + version_name(mf_.hparams.version) + " after");
  }
  if (mf_.hparams.n_vocab == 256) mf_.tokenizer.kind = "bytes";
  return mf_;
}

}  // namespace

Result<ModelFile> import_blinkdl(const SafetensorsFile& f) {
  Importer imp(f);
  return imp.run();
}

}  // namespace rwkv
