// Tokenizer::decode, the byte-level tokenizer, make_tokenizer and read_tokenizer_file.
#include "engine/tokenizer/tokenizer.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "engine/tokenizer/neox_tokenizer.h"
#include "engine/tokenizer/world_tokenizer.h"
#include "engine/tokenizer/world_vocab.h"

namespace rwkv {
namespace {

// The tiny rwkv.cpp test models: token id = byte value (tokenizers.md §4).
class ByteTokenizer final : public Tokenizer {
 public:
  const char* kind() const override { return "bytes"; }
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids;
    ids.reserve(text.size());
    for (char c : text) ids.push_back(static_cast<uint8_t>(c));
    return ids;
  }
  std::string token_bytes(int32_t id) const override {
    if (id < 0 || id > 255) return std::string();
    return std::string(1, static_cast<char>(id));
  }
  int32_t vocab_size() const override { return 256; }
};

// Reads a whole file. NotFound if it does not exist, IOError for other failures.
Result<std::string> read_file(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    const int err = errno;
    std::string msg = path + ": " + std::strerror(err);
    if (err == ENOENT || err == ENOTDIR) return Status::NotFound(msg);
    return Status::IOError(msg);
  }
  std::string data;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) data.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  const int err = errno;
  std::fclose(f);
  if (failed) return Status::IOError(path + ": read failed: " + std::strerror(err));
  return data;
}

}  // namespace

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) out += token_bytes(id);
  return out;
}

Result<std::unique_ptr<Tokenizer>> make_tokenizer(const TokenizerSpec& spec) {
  if (spec.kind == "world") return make_world_tokenizer(spec.data);
  if (spec.kind == "neox") return make_neox_tokenizer(spec.data);
  if (spec.kind == "bytes") return std::unique_ptr<Tokenizer>(new ByteTokenizer());
  if (spec.kind.empty()) return Status::InvalidArgument("no tokenizer: the tokenizer kind is empty");
  return Status::Unsupported("unknown tokenizer kind '" + spec.kind + "' (expected world, neox or bytes)");
}

Result<TokenizerSpec> read_tokenizer_file(const std::string& path) {
  Result<std::string> data = read_file(path);
  if (!data.ok()) return data.status();
  const std::string& text = data.value();

  // Sniff the first meaningful character: '{' is JSON, a digit starts a World vocab line.
  size_t i = text.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;
  while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n')) ++i;
  if (i == text.size()) return Status::Corruption(path + ": empty tokenizer file");

  TokenizerSpec spec;
  if (text[i] == '{') {
    Status s = check_neox_json(text);
    if (!s.ok()) return s.with_context(path);
    spec.kind = "neox";
  } else if (text[i] >= '0' && text[i] <= '9') {
    Result<std::vector<WorldVocabEntry>> entries = parse_world_vocab(text);
    if (!entries.ok()) return entries.status().with_context(path);
    spec.kind = "world";
  } else {
    return Status::Unsupported(path +
                               ": not a tokenizer file (expected a tokenizer.json object with \"model\" or "
                               "World vocab lines \"<id> <literal> <byte_len>\")");
  }
  spec.data = std::move(data).value();
  return spec;
}

}  // namespace rwkv
