#include "engine/tokenizer/utf8.h"

namespace rwkv {
namespace {

// Total length of the sequence a lead byte announces (1..4), or 0 if `b` cannot start one
// (a continuation byte, an overlong lead C0/C1, or F5..FF).
int sequence_length(unsigned char b) {
  if (b < 0x80) return 1;
  if (b < 0xC2) return 0;
  if (b < 0xE0) return 2;
  if (b < 0xF0) return 3;
  if (b < 0xF5) return 4;
  return 0;
}

// How many bytes of p[0..n) belong to the sequence led by p[0], capped at `len`. The second
// byte's range depends on the lead (Unicode Table 3-7): this rejects overlongs (E0 80, F0 80),
// surrogates (ED A0..) and code points above U+10FFFF (F4 90..).
// REQUIRES: n >= 1, len == sequence_length(p[0]) >= 2.
size_t matched_prefix(const unsigned char* p, size_t n, int len) {
  size_t k = 1;
  while (k < static_cast<size_t>(len) && k < n) {
    unsigned char lo = 0x80, hi = 0xBF;
    if (k == 1) {
      if (p[0] == 0xE0) lo = 0xA0;
      else if (p[0] == 0xED) hi = 0x9F;
      else if (p[0] == 0xF0) lo = 0x90;
      else if (p[0] == 0xF4) hi = 0x8F;
    }
    if (p[k] < lo || p[k] > hi) break;
    ++k;
  }
  return k;
}

}  // namespace

void append_utf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool utf8_is_valid(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    const int len = sequence_length(p[i]);
    if (len == 0) return false;
    if (matched_prefix(p + i, n - i, len) != static_cast<size_t>(len)) return false;
    i += len;
  }
  return true;
}

void utf8_append_replacing(std::string_view bytes, std::string* out) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  out->reserve(out->size() + n);
  size_t i = 0;
  while (i < n) {
    // Copy ASCII runs in one go; they are the common case.
    size_t j = i;
    while (j < n && p[j] < 0x80) ++j;
    out->append(bytes.data() + i, j - i);
    i = j;
    if (i == n) break;
    const int len = sequence_length(p[i]);
    if (len == 0) {
      out->append(kUtf8Replacement);
      ++i;
      continue;
    }
    const size_t k = matched_prefix(p + i, n - i, len);
    if (k == static_cast<size_t>(len)) {
      out->append(bytes.data() + i, k);
    } else {
      out->append(kUtf8Replacement);
    }
    i += k;
  }
}

size_t utf8_incomplete_tail(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  // Walk back over at most 3 continuation bytes to the byte that would lead the last sequence.
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const unsigned char b = p[n - back];
    if ((b & 0xC0) == 0x80) continue;
    const int len = sequence_length(b);
    if (len <= static_cast<int>(back)) return 0;  // ASCII, complete, or not a lead at all
    return matched_prefix(p + n - back, back, len) == back ? back : 0;
  }
  return 0;
}

}  // namespace rwkv
