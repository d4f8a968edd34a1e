// A small strict JSON parser for safetensors headers (engine/ takes no JSON library).
//
//   JsonValue root;
//   std::string err;
//   if (!parse_json(text, n, &root, &err)) return Status::Corruption(path + ": " + err);
//
// Full JSON (RFC 8259) with limits: nesting depth <= 64. Numbers keep an exact uint64 when
// they are plain non-negative integers (safetensors offsets can exceed 2^53).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace rwkv {

struct JsonValue {
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };
  Kind kind = Kind::kNull;
  bool boolean = false;
  double number = 0;
  bool is_uint = false;  // number is a non-negative integer that fits uint64 (exact in `uint`)
  uint64_t uint = 0;
  std::string str;
  std::vector<JsonValue> array;
  std::vector<std::pair<std::string, JsonValue>> object;  // in file order; duplicates kept

  // First member named `key`, or nullptr (also when this is not an object).
  const JsonValue* get(const std::string& key) const;
};

// Parses exactly one JSON value from text[0..n) (surrounding whitespace allowed).
// On failure returns false and sets *error to "bad JSON at byte N: why".
bool parse_json(const char* text, size_t n, JsonValue* out, std::string* error);

}  // namespace rwkv
