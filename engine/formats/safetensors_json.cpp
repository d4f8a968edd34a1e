#include "engine/formats/safetensors_json.h"

#include <cstdlib>
#include <cstring>

namespace rwkv {

const JsonValue* JsonValue::get(const std::string& key) const {
  if (kind != Kind::kObject) return nullptr;
  for (const auto& kv : object) {
    if (kv.first == key) return &kv.second;
  }
  return nullptr;
}

namespace {

constexpr int kMaxDepth = 64;

class Parser {
 public:
  Parser(const char* p, size_t n) : p_(p), n_(n) {}

  bool parse(JsonValue* out, std::string* error) {
    skip_ws();
    if (!value(out, 0)) return fail_out(error);
    skip_ws();
    if (pos_ != n_) {
      why_ = "trailing characters after the JSON value";
      return fail_out(error);
    }
    return true;
  }

 private:
  bool fail_out(std::string* error) {
    *error = "bad JSON at byte " + std::to_string(pos_) + ": " + why_;
    return false;
  }
  bool fail(const char* why) {
    why_ = why;
    return false;
  }
  void skip_ws() {
    while (pos_ < n_ && (p_[pos_] == ' ' || p_[pos_] == '\t' || p_[pos_] == '\n' || p_[pos_] == '\r')) ++pos_;
  }
  bool literal(const char* word) {
    const size_t len = std::strlen(word);
    if (n_ - pos_ < len || std::memcmp(p_ + pos_, word, len) != 0) return fail("unexpected token");
    pos_ += len;
    return true;
  }

  bool value(JsonValue* out, int depth) {
    if (depth > kMaxDepth) return fail("nested too deeply");
    if (pos_ >= n_) return fail("unexpected end");
    const char c = p_[pos_];
    switch (c) {
      case '{': return object(out, depth);
      case '[': return array(out, depth);
      case '"': out->kind = JsonValue::Kind::kString; return string(&out->str);
      case 't': out->kind = JsonValue::Kind::kBool; out->boolean = true; return literal("true");
      case 'f': out->kind = JsonValue::Kind::kBool; out->boolean = false; return literal("false");
      case 'n': out->kind = JsonValue::Kind::kNull; return literal("null");
      default: return number(out);
    }
  }

