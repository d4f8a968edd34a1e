// Tests for engine/tokenizer/utf8.cpp.
#include <doctest/doctest.h>

#include "engine/tokenizer/utf8.h"

namespace rwkv {
namespace {

std::string replaced(std::string_view s) {
  std::string out;
  utf8_append_replacing(s, &out);
  return out;
}

const std::string R = "\xEF\xBF\xBD";

TEST_CASE("utf8: validity") {
  CHECK(utf8_is_valid(""));
  CHECK(utf8_is_valid("abc \xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF"));
  CHECK_FALSE(utf8_is_valid("\xC0\x80"));          // overlong
  CHECK_FALSE(utf8_is_valid("\xE0\x9F\xBF"));      // overlong 3-byte
  CHECK_FALSE(utf8_is_valid("\xED\xA0\x80"));      // surrogate
  CHECK_FALSE(utf8_is_valid("\xF4\x90\x80\x80"));  // above U+10FFFF
  CHECK_FALSE(utf8_is_valid("\xC3"));              // truncated
  CHECK_FALSE(utf8_is_valid("\x80"));
}

TEST_CASE("utf8: replacement by maximal subparts (Unicode §3.9 example)") {
  CHECK(replaced("ok") == "ok");
  // The Unicode Standard's example: 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64
  CHECK(replaced("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64") ==
        "a" + R + R + R + "b" + R + "c" + R + R + "d");
  CHECK(replaced("\xED\xA0\x80") == R + R + R);  // surrogates: each byte separately
  CHECK(replaced("\xE2\x82") == R);               // incomplete at end: one U+FFFD
}

TEST_CASE("utf8: incomplete tail") {
  CHECK(utf8_incomplete_tail("") == 0);
  CHECK(utf8_incomplete_tail("abc") == 0);
  CHECK(utf8_incomplete_tail("a\xC3") == 1);
  CHECK(utf8_incomplete_tail("a\xE2\x82") == 2);
  CHECK(utf8_incomplete_tail("a\xF0\x9F\x98") == 3);
  CHECK(utf8_incomplete_tail("a\xF0\x9F\x98\x80") == 0);
  CHECK(utf8_incomplete_tail("\xE0\x80") == 0);   // can never complete
  CHECK(utf8_incomplete_tail("\xF5") == 0);
  CHECK(utf8_incomplete_tail("\x80\x80\x80") == 0);
  CHECK(utf8_incomplete_tail("\xC3\xE2") == 1);
}

TEST_CASE("utf8: append_utf8") {
  std::string s;
  append_utf8(0x24, &s);
  append_utf8(0xE9, &s);
  append_utf8(0x20AC, &s);
  append_utf8(0x1F600, &s);
  CHECK(s == "$\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
}

}  // namespace
}  // namespace rwkv
