// GGUF v2/v3 reader (formats.md §2) for files written by rwkv-edge (architecture rwkv_edge).
//
// The file is mmapped read-only and tensors point into the map (data is aligned to
// general.alignment, so SIMD loads are safe). Every length, count and offset is checked
// against the file size before use; errors name the file and the key or tensor involved.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "engine/formats/gguf.h"
#include "engine/formats/mmap_file.h"
#include "engine/formats/model_file.h"

namespace rwkv {
namespace gguf {

bool is_reserved_key(const std::string& key) {
  static const char* const kReserved[] = {
      kKeyArchitecture, kKeyAlignment,     kKeyVersion,         kKeyVocabSize,  kKeyEmbeddingLength,
      kKeyBlockCount,   kKeyFeedForwardLength, kKeyHeadCount,   kKeyHeadSize,   kKeyGroupNormEps,
      kKeyRescaleEvery, kKeyValueForm,     kKeyTokenizerKind,   kKeyTokenizerData};
  for (const char* k : kReserved) {
    if (key == k) return true;
  }
  return false;
}

}  // namespace gguf

namespace {

using namespace gguf;

// Upper bounds that no real file comes near; larger counts mean a damaged or hostile file.
constexpr uint64_t kMaxTensors = 1u << 20;
constexpr uint64_t kMaxKeys = 1u << 20;
constexpr uint64_t kMaxNameLength = 4096;
constexpr uint64_t kMaxAlignment = 1u << 20;
constexpr int kMaxArrayDepth = 4;
constexpr int kMaxDims = 4;
// ggml assigns type ids below this; anything above is not a ggml type at all.
constexpr uint32_t kGgmlTypeCount = 40;

const char* value_type_name(uint32_t t) {
  static const char* const kNames[] = {"uint8", "int8",  "uint16", "int16",  "uint32", "int32", "float32",
                                       "bool",  "string", "array", "uint64", "int64",  "float64"};
  return t < kValueTypeCount ? kNames[t] : "unknown";
}

size_t value_type_size(uint32_t t) {
  switch (t) {
    case kUint8: case kInt8: case kBool: return 1;
    case kUint16: case kInt16: return 2;
    case kUint32: case kInt32: case kFloat32: return 4;
    case kUint64: case kInt64: case kFloat64: return 8;
    default: return 0;  // string, array: variable
  }
}

const char* ggml_type_name(uint32_t id) {
  static const char* const kNames[kGgmlTypeCount] = {
      "f32",     "f16",    "q4_0",    "q4_1",   "q4_2 (retired)", "q4_3 (retired)", "q5_0",  "q5_1",
      "q8_0",    "q8_1",   "q2_k",    "q3_k",   "q4_k",           "q5_k",           "q6_k",  "q8_k",
      "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s",  "iq4_nl",         "iq3_s",          "iq2_s", "iq4_xs",
      "i8",      "i16",    "i32",     "i64",    "f64",            "iq1_m",          "bf16",  "q4_0_4_4 (retired)",
      "q4_0_4_8 (retired)", "q4_0_8_8 (retired)", "tq1_0", "tq2_0", "iq4_nl_4_4 (retired)",
      "iq4_nl_4_8 (retired)", "iq4_nl_8_8 (retired)", "mxfp4"};
  return id < kGgmlTypeCount ? kNames[id] : "unknown";
}

// One metadata value. Arrays are validated and skipped; only their element type and count
// are kept (no key we read is an array).
struct Value {
  uint32_t type = 0;
  uint64_t u = 0;  // unsigned integers and bool
  int64_t i = 0;   // signed integers
  double f = 0;    // floats
  std::string s;   // strings
  uint32_t array_type = 0;
  uint64_t array_count = 0;
};

// Bounds-checked little-endian cursor over the mapped file.
struct Cursor {
  const uint8_t* p;
  size_t size;
  size_t pos = 0;

