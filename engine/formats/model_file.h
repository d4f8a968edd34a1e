// ModelFile: the tensors and metadata of one model, in the engine's canonical form, whatever
// file they came from (rwkv.cpp .bin, safetensors, our GGUF).
//
//   Result<ModelFile> mf = open_model_file("model.gguf");      // format sniffed from magic
//   if (!mf.ok()) return mf.status();
//   const TensorRef* emb = mf->find("emb.weight");
//
// Canonical form = rwkv.cpp's ggmf conventions, so every importer converts to it and the
// engine reads one layout:
//   * BlinkDL tensor names ("blocks.3.att.key.weight"); dims fastest first (ggml order), so a
//     2-D matrix W[out, in] has ne = {in, out} and is stored row-major out x in.
//   * value transforms baked in as rwkv.cpp's converter does (rwkv-math.md §3): v4
//     time_decay = -exp(w); v5.1 time_decay = exp(-exp(w)) and time_first = exp(u); v5.2
//     time_decay = exp(-exp(w)); v6 time_decay raw; v6 time_maa_w1/time_decay_w1/_w2 and v7
//     w1,w2,a1,a2,v1,v2,g1,g2 transposed to out x in; v6 time_maa_w2 as [D, C, 5] (five C x D
//     maps, order w,k,v,r,g); v7 x_r..x_g concatenated into att.x_rwkvag [C,1,6].
//   * 1-D vectors may carry unit dims exactly as rwkv.cpp writes them ([1,S,H], [C,1,1], ...);
//     consumers look at element counts, not at the unit dims.
//
// Ownership: a ModelFile owns its bytes (an mmap or heap buffers) through `storage`; TensorRef
// pointers stay valid as long as any copy of the ModelFile lives. Copies share the storage.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/common/dtype.h"
#include "engine/common/status.h"
#include "engine/tokenizer/tokenizer_spec.h"

namespace rwkv {

enum class RwkvVersion { kV4, kV5_1, kV5_2, kV6, kV7 };
const char* version_name(RwkvVersion v);  // "4", "5.1", "5.2", "6", "7"
// Parses "4", "5.1", "5.2", "6", "7".
bool parse_version(const std::string& s, RwkvVersion* out);

struct Hparams {
  RwkvVersion version = RwkvVersion::kV4;
  int64_t n_vocab = 0;
  int64_t n_embd = 0;     // C
  int64_t n_layer = 0;    // L
  int64_t n_ffn = 0;      // F
  int64_t n_head = 0;     // H (0 for v4)
  int64_t head_size = 0;  // S (0 for v4)
  // GroupNorm epsilon of att.ln_x (v5+). rwkv.cpp files: 1e-5 for v5, 64e-5 for v6/v7.
  float gn_eps = 1e-5f;
  // x is halved after every `rescale_every` blocks (0 = never); rwkv-math.md §11.
  int32_t rescale_every = 0;
};

struct TensorRef {
  std::string name;
  DType type = DType::kF32;
  int n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};  // fastest first; unused dims are 1
  const uint8_t* data = nullptr;
  size_t nbytes = 0;

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  std::string shape_string() const;  // "[64, 256]"
};

// Keeps the bytes behind TensorRef::data alive.
struct Storage {
  virtual ~Storage() = default;
};

// A heap-owned byte buffer (importers that transform values use these).
struct BufferStorage : Storage {
  std::vector<std::vector<uint8_t>> buffers;
  uint8_t* add(size_t n) {
    buffers.emplace_back(n);
    return buffers.back().data();
  }
};

struct ModelFile {
  std::string path;          // where it was read from (for messages)
  std::string source_format; // "rwkvcpp", "safetensors", "gguf"
  Hparams hparams;
  TokenizerSpec tokenizer;
  // Free-form string metadata carried through conversions ("general.name", ...).
  std::map<std::string, std::string> metadata;
  std::vector<TensorRef> tensors;
  std::vector<std::shared_ptr<Storage>> storage;

  const TensorRef* find(const std::string& name) const;
  // Adds or replaces a tensor; keeps the name index in sync.
  void add_tensor(TensorRef t);
  void reindex();

 private:
  std::unordered_map<std::string, size_t> index_;
};

// Reads any supported file, detected from its first bytes: rwkv.cpp ggmf (.bin), GGUF v3,
// safetensors. On success the tensors are in canonical form and `hparams` is filled and
// checked by finalize_model_file(). Errors name the file and, where it applies, the tensor.
Result<ModelFile> open_model_file(const std::string& path);

// Individual readers (open_model_file dispatches to these).
Result<ModelFile> read_rwkvcpp(const std::string& path);
Result<ModelFile> read_gguf(const std::string& path);
Result<ModelFile> read_safetensors(const std::string& path);

// Detects the version from tensor names, infers n_vocab/n_embd/... from shapes and checks
// that every tensor the version needs is present with the right shape and a usable type.
// Keeps fields already set in hparams that cannot be inferred (gn_eps, rescale_every) when
// `keep_scalars` is true; otherwise sets the rwkv.cpp defaults for the detected version.
Status finalize_model_file(ModelFile& mf, bool keep_scalars);

// Writers.
struct GgufWriteOptions {
  // Convert 2-D matrices to this type (f32, f16 or q8_0); 1-D vectors and the small v6/v7
  // low-rank maps stay f32, as in rwkv.cpp. kF32 + keep_types=true writes types unchanged.
  DType matrix_type = DType::kF16;
  bool keep_types = false;
  uint32_t alignment = 32;
};
Status write_gguf(const ModelFile& mf, const std::string& path, const GgufWriteOptions& opt);
// rwkv.cpp ggmf version 101, tensors in their current types (f32/f16/q4_x/q5_x/q8_0).
Status write_rwkvcpp(const ModelFile& mf, const std::string& path);

}  // namespace rwkv
