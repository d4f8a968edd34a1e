// Tokenizers: UTF-8 text <-> token ids for the vocabularies RWKV models use.
//
//   Result<TokenizerSpec> spec = read_tokenizer_file("rwkv_vocab_v20230424.txt");
//   if (!spec.ok()) return spec.status();
//   Result<std::unique_ptr<Tokenizer>> tok = make_tokenizer(spec.value());
//   if (!tok.ok()) return tok.status();
//   std::vector<int32_t> ids = tok.value()->encode("Hello world");
//   std::string text = tok.value()->decode(ids);   // == "Hello world"
//
// Kinds (shared/reference/tokenizers.md):
//   "world"  RWKV World vocab (rwkv_vocab_v20230424.txt or any file in its format): greedy
//            longest match on the UTF-8 bytes. Ids 1..65529 in the stock file; id 0 is
//            end-of-text and is not in the file.
//   "neox"   GPT-NeoX-20B byte-level BPE from a Hugging Face tokenizer.json (20B_tokenizer.json):
//            added tokens, NFC, GPT-2 pre-tokenization, BPE by merge rank.
//   "bytes"  id = byte value 0..255 (the tiny rwkv.cpp test models); no end-of-text id.
//
// Thread safety: a Tokenizer is immutable after construction except for the NeoX piece cache,
// which is internally locked; every const method may be called from many threads at once.
// For streaming output (partial UTF-8, stop strings) use StreamDecoder (stream_decoder.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/common/status.h"
#include "engine/tokenizer/tokenizer_spec.h"

namespace rwkv {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // "world", "neox" or "bytes"; a static string.
  virtual const char* kind() const = 0;

  // Token ids for `text`. Accepts any bytes and never fails:
  //   world: works on the raw bytes (invalid UTF-8 included). A byte with no token of its own
  //          (only possible with a reduced vocab lacking ids 1..256) is skipped.
  //   neox:  ill-formed UTF-8 is first replaced by U+FFFD (maximal subparts), then NFC etc.
  //          Added tokens are matched in the text like Hugging Face does, so the text
  //          "<|endoftext|>" yields id 0. Callers that must not let user text produce special
  //          ids have to filter the text themselves.
  //   bytes: one id per byte.
  // The empty string gives no ids. No BOS/EOS is added.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;

  // The raw bytes of token `id` (possibly a partial UTF-8 character). "" for ids outside the
  // vocabulary, including World's end-of-text id 0 (which has no text). NeoX added tokens,
  // the special "<|endoftext|>" (id 0) and "<|padding|>" (id 1) included, return their content
  // so that decode(encode(text)) == text; stop generation on eos_id() before decoding it.
  virtual std::string token_bytes(int32_t id) const = 0;

  // Largest id the tokenizer can produce or decode, plus one (world stock file: 65530;
  // neox 20B: 50277; bytes: 256). Model n_vocab may be larger (World models pad to 65536).
  virtual int32_t vocab_size() const = 0;

  // The end-of-text id the model emits: World 0, NeoX the id of "<|endoftext|>" (0 in the 20B
  // file; -1 if a tokenizer.json has no such token), bytes -1 (none).
  virtual int32_t eos_id() const { return -1; }

  // Concatenation of token_bytes(id) over `ids`. May be ill-formed UTF-8 (a token can be part
  // of a character); use StreamDecoder to get displayable text.
  std::string decode(const std::vector<int32_t>& ids) const;
};

// Builds a tokenizer from a spec: kind "world" (data = vocab .txt content), "neox"
// (data = tokenizer.json content) or "bytes" (data ignored).
// Errors: InvalidArgument for an empty kind, Unsupported for an unknown kind or a tokenizer.json
// using features we do not implement (names the field), Corruption for malformed data (World:
// names the line, "line 12: ..."; JSON: parser position or the offending field).
Result<std::unique_ptr<Tokenizer>> make_tokenizer(const TokenizerSpec& spec);

// Reads a tokenizer file and detects its kind from the content: a JSON object with a "model"
// member -> "neox"; lines "<id> <literal> <len>" -> "world" (every line is parsed and checked,
// so a file that passes here builds). The returned spec holds the whole file content.
// Errors name the file (and the line, for World files): NotFound if it does not exist, IOError
// if it cannot be read, Corruption for bad JSON or a malformed line, Unsupported if it is
// neither format.
Result<TokenizerSpec> read_tokenizer_file(const std::string& path);

}  // namespace rwkv