  size_t left() const { return size - pos; }
  bool u32(uint32_t* v) { return raw(v, 4); }
  bool u64(uint64_t* v) { return raw(v, 8); }
  bool raw(void* dst, size_t n) {
    if (left() < n) return false;
    std::memcpy(dst, p + pos, n);
    pos += n;
    return true;
  }
  bool skip(uint64_t n) {
    if (left() < n) return false;
    pos += (size_t)n;
    return true;
  }
};

Status truncated(const std::string& ctx, const char* what) {
  return Status::Corruption(ctx + ": file ends inside the " + what);
}

// Reads a gguf_string (uint64 length + bytes) of at most `max_len` bytes.
Status read_string(Cursor& c, const std::string& ctx, const char* what, uint64_t max_len, std::string* out) {
  uint64_t n;
  if (!c.u64(&n)) return truncated(ctx, what);
  if (n > c.left()) {
    return Status::Corruption(ctx + ": " + what + " length " + std::to_string(n) + " runs past the end of the file (" +
                              std::to_string(c.left()) + " bytes left)");
  }
  if (n > max_len) return Status::Corruption(ctx + ": " + what + " length " + std::to_string(n) + " is out of range");
  out->assign(reinterpret_cast<const char*>(c.p + c.pos), (size_t)n);
  c.pos += (size_t)n;
  return Status::OK();
}

Status read_value(Cursor& c, uint32_t type, int depth, const std::string& ctx, Value* out) {
  out->type = type;
  switch (type) {
    case kUint8: case kBool: { uint8_t v; if (!c.raw(&v, 1)) return truncated(ctx, "value"); out->u = v; return Status::OK(); }
    case kInt8: { int8_t v; if (!c.raw(&v, 1)) return truncated(ctx, "value"); out->i = v; return Status::OK(); }
    case kUint16: { uint16_t v; if (!c.raw(&v, 2)) return truncated(ctx, "value"); out->u = v; return Status::OK(); }
    case kInt16: { int16_t v; if (!c.raw(&v, 2)) return truncated(ctx, "value"); out->i = v; return Status::OK(); }
    case kUint32: { uint32_t v; if (!c.raw(&v, 4)) return truncated(ctx, "value"); out->u = v; return Status::OK(); }
    case kInt32: { int32_t v; if (!c.raw(&v, 4)) return truncated(ctx, "value"); out->i = v; return Status::OK(); }
    case kUint64: { uint64_t v; if (!c.raw(&v, 8)) return truncated(ctx, "value"); out->u = v; return Status::OK(); }
    case kInt64: { int64_t v; if (!c.raw(&v, 8)) return truncated(ctx, "value"); out->i = v; return Status::OK(); }
    case kFloat32: { float v; if (!c.raw(&v, 4)) return truncated(ctx, "value"); out->f = v; return Status::OK(); }
    case kFloat64: { double v; if (!c.raw(&v, 8)) return truncated(ctx, "value"); out->f = v; return Status::OK(); }
    case kString: return read_string(c, ctx, "string value", UINT64_MAX, &out->s);
    case kArray: {
      uint32_t et;
      uint64_t count;
      if (!c.u32(&et) || !c.u64(&count)) return truncated(ctx, "array header");
      if (et >= kValueTypeCount) {
        return Status::Corruption(ctx + ": array of unknown value type " + std::to_string(et));
      }
      if (et == kArray && depth >= kMaxArrayDepth) {
        return Status::Corruption(ctx + ": arrays nested deeper than " + std::to_string(kMaxArrayDepth));
      }
      // Smallest encoding of one element: its fixed size, 8 for a string, 12 for an array.
      const size_t fixed = value_type_size(et);
      const uint64_t min_elem = fixed ? fixed : (et == kString ? 8 : 12);
      if (count > c.left() / min_elem) {
        return Status::Corruption(ctx + ": array count " + std::to_string(count) + " is absurd for the " +
                                  std::to_string(c.left()) + " bytes left in the file");
      }
      out->array_type = et;
      out->array_count = count;
      if (fixed) {
        c.skip(count * fixed);
        return Status::OK();
      }
      Value elem;
      for (uint64_t k = 0; k < count; ++k) {
        Status st = read_value(c, et, depth + 1, ctx, &elem);
        if (!st.ok()) return st;
      }
      return Status::OK();
    }
    default:
      return Status::Corruption(ctx + ": unknown value type " + std::to_string(type));
  }
}

struct Info {
  std::string name;
  TensorRef ref;
  uint64_t offset = 0;
};

class Metadata {
 public:
  Metadata(const std::string& path, std::map<std::string, Value> kv) : path_(path), kv_(std::move(kv)) {}

