// GGUF v3 constants and our metadata keys (formats.md §2), shared by the reader (gguf.cpp)
// and the writer (gguf_writer.cpp). The public entry points are read_gguf / write_gguf in
// model_file.h.
//
// Our files: general.architecture = "rwkv_edge"; tensors carry canonical BlinkDL names and
// rwkv.cpp values (model_file.h), so a llama.cpp RWKV GGUF (architecture rwkv6/rwkv7, raw
// values, other names) is refused rather than misread.
#pragma once

#include <cstdint>
#include <string>

namespace rwkv {
namespace gguf {

constexpr uint32_t kMagic = 0x46554747;  // bytes "GGUF"
constexpr uint32_t kVersion = 3;
constexpr uint32_t kDefaultAlignment = 32;

// Metadata value types (§2.2).
enum ValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
  kValueTypeCount = 13,
};

constexpr char kArchitecture[] = "rwkv_edge";

// Keys we write and read.
constexpr char kKeyArchitecture[] = "general.architecture";
constexpr char kKeyName[] = "general.name";
constexpr char kKeyAlignment[] = "general.alignment";
constexpr char kKeyVersion[] = "rwkv_edge.version";
constexpr char kKeyVocabSize[] = "rwkv_edge.vocab_size";
constexpr char kKeyEmbeddingLength[] = "rwkv_edge.embedding_length";
constexpr char kKeyBlockCount[] = "rwkv_edge.block_count";
constexpr char kKeyFeedForwardLength[] = "rwkv_edge.feed_forward_length";
constexpr char kKeyHeadCount[] = "rwkv_edge.head_count";
constexpr char kKeyHeadSize[] = "rwkv_edge.head_size";
constexpr char kKeyGroupNormEps[] = "rwkv_edge.group_norm_epsilon";
constexpr char kKeyRescaleEvery[] = "rwkv_edge.rescale_every";
constexpr char kKeyValueForm[] = "rwkv_edge.value_form";
constexpr char kKeyTokenizerKind[] = "tokenizer.rwkv_edge.kind";
constexpr char kKeyTokenizerData[] = "tokenizer.rwkv_edge.data";

// The only value form we write: transforms baked in as rwkv.cpp does (model_file.h).
constexpr char kValueFormRwkvcpp[] = "rwkvcpp";

// True for keys the writer produces itself from typed fields; mf.metadata entries with these
// names are not written again and the reader does not copy them into mf.metadata.
bool is_reserved_key(const std::string& key);

}  // namespace gguf
}  // namespace rwkv
