// Parser for the RWKV World vocab format (rwkv_vocab_v20230424.txt). Internal to
// engine/tokenizer; the tokenizer itself is built by make_world_tokenizer() (world_tokenizer.h).
//
//   Result<std::vector<WorldVocabEntry>> r = parse_world_vocab(file_content);
//
// Format (tokenizers.md §2.1): one token per line, `<id> <literal> <byte_len>`, split at the
// first space (id) and the last space (length). The literal is a Python str ('..' or "..",
// escapes decoded then UTF-8 encoded; \xHH is the code point U+00HH) or bytes (b'..', \xHH is a
// raw byte). LF or CRLF line ends; blank lines and a leading UTF-8 BOM are ignored.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/common/status.h"

namespace rwkv {

struct WorldVocabEntry {
  int32_t id = 0;     // 1..kMaxWorldTokenId
  std::string bytes;  // the token's bytes, non-empty
  int line = 0;       // 1-based line number in the file, for error messages
};

// Largest id a World vocab line may carry. Ids need not be dense, but token_bytes() uses a table
// indexed by id, so a bound keeps a one-line file from allocating gigabytes.
inline constexpr int32_t kMaxWorldTokenId = (1 << 24) - 1;

// Decodes one Python literal (the middle field of a vocab line) into *out (appended).
// Returns Corruption (message without line number) on a malformed literal: missing quotes, an
// unescaped quote inside, an unknown or truncated escape, a surrogate or out-of-range \u/\U, a
// non-ASCII character in a bytes literal, or ill-formed UTF-8 in a str literal.
Status parse_python_literal(std::string_view literal, std::string* out);

// Parses every line. Entries come back sorted by their bytes (byte-wise, unsigned), which is
// the order a trie is built in.
// Errors: Corruption "line N: ..." for a malformed line, a length column that disagrees with
// the decoded literal, id 0 (reserved for end-of-text), an id above kMaxWorldTokenId, a
// duplicate id or duplicate token bytes (both lines named); Corruption if there are no tokens.
Result<std::vector<WorldVocabEntry>> parse_world_vocab(std::string_view data);

}  // namespace rwkv