  const Value* find(const std::string& key) const {
    auto it = kv_.find(key);
    return it == kv_.end() ? nullptr : &it->second;
  }
  const std::map<std::string, Value>& all() const { return kv_; }

  std::string ctx(const std::string& key) const { return path_ + ": metadata key '" + key + "'"; }

  Status missing(const std::string& key) const { return Status::Corruption(ctx(key) + " is missing"); }

  Status wrong_type(const std::string& key, const Value& v, const char* want) const {
    return Status::Corruption(ctx(key) + ": expected " + want + ", found " + value_type_name(v.type));
  }

  Status get_string(const std::string& key, bool required, std::string* out) const {
    const Value* v = find(key);
    if (v == nullptr) return required ? missing(key) : Status::OK();
    if (v->type != kString) return wrong_type(key, *v, "a string");
    *out = v->s;
    return Status::OK();
  }

  // Any integer type, value in [0, max].
  Status get_uint(const std::string& key, bool required, uint64_t max, uint64_t* out) const {
    const Value* v = find(key);
    if (v == nullptr) return required ? missing(key) : Status::OK();
    switch (v->type) {
      case kUint8: case kUint16: case kUint32: case kUint64:
        *out = v->u;
        break;
      case kInt8: case kInt16: case kInt32: case kInt64:
        if (v->i < 0) return Status::Corruption(ctx(key) + ": value " + std::to_string(v->i) + " is negative");
        *out = (uint64_t)v->i;
        break;
      default:
        return wrong_type(key, *v, "an unsigned integer");
    }
    if (*out > max) {
      return Status::Corruption(ctx(key) + ": value " + std::to_string(*out) + " is out of range (max " +
                                std::to_string(max) + ")");
    }
    return Status::OK();
  }

  Status get_float(const std::string& key, bool required, double* out) const {
    const Value* v = find(key);
    if (v == nullptr) return required ? missing(key) : Status::OK();
    if (v->type != kFloat32 && v->type != kFloat64) return wrong_type(key, *v, "a float");
    *out = v->f;
    return Status::OK();
  }