  bool object(JsonValue* out, int depth) {
    out->kind = JsonValue::Kind::kObject;
    ++pos_;  // '{'
    skip_ws();
    if (pos_ < n_ && p_[pos_] == '}') {
      ++pos_;
      return true;
    }
    for (;;) {
      skip_ws();
      if (pos_ >= n_ || p_[pos_] != '"') return fail("expected a member name");
      std::string key;
      if (!string(&key)) return false;
      skip_ws();
      if (pos_ >= n_ || p_[pos_] != ':') return fail("expected ':'");
      ++pos_;
      skip_ws();
      out->object.emplace_back(std::move(key), JsonValue());
      if (!value(&out->object.back().second, depth + 1)) return false;
      skip_ws();
      if (pos_ >= n_) return fail("unexpected end inside an object");
      if (p_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (p_[pos_] == '}') {
        ++pos_;
        return true;
      }
      return fail("expected ',' or '}'");
    }
  }

  bool array(JsonValue* out, int depth) {
    out->kind = JsonValue::Kind::kArray;
    ++pos_;  // '['
    skip_ws();
    if (pos_ < n_ && p_[pos_] == ']') {
      ++pos_;
      return true;
    }
    for (;;) {
      skip_ws();
      out->array.emplace_back();
      if (!value(&out->array.back(), depth + 1)) return false;
      skip_ws();
      if (pos_ >= n_) return fail("unexpected end inside an array");
      if (p_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (p_[pos_] == ']') {
        ++pos_;
        return true;
      }
      return fail("expected ',' or ']'");
    }
  }

  static void put_utf8(uint32_t cp, std::string* s) {
    if (cp < 0x80) {
      s->push_back((char)cp);
    } else if (cp < 0x800) {
      s->push_back((char)(0xc0 | (cp >> 6)));
      s->push_back((char)(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
      s->push_back((char)(0xe0 | (cp >> 12)));
      s->push_back((char)(0x80 | ((cp >> 6) & 0x3f)));
      s->push_back((char)(0x80 | (cp & 0x3f)));
    } else {
      s->push_back((char)(0xf0 | (cp >> 18)));
      s->push_back((char)(0x80 | ((cp >> 12) & 0x3f)));
      s->push_back((char)(0x80 | ((cp >> 6) & 0x3f)));
      s->push_back((char)(0x80 | (cp & 0x3f)));
    }
  }

  bool hex4(uint32_t* out) {
    if (n_ - pos_ < 4) return fail("short \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = p_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
      else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
      else return fail("bad hex digit in \\u escape");
    }
    *out = v;
    return true;
  }

  bool string(std::string* out) {
    ++pos_;  // opening quote
    for (;;) {
      if (pos_ >= n_) return fail("unterminated string");
      const char c = p_[pos_++];
      if (c == '"') return true;
      if ((unsigned char)c < 0x20) return fail("control character in a string");
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (pos_ >= n_) return fail("unterminated escape");
      const char e = p_[pos_++];
      switch (e) {
        case '"': out->push_back('"'); break;
        case '\\': out->push_back('\\'); break;
        case '/': out->push_back('/'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          uint32_t cp;
          if (!hex4(&cp)) return false;
          if (cp >= 0xd800 && cp < 0xdc00) {  // high surrogate: needs a low one
            uint32_t lo;
            if (n_ - pos_ < 2 || p_[pos_] != '\\' || p_[pos_ + 1] != 'u') return fail("lone surrogate");
            pos_ += 2;
            if (!hex4(&lo)) return false;
            if (lo < 0xdc00 || lo >= 0xe000) return fail("bad surrogate pair");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          } else if (cp >= 0xdc00 && cp < 0xe000) {
            return fail("lone surrogate");
          }
          put_utf8(cp, out);
          break;
        }
        default:
          return fail("unknown escape");
      }
    }
  }

  bool number(JsonValue* out) {
    out->kind = JsonValue::Kind::kNumber;
    const size_t start = pos_;
    if (pos_ < n_ && p_[pos_] == '-') ++pos_;
    if (pos_ >= n_ || !(p_[pos_] >= '0' && p_[pos_] <= '9')) return fail("unexpected character");
    if (p_[pos_] == '0' && pos_ + 1 < n_ && p_[pos_ + 1] >= '0' && p_[pos_ + 1] <= '9') return fail("leading zero");
    bool integer = true;
    while (pos_ < n_ && p_[pos_] >= '0' && p_[pos_] <= '9') ++pos_;
    if (pos_ < n_ && p_[pos_] == '.') {
      integer = false;
      ++pos_;
      if (pos_ >= n_ || !(p_[pos_] >= '0' && p_[pos_] <= '9')) return fail("digit expected after '.'");
      while (pos_ < n_ && p_[pos_] >= '0' && p_[pos_] <= '9') ++pos_;
    }
    if (pos_ < n_ && (p_[pos_] == 'e' || p_[pos_] == 'E')) {
      integer = false;
      ++pos_;
      if (pos_ < n_ && (p_[pos_] == '+' || p_[pos_] == '-')) ++pos_;
      if (pos_ >= n_ || !(p_[pos_] >= '0' && p_[pos_] <= '9')) return fail("digit expected in exponent");
      while (pos_ < n_ && p_[pos_] >= '0' && p_[pos_] <= '9') ++pos_;
    }
    const std::string text(p_ + start, pos_ - start);
    out->number = std::strtod(text.c_str(), nullptr);
    if (integer && text[0] != '-') {
      uint64_t v = 0;
      bool fits = true;
      for (char c : text) {
        const uint64_t d = (uint64_t)(c - '0');
        if (v > (UINT64_MAX - d) / 10) {
          fits = false;
          break;
        }
        v = v * 10 + d;
      }
      out->is_uint = fits;
      out->uint = fits ? v : 0;
    }
    return true;
  }

  const char* p_;
  size_t n_;
  size_t pos_ = 0;
  const char* why_ = "";
};

}  // namespace

bool parse_json(const char* text, size_t n, JsonValue* out, std::string* error) {
  *out = JsonValue();
  return Parser(text, n).parse(out, error);
}

}  // namespace rwkv
