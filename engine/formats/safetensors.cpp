// safetensors container: header parsing and validation (formats.md §3), and read_safetensors.
// The BlinkDL value transforms live in safetensors_import.cpp.
#include "engine/formats/safetensors.h"

#include <algorithm>
#include <cstring>

#include "engine/formats/safetensors_json.h"

namespace rwkv {
namespace {

// The reference parser's limit.
constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;
constexpr size_t kMaxRank = 8;

// Bytes per element of the dtypes safetensors defines with whole-byte elements; 0 = unknown.
size_t dtype_size(const std::string& d) {
  static const struct { const char* name; size_t size; } kTypes[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"F8_E8M0", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},     {"U32", 4},
      {"F32", 4},  {"I64", 8}, {"U64", 8}, {"F64", 8}};
  for (const auto& t : kTypes) {
    if (d == t.name) return t.size;
  }
  return 0;
}

Status parse_tensor_entry(const std::string& path, const std::string& name, const JsonValue& v, uint64_t buffer_size,
                          const uint8_t* buffer, SafetensorsTensor* out) {
  const std::string ctx = path + ": tensor '" + name + "'";
  if (v.kind != JsonValue::Kind::kObject) return Status::Corruption(ctx + ": header entry is not an object");
  const JsonValue* dtype = v.get("dtype");
  const JsonValue* shape = v.get("shape");
  const JsonValue* offsets = v.get("data_offsets");
  if (dtype == nullptr || dtype->kind != JsonValue::Kind::kString) return Status::Corruption(ctx + ": missing or bad \"dtype\"");
  if (shape == nullptr || shape->kind != JsonValue::Kind::kArray) return Status::Corruption(ctx + ": missing or bad \"shape\"");
  if (offsets == nullptr || offsets->kind != JsonValue::Kind::kArray || offsets->array.size() != 2 ||
      !offsets->array[0].is_uint || !offsets->array[1].is_uint) {
    return Status::Corruption(ctx + ": missing or bad \"data_offsets\" (want [begin, end])");
  }
  out->name = name;
  out->dtype = dtype->str;
  const size_t esize = dtype_size(out->dtype);
  if (esize == 0) {
    return Status::Unsupported(ctx + ": dtype '" + out->dtype + "' is not supported (use F32, F16 or BF16)");
  }
  if (shape->array.size() > kMaxRank) {
    return Status::Corruption(ctx + ": rank " + std::to_string(shape->array.size()) + " is out of range");
  }
  // Element count stays below 2^50, so the byte count cannot overflow.
  uint64_t elements = 1;
  for (const JsonValue& d : shape->array) {
    if (!d.is_uint) return Status::Corruption(ctx + ": shape holds a value that is not a non-negative integer");
    if (d.uint != 0 && d.uint > (1ull << 50) / (elements ? elements : 1)) {
      return Status::Corruption(ctx + ": shape is absurdly large");
    }
    elements *= d.uint;
    out->shape.push_back((int64_t)d.uint);
  }
  const uint64_t begin = offsets->array[0].uint, end = offsets->array[1].uint;
  if (begin > end || end > buffer_size) {
    return Status::Corruption(ctx + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                              "] fall outside the " + std::to_string(buffer_size) + "-byte data buffer");
  }
  if (end - begin != elements * esize) {
    return Status::Corruption(ctx + ": " + std::to_string(end - begin) + " data bytes do not match dtype " + out->dtype +
                              " x shape (" + std::to_string(elements * esize) + " bytes)");
  }
  out->data = buffer + begin;
  out->nbytes = (size_t)(end - begin);
  return Status::OK();
}

}  // namespace

Result<SafetensorsFile> parse_safetensors(const std::string& path) {
  auto mm = MmapFile::open(path);
  if (!mm.ok()) return mm.status();
  SafetensorsFile f;
  f.path = path;
  f.file = mm.value();
  const uint8_t* p = f.file->data();
  const size_t size = f.file->size();
  if (size < 8) return Status::Corruption(path + ": too short for a safetensors file (" + std::to_string(size) + " bytes)");
  uint64_t n;
  std::memcpy(&n, p, 8);
  if (n > kMaxHeaderBytes) {
    return Status::Corruption(path + ": header length " + std::to_string(n) + " exceeds the 100 MB limit");
  }
  if (n > size - 8) {
    return Status::Corruption(path + ": header length " + std::to_string(n) + " runs past the end of the file (" +
                              std::to_string(size) + " bytes)");
  }
  if (n < 2 || p[8] != '{') return Status::Corruption(path + ": header is not a JSON object");
  JsonValue root;
  std::string err;
  if (!parse_json(reinterpret_cast<const char*>(p + 8), (size_t)n, &root, &err)) {
    return Status::Corruption(path + ": header: " + err);
  }
  if (root.kind != JsonValue::Kind::kObject) return Status::Corruption(path + ": header is not a JSON object");

  const uint8_t* buffer = p + 8 + n;
  const uint64_t buffer_size = size - 8 - n;
  for (const auto& kv : root.object) {
    if (kv.first == "__metadata__") {
      if (kv.second.kind != JsonValue::Kind::kObject) return Status::Corruption(path + ": __metadata__ is not an object");
      for (const auto& m : kv.second.object) {
        if (m.second.kind != JsonValue::Kind::kString) {
          return Status::Corruption(path + ": __metadata__ entry '" + m.first + "' is not a string");
        }
        f.metadata[m.first] = m.second.str;
      }
      continue;
    }
    SafetensorsTensor t;
    Status st = parse_tensor_entry(path, kv.first, kv.second, buffer_size, buffer, &t);
    if (!st.ok()) return st;
    f.tensors.push_back(std::move(t));
  }

  std::vector<const SafetensorsTensor*> order;
  for (const SafetensorsTensor& t : f.tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const SafetensorsTensor* a, const SafetensorsTensor* b) {
    return a->data != b->data ? a->data < b->data : a->name < b->name;
  });
  for (size_t i = 1; i < order.size(); ++i) {
    if (order[i - 1]->data + order[i - 1]->nbytes > order[i]->data) {
      return Status::Corruption(path + ": tensor '" + order[i]->name + "' overlaps tensor '" + order[i - 1]->name + "'");
    }
  }
  std::vector<std::string> names;
  for (const SafetensorsTensor& t : f.tensors) names.push_back(t.name);
  std::sort(names.begin(), names.end());
  for (size_t i = 1; i < names.size(); ++i) {
    if (names[i] == names[i - 1]) return Status::Corruption(path + ": tensor '" + names[i] + "' appears twice");
  }
  return f;
}

Result<ModelFile> read_safetensors(const std::string& path) {
  Result<SafetensorsFile> f = parse_safetensors(path);
  if (!f.ok()) return f.status();
  return import_blinkdl(f.value());
}

}  // namespace rwkv