 private:
  std::string path_;
  std::map<std::string, Value> kv_;
};

Status check_version(const std::string& path, uint32_t version) {
  if (version == 2 || version == 3) return Status::OK();
  const uint32_t swapped = __builtin_bswap32(version);
  if (swapped >= 1 && swapped <= 3) {
    return Status::Unsupported(path + ": big-endian GGUF (version field byte-swapped); only little-endian files are supported");
  }
  if (version == 1) return Status::Unsupported(path + ": GGUF v1 (32-bit counts) is not supported; re-convert the model");
  return Status::Unsupported(path + ": GGUF version " + std::to_string(version) + " is not supported (expected 2 or 3)");
}

Status check_tensor_type(const std::string& ctx, uint32_t id) {
  if (dtype_is_known(id)) return Status::OK();
  if (id < kGgmlTypeCount) {
    return Status::Unsupported(ctx + ": type " + ggml_type_name(id) + " (ggml id " + std::to_string(id) +
                               ") is not supported; use f32, f16, q4_0, q4_1, q5_0, q5_1 or q8_0");
  }
  return Status::Corruption(ctx + ": unknown ggml type id " + std::to_string(id));
}

Status read_tensor_info(Cursor& c, const std::string& path, uint64_t index, Info* info) {
  const std::string where = path + ": tensor #" + std::to_string(index);
  Status st = read_string(c, where, "name", kMaxNameLength, &info->name);
  if (!st.ok()) return st;
  if (info->name.empty()) return Status::Corruption(where + ": empty tensor name");
  const std::string ctx = path + ": tensor '" + info->name + "'";
  uint32_t n_dims;
  if (!c.u32(&n_dims)) return truncated(ctx, "tensor info");
  if (n_dims < 1 || n_dims > (uint32_t)kMaxDims) {
    return Status::Corruption(ctx + ": n_dims " + std::to_string(n_dims) + " out of range (1..4)");
  }
  TensorRef& t = info->ref;
  t.name = info->name;
  t.n_dims = (int)n_dims;
  // Element count stays below 2^50 (checked per dim), so products cannot overflow.
  uint64_t elements = 1;
  for (uint32_t d = 0; d < n_dims; ++d) {
    uint64_t ne;
    if (!c.u64(&ne)) return truncated(ctx, "tensor info");
    if (ne == 0 || ne > (1ull << 50) / elements) {
      return Status::Corruption(ctx + ": dimension " + std::to_string(d) + " = " + std::to_string(ne) + " is out of range");
    }
    elements *= ne;
    t.ne[d] = (int64_t)ne;
  }
  uint32_t type;
  if (!c.u32(&type) || !c.u64(&info->offset)) return truncated(ctx, "tensor info");
  st = check_tensor_type(ctx, type);
  if (!st.ok()) return st;
  t.type = (DType)type;
  if (t.ne[0] % dtype_block_size(t.type) != 0) {
    return Status::Corruption(ctx + ": " + dtype_name(t.type) + " rows of " + std::to_string(t.ne[0]) +
                              " elements are not a multiple of its block size " + std::to_string(dtype_block_size(t.type)));
  }
  t.nbytes = dtype_row_bytes(t.type, t.ne[0]) * (size_t)(elements / (uint64_t)t.ne[0]);
  return Status::OK();
}

// Refuses GGUFs that are not ours, with a hint for llama.cpp's RWKV files.
Status check_architecture(const std::string& path, const Metadata& md) {
  std::string arch;
  Status st = md.get_string(kKeyArchitecture, /*required=*/true, &arch);
  if (!st.ok()) return st;
  if (arch == kArchitecture) return Status::OK();
  const std::string ctx = md.ctx(kKeyArchitecture) + " is '" + arch + "'";
  if (arch.find("rwkv") != std::string::npos) {
    return Status::Unsupported(ctx + ": the file was made by llama.cpp (architecture " + arch +
                               "), whose RWKV tensors use other names and raw values; convert it from the original "
                               "checkpoint (.pth via scripts/pth_to_safetensors.py, safetensors or rwkv.cpp .bin)");
  }
  return Status::Unsupported(ctx + ": not an RWKV model written by rwkv-edge (expected '" + std::string(kArchitecture) + "')");
}

// Fills hparams, tokenizer and free-form metadata from the key/value section.
Status read_model_metadata(const Metadata& md, ModelFile* mf) {
  std::string s;
  Status st = md.get_string(kKeyVersion, /*required=*/true, &s);
  if (!st.ok()) return st;
  if (!parse_version(s, &mf->hparams.version)) {
    return Status::Unsupported(md.ctx(kKeyVersion) + ": version '" + s + "' is not one we run (4, 5.1, 5.2, 6, 7)");
  }
  st = md.get_string(kKeyValueForm, /*required=*/true, &s);
  if (!st.ok()) return st;
  if (s != kValueFormRwkvcpp) {
    return Status::Unsupported(md.ctx(kKeyValueForm) + ": value form '" + s + "' is not supported (expected '" +
                               kValueFormRwkvcpp + "')");
  }
  double eps = 0;
  st = md.get_float(kKeyGroupNormEps, /*required=*/true, &eps);
  if (!st.ok()) return st;
  if (!std::isfinite(eps) || !(eps > 0.0 && eps < 1.0)) {
    return Status::Corruption(md.ctx(kKeyGroupNormEps) + ": " + std::to_string(eps) + " is out of range (0, 1)");
  }
  mf->hparams.gn_eps = (float)eps;
  uint64_t rescale = 0;
  st = md.get_uint(kKeyRescaleEvery, /*required=*/true, 1000, &rescale);
  if (!st.ok()) return st;
  mf->hparams.rescale_every = (int32_t)rescale;

  st = md.get_string(kKeyTokenizerKind, false, &mf->tokenizer.kind);
  if (!st.ok()) return st;
  const std::string& kind = mf->tokenizer.kind;
  if (!(kind.empty() || kind == "world" || kind == "neox" || kind == "bytes")) {
    return Status::Unsupported(md.ctx(kKeyTokenizerKind) + ": tokenizer kind '" + kind + "' is not supported");
  }
  st = md.get_string(kKeyTokenizerData, false, &mf->tokenizer.data);
  if (!st.ok()) return st;

  // Everything else that is a string travels on as free-form metadata.
  for (const auto& kv : md.all()) {
    if (is_reserved_key(kv.first) || kv.second.type != kString) continue;
    mf->metadata[kv.first] = kv.second.s;
  }
  return Status::OK();
}

// The counts in the metadata must agree with what the tensors say.
Status check_counts(const Metadata& md, const Hparams& hp) {
  const struct { const char* key; int64_t actual; } kCounts[] = {
      {kKeyVocabSize, hp.n_vocab},   {kKeyEmbeddingLength, hp.n_embd}, {kKeyBlockCount, hp.n_layer},
      {kKeyFeedForwardLength, hp.n_ffn}, {kKeyHeadCount, hp.n_head},    {kKeyHeadSize, hp.head_size}};
  for (const auto& k : kCounts) {
    uint64_t v = 0;
    Status st = md.get_uint(k.key, /*required=*/true, UINT32_MAX, &v);
    if (!st.ok()) return st;
    if ((int64_t)v != k.actual) {
      return Status::Corruption(md.ctx(k.key) + ": says " + std::to_string(v) + " but the tensors give " +
                                std::to_string(k.actual));
    }
  }
  return Status::OK();
}

}  // namespace

Result<ModelFile> read_gguf(const std::string& path) {
  auto mm = MmapFile::open(path);
  if (!mm.ok()) return mm.status();
  const std::shared_ptr<MmapFile> file = mm.value();
  Cursor c{file->data(), file->size()};

  uint32_t magic = 0, version = 0;
  uint64_t n_tensors = 0, n_kv = 0;
  if (!c.u32(&magic)) return Status::Corruption(path + ": truncated GGUF header (" + std::to_string(c.size) + " bytes)");
  if (magic != kMagic) return Status::Corruption(path + ": not a GGUF file (wrong magic)");
  if (!c.u32(&version) || !c.u64(&n_tensors) || !c.u64(&n_kv)) {
    return Status::Corruption(path + ": truncated GGUF header (" + std::to_string(c.size) + " bytes)");
  }
  Status st = check_version(path, version);
  if (!st.ok()) return st;
  // Counts beyond any real model are refused up front; smaller ones that still do not fit
  // fail where the file runs out, naming the entry (more useful for a truncated file).
  if (n_kv > kMaxKeys) {
    return Status::Corruption(path + ": metadata key count " + std::to_string(n_kv) + " is absurd (limit " +
                              std::to_string(kMaxKeys) + ")");
  }
  if (n_tensors > kMaxTensors) {
    return Status::Corruption(path + ": tensor count " + std::to_string(n_tensors) + " is absurd (limit " +
                              std::to_string(kMaxTensors) + ")");
  }

  std::map<std::string, Value> kv;
  for (uint64_t k = 0; k < n_kv; ++k) {
    const std::string where = path + ": metadata entry #" + std::to_string(k);
    std::string key;
    st = read_string(c, where, "key", kMaxNameLength, &key);
    if (!st.ok()) return st;
    const std::string ctx = path + ": metadata key '" + key + "'";
    uint32_t type;
    if (!c.u32(&type)) return truncated(ctx, "value type");
    if (type >= kValueTypeCount) return Status::Corruption(ctx + ": unknown value type " + std::to_string(type));
    Value v;
    st = read_value(c, type, 0, ctx, &v);
    if (!st.ok()) return st;
    if (!kv.emplace(key, std::move(v)).second) return Status::Corruption(ctx + ": appears twice");
  }
  const Metadata md(path, std::move(kv));
  // Before the tensor infos: a llama.cpp file should get the hint, not a type complaint.
  st = check_architecture(path, md);
  if (!st.ok()) return st;

  uint64_t alignment = kDefaultAlignment;
  st = md.get_uint(kKeyAlignment, /*required=*/false, kMaxAlignment, &alignment);
  if (!st.ok()) return st;
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
    return Status::Corruption(md.ctx(kKeyAlignment) + ": " + std::to_string(alignment) + " is not a power of two");
  }

