#include "engine/tokenizer/neox_pretokenize.h"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/utf8.h>

namespace rwkv {
namespace {

enum CharClass : uint8_t { kLetter, kNumber, kSpace, kOther };

CharClass classify(UChar32 c) {
  if (c < 0x80) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return kLetter;
    if (c >= '0' && c <= '9') return kNumber;
    if (c == ' ' || (c >= 0x09 && c <= 0x0D)) return kSpace;
    return kOther;
  }
  if (c < 0) return kOther;  // ill-formed byte (excluded by REQUIRES; kept total)
  if (u_isUWhiteSpace(c)) return kSpace;
  switch (u_charType(c)) {
    case U_UPPERCASE_LETTER:
    case U_LOWERCASE_LETTER:
    case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER:
    case U_OTHER_LETTER:
      return kLetter;
    case U_DECIMAL_DIGIT_NUMBER:
    case U_LETTER_NUMBER:
    case U_OTHER_NUMBER:
      return kNumber;
    default:
      return kOther;
  }
}

struct Char {
  uint32_t offset;  // byte offset of the character in the text
  UChar32 cp;
  CharClass cls;
};

// End (char index) of the pattern match that starts at chars[i]. Mirrors the alternatives of
// the regex in order. REQUIRES: i < n.
size_t match_end(const std::vector<Char>& chars, size_t i) {
  const size_t n = chars.size();
  const UChar32 c = chars[i].cp;
  // 's|'t|'re|'ve|'m|'ll|'d  (lowercase only, as in GPT-2)
  if (c == '\'' && i + 1 < n) {
    const UChar32 c1 = chars[i + 1].cp;
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return i + 2;
    if (i + 2 < n) {
      const UChar32 c2 = chars[i + 2].cp;
      if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return i + 3;
    }
  }
  // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional U+0020 then a run of one class.
  // If the char after the space is whitespace, none of the three match.
  const size_t start = (c == ' ' && i + 1 < n) ? i + 1 : i;
  const CharClass cls = chars[start].cls;
  if (cls != kSpace) {
    size_t j = start + 1;
    while (j < n && chars[j].cls == cls) ++j;
    return j;
  }
  // `\s+(?!\S)`: the whitespace run, minus its last char when a non-space follows (so that
  // char can lead the next word); at the end of text the whole run. A single whitespace char
  // before a non-space fails here and falls to `\s+`, which takes just that char.
  size_t j = i;
  while (j < n && chars[j].cls == kSpace) ++j;
  if (j == n) return n;
  if (j - i >= 2) return j - 1;
  return j;
}

}  // namespace

Status nfc_available() {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(status);
  if (U_FAILURE(status) || nfc == nullptr) {
    return Status::Internal(std::string("ICU NFC normalizer unavailable: ") + u_errorName(status));
  }
  return Status::OK();
}

std::string nfc_normalize(std::string_view text) {
  bool ascii = true;
  for (char ch : text) {
    if (static_cast<unsigned char>(ch) >= 0x80) {
      ascii = false;
      break;
    }
  }
  // ASCII is always NFC.
  if (ascii) return std::string(text);
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(status);
  if (U_FAILURE(status)) return std::string(text);
  const icu::UnicodeString u =
      icu::UnicodeString::fromUTF8(icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
  if (nfc->isNormalized(u, status) && U_SUCCESS(status)) return std::string(text);
  status = U_ZERO_ERROR;
  const icu::UnicodeString normalized = nfc->normalize(u, status);
  if (U_FAILURE(status)) return std::string(text);
  std::string out;
  normalized.toUTF8String(out);
  return out;
}

void gpt2_split(std::string_view text, std::vector<std::string_view>* pieces) {
  std::vector<Char> chars;
  chars.reserve(text.size());
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const auto length = static_cast<int32_t>(text.size());
  int32_t i = 0;
  while (i < length) {
    const auto offset = static_cast<uint32_t>(i);
    UChar32 c;
    U8_NEXT(s, i, length, c);
    chars.push_back({offset, c, classify(c)});
  }
  size_t k = 0;
  while (k < chars.size()) {
    const size_t end = match_end(chars, k);
    const uint32_t begin_byte = chars[k].offset;
    const uint32_t end_byte = end < chars.size() ? chars[end].offset : static_cast<uint32_t>(text.size());
    pieces->push_back(text.substr(begin_byte, end_byte - begin_byte));
    k = end;
  }
}

}  // namespace rwkv
