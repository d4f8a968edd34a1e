#include "engine/tokenizer/world_vocab.h"

#include <algorithm>

#include "engine/tokenizer/utf8.h"

namespace rwkv {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Reads exactly `n` hex digits at s[pos..]; false if there are fewer.
bool read_hex(std::string_view s, size_t pos, int n, uint32_t* value) {
  if (pos + n > s.size()) return false;
  uint32_t v = 0;
  for (int k = 0; k < n; ++k) {
    const int h = hex_value(s[pos + k]);
    if (h < 0) return false;
    v = v * 16 + static_cast<uint32_t>(h);
  }
  *value = v;
  return true;
}

// Parses a decimal field of at most 9 digits (so it fits int32 without overflow checks).
bool parse_decimal(std::string_view s, int64_t* value) {
  if (s.empty() || s.size() > 9) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *value = v;
  return true;
}

// Shows a line in an error message: printable ASCII as is, the rest as \xHH, cut at 60 chars.
std::string quote_for_message(std::string_view s) {
  std::string out = "'";
  size_t shown = 0;
  for (unsigned char c : s) {
    if (++shown > 60) {
      out += "...";
      break;
    }
    if (c >= 0x20 && c < 0x7F) {
      out.push_back(static_cast<char>(c));
    } else {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out + "'";
}

// Decodes one escape sequence starting at body[i] == '\\'. Advances *i past it.
Status parse_escape(std::string_view body, size_t* i, bool is_bytes, std::string* out) {
  if (*i + 1 >= body.size()) return Status::Corruption("literal ends with a lone backslash");
  const char e = body[*i + 1];
  *i += 2;
  switch (e) {
    case '\\': out->push_back('\\'); return Status::OK();
    case '\'': out->push_back('\''); return Status::OK();
    case '"': out->push_back('"'); return Status::OK();
    case 'n': out->push_back('\n'); return Status::OK();
    case 'r': out->push_back('\r'); return Status::OK();
    case 't': out->push_back('\t'); return Status::OK();
    case 'a': out->push_back('\a'); return Status::OK();
    case 'b': out->push_back('\b'); return Status::OK();
    case 'f': out->push_back('\f'); return Status::OK();
    case 'v': out->push_back('\v'); return Status::OK();
    default: break;
  }
  uint32_t cp = 0;
  if (e >= '0' && e <= '7') {
    // Python octal escape: one to three digits.
    cp = static_cast<uint32_t>(e - '0');
    for (int k = 0; k < 2 && *i < body.size() && body[*i] >= '0' && body[*i] <= '7'; ++k) {
      cp = cp * 8 + static_cast<uint32_t>(body[(*i)++] - '0');
    }
    if (is_bytes && cp > 0xFF) return Status::Corruption("octal escape above \\377 in a bytes literal");
  } else if (e == 'x') {
    if (!read_hex(body, *i, 2, &cp)) return Status::Corruption("\\x needs two hex digits");
    *i += 2;
  } else if ((e == 'u' || e == 'U') && !is_bytes) {
    const int n = e == 'u' ? 4 : 8;
    if (!read_hex(body, *i, n, &cp)) {
      return Status::Corruption(std::string("\\") + e + " needs " + std::to_string(n) + " hex digits");
    }
    *i += n;
    if (cp > 0x10FFFF) return Status::Corruption("code point above U+10FFFF");
    if (cp >= 0xD800 && cp <= 0xDFFF) return Status::Corruption("surrogate code point (not encodable as UTF-8)");
  } else {
    return Status::Corruption(std::string("unknown escape \\") + e);
  }
  // In bytes, numeric escapes are raw bytes; in str they are code points, UTF-8 encoded
  // (the vocab line `2423 '\x80' 2` is the two bytes C2 80).
  if (is_bytes) {
    out->push_back(static_cast<char>(cp));
  } else {
    append_utf8(cp, out);
  }
  return Status::OK();
}

}  // namespace

Status parse_python_literal(std::string_view literal, std::string* out) {
  bool is_bytes = false;
  if (!literal.empty() && (literal[0] == 'b' || literal[0] == 'B')) {
    is_bytes = true;
    literal.remove_prefix(1);
  }
  if (literal.size() < 2 || (literal[0] != '\'' && literal[0] != '"') || literal.back() != literal[0]) {
    return Status::Corruption("literal is not a quoted Python str or bytes");
  }
  const char quote = literal[0];
  const std::string_view body = literal.substr(1, literal.size() - 2);
  const size_t start = out->size();
  size_t i = 0;
  while (i < body.size()) {
    const char c = body[i];
    if (c == '\\') {
      Status s = parse_escape(body, &i, is_bytes, out);
      if (!s.ok()) return s;
      continue;
    }
    if (c == quote) return Status::Corruption("unescaped quote inside the literal");
    if (is_bytes && static_cast<unsigned char>(c) >= 0x80) {
      return Status::Corruption("non-ASCII character in a bytes literal");
    }
    out->push_back(c);
    ++i;
  }
  if (!is_bytes && !utf8_is_valid(std::string_view(*out).substr(start))) {
    return Status::Corruption("str literal is not valid UTF-8");
  }
  return Status::OK();
}

Result<std::vector<WorldVocabEntry>> parse_world_vocab(std::string_view data) {
  if (data.substr(0, 3) == "\xEF\xBB\xBF") data.remove_prefix(3);
  std::vector<WorldVocabEntry> entries;
  // The stock file has 65529 lines of ~17 bytes; reserving avoids regrowth.
  entries.reserve(data.size() / 16 + 1);
  int line_no = 0;
  size_t pos = 0;
  while (pos < data.size()) {
    size_t end = data.find('\n', pos);
    if (end == std::string_view::npos) end = data.size();
    std::string_view line = data.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;

    auto fail = [&](const std::string& what) {
      return Status::Corruption("line " + std::to_string(line_no) + ": " + what + " in " +
                                quote_for_message(line));
    };
    const size_t first_space = line.find(' ');
    const size_t last_space = line.rfind(' ');
    if (first_space == std::string_view::npos || last_space == first_space) {
      return fail("expected '<id> <literal> <byte_len>'");
    }
    int64_t id = 0, len = 0;
    if (!parse_decimal(line.substr(0, first_space), &id)) return fail("bad token id");
    if (!parse_decimal(line.substr(last_space + 1), &len)) return fail("bad byte length");
    if (id == 0) return fail("id 0 is reserved for end-of-text");
    if (id > kMaxWorldTokenId) return fail("id above " + std::to_string(kMaxWorldTokenId));

    WorldVocabEntry entry;
    entry.id = static_cast<int32_t>(id);
    entry.line = line_no;
    Status s = parse_python_literal(line.substr(first_space + 1, last_space - first_space - 1), &entry.bytes);
    if (!s.ok()) return fail(s.message());
    if (static_cast<int64_t>(entry.bytes.size()) != len) {
      return fail("literal decodes to " + std::to_string(entry.bytes.size()) +
                  " bytes but the length column says " + std::to_string(len));
    }
    if (entry.bytes.empty()) return fail("empty token");
    entries.push_back(std::move(entry));
  }
  if (entries.empty()) return Status::Corruption("World vocab has no tokens");

  // Duplicate checks, reported with both line numbers: ids via a flat table (ids are bounded),
  // bytes by sorting, which is also the order the trie builder wants.
  int32_t max_id = 0;
  for (const auto& e : entries) max_id = std::max(max_id, e.id);
  std::vector<int> line_of_id(static_cast<size_t>(max_id) + 1, 0);
  for (const auto& e : entries) {
    int& seen = line_of_id[static_cast<size_t>(e.id)];
    if (seen != 0) {
      return Status::Corruption("line " + std::to_string(e.line) + ": id " + std::to_string(e.id) +
                                " already used on line " + std::to_string(seen));
    }
    seen = e.line;
  }
  std::sort(entries.begin(), entries.end(),
            [](const WorldVocabEntry& a, const WorldVocabEntry& b) { return a.bytes < b.bytes; });
  for (size_t k = 1; k < entries.size(); ++k) {
    const auto& a = entries[k - 1];
    const auto& b = entries[k];
    if (a.bytes == b.bytes) {
      const auto& later = a.line > b.line ? a : b;
      const auto& earlier = a.line > b.line ? b : a;
      return Status::Corruption("line " + std::to_string(later.line) + ": token bytes repeat line " +
                                std::to_string(earlier.line));
    }
  }
  return entries;
}

}  // namespace rwkv
