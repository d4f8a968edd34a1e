// Helpers shared by the tokenizer tests.
#pragma once

#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

#include "engine/tokenizer/tokenizer.h"

namespace rwkv::test {

inline std::string shared_dir() { return std::string(RWKV_EDGE_SOURCE_DIR) + "/../shared"; }
inline std::string world_vocab_path() { return shared_dir() + "/tokenizers/rwkv_vocab_v20230424.txt"; }
inline std::string neox_json_path() { return shared_dir() + "/tokenizers/20B_tokenizer.json"; }

inline std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A scratch directory removed (with its files) when the object dies.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/rwkv_tok_test_XXXXXX";
    const char* p = mkdtemp(tmpl);
    REQUIRE(p != nullptr);
    path_ = p;
  }
  ~TempDir() {
    for (const auto& f : files_) std::remove(f.c_str());
    rmdir(path_.c_str());
  }
  std::string write(const std::string& name, const std::string& content) {
    const std::string file = path_ + "/" + name;
    std::ofstream out(file, std::ios::binary);
    out << content;
    files_.push_back(file);
    return file;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<std::string> files_;
};

// Loads a tokenizer from a file in shared/, failing the test on error. Loaded once per process.
inline const Tokenizer& shared_tokenizer(const std::string& path) {
  static std::vector<std::pair<std::string, std::unique_ptr<Tokenizer>>> loaded;
  for (const auto& [p, t] : loaded) {
    if (p == path) return *t;
  }
  Result<TokenizerSpec> spec = read_tokenizer_file(path);
  REQUIRE_MESSAGE(spec.ok(), spec.status().to_string());
  Result<std::unique_ptr<Tokenizer>> tok = make_tokenizer(spec.value());
  REQUIRE_MESSAGE(tok.ok(), tok.status().to_string());
  loaded.emplace_back(path, std::move(tok).value());
  return *loaded.back().second;
}
inline const Tokenizer& world() { return shared_tokenizer(world_vocab_path()); }
inline const Tokenizer& neox() { return shared_tokenizer(neox_json_path()); }

inline std::vector<int32_t> ids_of(std::initializer_list<int32_t> l) { return std::vector<int32_t>(l); }


// Checks every vector of a golden file (shared/tokenizers/golden/*.json: [{text, ids,
// roundtrip}]): encode(text) == ids, and decode(ids) == text when roundtrip is true.
// Returns the number of vectors checked.
inline int check_golden(const Tokenizer& tok, const std::string& golden_file) {
  const nlohmann::json cases = nlohmann::json::parse(read_all(shared_dir() + "/tokenizers/golden/" + golden_file));
  int n = 0;
  for (const auto& c : cases) {
    const std::string text = c.at("text").get<std::string>();
    const std::vector<int32_t> want = c.at("ids").get<std::vector<int32_t>>();
    CAPTURE(text);
    CHECK(tok.encode(text) == want);
    if (c.at("roundtrip").get<bool>()) CHECK(tok.decode(want) == text);
    ++n;
  }
  return n;
}

}  // namespace rwkv::test
