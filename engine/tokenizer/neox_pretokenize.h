// Text preparation for the GPT-NeoX-20B byte-level BPE (tokenizers.md §3 steps 2-3). Internal to
// engine/tokenizer.
//
//   std::string nfc = nfc_normalize(segment);
//   std::vector<std::string_view> pieces;
//   gpt2_split(nfc, &pieces);          // "Hello world" -> "Hello", " world"
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "engine/common/status.h"

namespace rwkv {

// OK if ICU's NFC data is available; Internal otherwise. Call once before nfc_normalize().
Status nfc_available();

// Unicode NFC of `text`. ASCII-only and already-normalised text is returned unchanged.
// REQUIRES: text is well-formed UTF-8; nfc_available().ok(). Thread-safe.
std::string nfc_normalize(std::string_view text);

// Splits `text` with the GPT-2 / ByteLevel pre-tokenization pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// where \p{L} / \p{N} are the Unicode general categories L* / N* and \s is the White_Space
// property (Oniguruma's \s, which Hugging Face tokenizers uses). Appends views into `text` that
// cover it exactly, in order. Hand-written scanner; same result as the regex (alternatives are
// tried in order at each position, each quantifier greedy).
// REQUIRES: text is well-formed UTF-8 (ill-formed bytes would be classed as punctuation).
void gpt2_split(std::string_view text, std::vector<std::string_view>* pieces);

}  // namespace rwkv