  std::vector<Info> infos;
  std::map<std::string, size_t> by_name;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    Info info;
    st = read_tensor_info(c, path, i, &info);
    if (!st.ok()) return st;
    if (!by_name.emplace(info.name, (size_t)i).second) {
      return Status::Corruption(path + ": tensor '" + info.name + "' appears twice");
    }
    infos.push_back(std::move(info));
  }

  // Tensor data starts at the next multiple of the alignment.
  const uint64_t data_start = (c.pos + alignment - 1) / alignment * alignment;
  if (data_start > c.size && n_tensors > 0) {
    return Status::Corruption(path + ": file ends before the tensor data (" + std::to_string(c.size) + " bytes)");
  }
  const uint64_t data_size = data_start <= c.size ? c.size - data_start : 0;
  for (const Info& in : infos) {
    const std::string ctx = path + ": tensor '" + in.name + "'";
    if (in.offset % alignment != 0) {
      return Status::Corruption(ctx + ": data offset " + std::to_string(in.offset) + " is not a multiple of the alignment " +
                                std::to_string(alignment));
    }
    if (in.offset > data_size || in.ref.nbytes > data_size - in.offset) {
      return Status::Corruption(ctx + ": data runs past end of file (offset " + std::to_string(in.offset) + ", " +
                                std::to_string(in.ref.nbytes) + " bytes, " + std::to_string(data_size) +
                                " bytes of tensor data in the file)");
    }
  }
  std::vector<const Info*> order;
  for (const Info& in : infos) order.push_back(&in);
  std::sort(order.begin(), order.end(), [](const Info* a, const Info* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    const Info* a = order[i - 1];
    const Info* b = order[i];
    if (a->offset + a->ref.nbytes > b->offset) {
      return Status::Corruption(path + ": tensor '" + b->name + "' overlaps tensor '" + a->name + "'");
    }
  }

  ModelFile mf;
  mf.path = path;
  mf.source_format = "gguf";
  st = read_model_metadata(md, &mf);
  if (!st.ok()) return st;
  const RwkvVersion declared = mf.hparams.version;
  for (Info& in : infos) {
    in.ref.data = file->data() + data_start + in.offset;
    mf.add_tensor(std::move(in.ref));
  }
  mf.storage.push_back(file);

  st = finalize_model_file(mf, /*keep_scalars=*/true);
  if (!st.ok()) return st;
  if (mf.hparams.version != declared) {
    return Status::Corruption(md.ctx(kKeyVersion) + ": says v" + version_name(declared) + " but the tensors are RWKV v" +
                              version_name(mf.hparams.version));
  }
  st = check_counts(md, mf.hparams);
  if (!st.ok()) return st;
  return mf;
}

}  // namespace rwkv
