#include "engine/formats/model_file.h"

#include <cstdio>
#include <cstring>

namespace rwkv {

const char* version_name(RwkvVersion v) {
  switch (v) {
    case RwkvVersion::kV4: return "4";
    case RwkvVersion::kV5_1: return "5.1";
    case RwkvVersion::kV5_2: return "5.2";
    case RwkvVersion::kV6: return "6";
    case RwkvVersion::kV7: return "7";
  }
  return "?";
}

bool parse_version(const std::string& s, RwkvVersion* out) {
  static const struct { const char* name; RwkvVersion v; } kNames[] = {
      {"4", RwkvVersion::kV4}, {"5.1", RwkvVersion::kV5_1}, {"5.2", RwkvVersion::kV5_2},
      {"6", RwkvVersion::kV6}, {"7", RwkvVersion::kV7}};
  for (const auto& n : kNames) {
    if (s == n.name) {
      *out = n.v;
      return true;
    }
  }
  return false;
}

std::string TensorRef::shape_string() const {
  std::string s = "[";
  for (int i = 0; i < n_dims; ++i) {
    if (i) s += ", ";
    s += std::to_string(ne[i]);
  }
  return s + "]";
}

const TensorRef* ModelFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors[it->second];
}

void ModelFile::add_tensor(TensorRef t) {
  auto it = index_.find(t.name);
  if (it != index_.end()) {
    tensors[it->second] = std::move(t);
    return;
  }
  index_[t.name] = tensors.size();
  tensors.push_back(std::move(t));
}

void ModelFile::reindex() {
  index_.clear();
  for (size_t i = 0; i < tensors.size(); ++i) index_[tensors[i].name] = i;
}

Result<ModelFile> open_model_file(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return Status::NotFound(path + ": cannot open model file: " + std::strerror(errno));
  }
  uint8_t head[16] = {0};
  const size_t got = std::fread(head, 1, sizeof(head), f);
  std::fclose(f);
  if (got >= 4 && std::memcmp(head, "GGUF", 4) == 0) return read_gguf(path);
  // rwkv.cpp writes the number 0x67676d66 little-endian: bytes "fmgg".
  if (got >= 4 && std::memcmp(head, "fmgg", 4) == 0) return read_rwkvcpp(path);
  // safetensors: uint64 header length, then a JSON object.
  if (got >= 9 && head[8] == '{') return read_safetensors(path);
  if (got < 8) return Status::Corruption(path + ": file is too short to be a model (" + std::to_string(got) + " bytes)");
  char magic[32];
  std::snprintf(magic, sizeof(magic), "%02x %02x %02x %02x", head[0], head[1], head[2], head[3]);
  return Status::Corruption(path + ": unknown file format (first bytes " + magic +
                            "); expected GGUF, rwkv.cpp .bin or safetensors");
}

}  // namespace rwkv
