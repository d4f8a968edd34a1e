// TokenizerSpec: the tokenizer that travels inside a model file.
#pragma once

#include <string>

namespace rwkv {

// kind: "world" (data = the World vocab .txt content), "neox" (data = tokenizer.json content),
// "bytes" (data empty; id = byte value), "" (none embedded).
struct TokenizerSpec {
  std::string kind;
  std::string data;
};

}  // namespace rwkv
