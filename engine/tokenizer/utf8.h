// UTF-8 helpers shared by the tokenizers and StreamDecoder. Internal to engine/tokenizer.
//
//   std::string out;
//   size_t keep = utf8_incomplete_tail(bytes);              // 0..3 bytes that may still complete
//   utf8_append_replacing(bytes.substr(0, bytes.size() - keep), &out);
//
// "Valid" means well-formed UTF-8 as in Unicode §3.9 (no overlongs, no surrogates, nothing above
// U+10FFFF). Ill-formed input is replaced by U+FFFD one "maximal subpart" at a time (the
// W3C / Unicode recommended practice, also what ICU and Python's errors="replace" do), so a stray
// byte costs exactly one U+FFFD and never swallows the valid text after it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace rwkv {

// U+FFFD REPLACEMENT CHARACTER in UTF-8.
inline constexpr std::string_view kUtf8Replacement = "\xEF\xBF\xBD";

// Appends the UTF-8 encoding of `cp` to *out.
// REQUIRES: cp <= 0x10FFFF and cp is not a surrogate (0xD800..0xDFFF).
void append_utf8(uint32_t cp, std::string* out);

// True if `s` is entirely well-formed UTF-8.
bool utf8_is_valid(std::string_view s);

// Appends `bytes` to *out, copying well-formed sequences and writing one U+FFFD for each
// maximal ill-formed subpart. An incomplete sequence at the very end also becomes U+FFFD, so
// callers that expect more bytes should cut utf8_incomplete_tail() off first.
void utf8_append_replacing(std::string_view bytes, std::string* out);

// Length (0..3) of the trailing bytes of `s` that form a proper prefix of a well-formed
// sequence, i.e. bytes that could still become a character if more bytes arrive. Returns 0 when
// the tail is complete or already ill-formed (e.g. "\xE0\x80" can never complete).
size_t utf8_incomplete_tail(std::string_view s);

}  // namespace rwkv
