// Tests for engine/tokenizer/world_tokenizer.cpp and world_vocab.cpp.
#include <doctest/doctest.h>

#include "engine/tokenizer/world_vocab.h"
#include "tests/tokenizer/tokenizer_test_util.h"

namespace rwkv {
namespace {

using test::ids_of;

TEST_CASE("world: golden vectors") {
  CHECK(test::check_golden(test::world(), "rwkv_world_v20230424_golden.json") == 9);
}

TEST_CASE("world: rwkv.cpp test vector; <|endoftext|> is plain text") {
  const std::string text = "I'll 'd test блабла 以下は、]) -> <|endoftext|><|padding|> int";
  const std::vector<int32_t> want = ids_of({74, 5229, 274, 101, 32223, 5092, 27980, 2795, 27980, 33, 10399, 10258,
                                            10139, 10079, 1682, 3463, 295, 125, 25258, 7588, 2318, 125, 790, 125,
                                            49520, 125, 63, 21888});
  CHECK(test::world().encode(text) == want);
  CHECK(test::world().decode(want) == text);
}

TEST_CASE("world: basic facts from tokenizers.md") {
  const Tokenizer& t = test::world();
  CHECK(std::string(t.kind()) == "world");
  CHECK(t.vocab_size() == 65530);
  CHECK(t.eos_id() == 0);
  CHECK(t.token_bytes(0) == "");       // end-of-text has no bytes
  CHECK(t.token_bytes(-5) == "");
  CHECK(t.token_bytes(65530) == "");
  CHECK(t.token_bytes(1) == std::string(1, '\0'));
  CHECK(t.token_bytes(256) == "\xFF");  // b'\xff'
  CHECK(t.token_bytes(2423) == "\xC2\x80");  // '\x80' in a str is U+0080
  CHECK(t.token_bytes(9804) == "\xE2\x80\x82");  // '\u2002'
  CHECK(t.encode("\n") == ids_of({11}));
  CHECK(t.encode("\n\n") == ids_of({261}));
  CHECK(t.encode(" ") == ids_of({33}));
  CHECK(t.encode(" the") == ids_of({22590}));
  CHECK(t.encode("").empty());
  // The longest token is 128 bytes.
  size_t longest = 0;
  for (int32_t id = 0; id < t.vocab_size(); ++id) longest = std::max(longest, t.token_bytes(id).size());
  CHECK(longest == 128);
}

TEST_CASE("world: every byte string is encodable, invalid UTF-8 round-trips") {
  const Tokenizer& t = test::world();
  std::string all;
  for (int b = 255; b >= 0; --b) all.push_back(static_cast<char>(b));
  all += "\xC3\x28 \xE2\x82 \xF0\x9F\x98 \xED\xA0\x80 tail";
  CHECK(t.decode(t.encode(all)) == all);
  // Lone bytes map to id byte + 1.
  CHECK(t.encode("\xFF\xFE") == ids_of({256, 255}));
}

TEST_CASE("world: every token encodes to itself") {
  // Greedy longest match must find each vocab entry as one token, since it is its own longest
  // prefix in the vocab.
  const Tokenizer& t = test::world();
  int checked = 0, mismatched = 0;
  for (int32_t id = 1; id < t.vocab_size(); ++id) {
    const std::vector<int32_t> ids = t.encode(t.token_bytes(id));
    if (ids.size() != 1 || ids[0] != id) ++mismatched;
    ++checked;
  }
  CHECK(checked == 65529);
  CHECK(mismatched == 0);
}

TEST_CASE("world: greedy longest match on a hand-written vocab with sparse ids") {
  test::TempDir dir;
  // Greedy, not optimal: "abcd" with {a, b, c, d, ab, abc, bcd} -> "abc" + "d" (2 tokens), even
  // though "a" + "bcd" is also 2 tokens; "abx" -> "ab" then "x" is not in the vocab (skipped).
  const std::string vocab =
      "10 'a' 1\n"
      "11 'b' 1\n"
      "12 'c' 1\n"
      "13 'd' 1\n"
      "20 'ab' 2\n"
      "21 'abc' 3\n"
      "22 \"bcd\" 3\n"
      "30 'it\\'s' 4\n"
      "31 '\\xe9' 2\n"            // str: U+00E9 -> C3 A9
      "32 b'\\xe9' 1\n"           // bytes: the raw byte E9
      "33 '\\u00e9\\t\\\\' 4\n"   // é, tab, backslash
      "34 ' ' 1\n"
      "1000 '  ' 2\r\n";          // CRLF tolerated; ids need not be dense
  const std::string path = dir.write("small_vocab.txt", vocab);
  Result<TokenizerSpec> spec = read_tokenizer_file(path);
  REQUIRE_MESSAGE(spec.ok(), spec.status().to_string());
  CHECK(spec.value().kind == "world");
  Result<std::unique_ptr<Tokenizer>> tok = make_tokenizer(spec.value());
  REQUIRE_MESSAGE(tok.ok(), tok.status().to_string());
  const Tokenizer& t = *tok.value();
  CHECK(t.vocab_size() == 1001);
  CHECK(t.encode("abcd") == ids_of({21, 13}));
  CHECK(t.encode("abx") == ids_of({20}));
  CHECK(t.encode("bcda") == ids_of({22, 10}));
  CHECK(t.encode("it's") == ids_of({30}));
  CHECK(t.encode("\xC3\xA9") == ids_of({31}));
  CHECK(t.encode("\xE9") == ids_of({32}));
  CHECK(t.encode("\xC3\xA9\t\\") == ids_of({33}));
  CHECK(t.encode("   ") == ids_of({1000, 34}));
  CHECK(t.token_bytes(1000) == "  ");
  CHECK(t.token_bytes(500) == "");  // a gap in the ids
}

TEST_CASE("world: python literal parsing") {
  auto parse = [](std::string_view lit) {
    std::string out;
    Status s = parse_python_literal(lit, &out);
    return s.ok() ? out : std::string("ERROR: ") + s.message();
  };
  CHECK(parse("'abc'") == "abc");
  CHECK(parse("\"it's\"") == "it's");
  CHECK(parse("'\\'\\\"\\\\'") == "'\"\\");
  CHECK(parse("'\\n\\r\\t'") == "\n\r\t");
  CHECK(parse("'\\x80'") == "\xC2\x80");
  CHECK(parse("b'\\x80'") == "\x80");
  CHECK(parse("'\\u4e0b'") == "\xE4\xB8\x8B");
  CHECK(parse("'\\U0001F600'") == "\xF0\x9F\x98\x80");
  CHECK(parse("'\\0'") == std::string(1, '\0'));
  CHECK(parse("'\xE4\xB8\x8B'") == "\xE4\xB8\x8B");  // raw UTF-8 in a str
  // Malformed literals.
  CHECK(parse("abc").rfind("ERROR", 0) == 0);
  CHECK(parse("'abc\"").rfind("ERROR", 0) == 0);
  CHECK(parse("'a'b'").rfind("ERROR", 0) == 0);
  CHECK(parse("'\\x8'").rfind("ERROR", 0) == 0);
  CHECK(parse("'\\q'").rfind("ERROR", 0) == 0);
  CHECK(parse("'\\'").rfind("ERROR", 0) == 0);
  CHECK(parse("'\\ud800'").rfind("ERROR", 0) == 0);
  CHECK(parse("b'\\u00e9'").rfind("ERROR", 0) == 0);
  CHECK(parse("b'\xC3\xA9'").rfind("ERROR", 0) == 0);
  CHECK(parse("'\xC3'").rfind("ERROR", 0) == 0);
}

TEST_CASE("world: malformed vocab lines are Corruption naming the line") {
  struct Case {
    const char* data;
    const char* expect;  // substring of the message
  };
  const Case cases[] = {
      {"1 'a' 1\n2 'b' 2\n", "line 2"},                      // length column disagrees
      {"1 'a' 1\n2 'b'\n", "line 2"},                        // only one space
      {"1 'a' 1\n\n3 'c' x\n", "line 3"},                    // bad length (blank line counted)
      {"1 'a' 1\nx 'b' 1\n", "line 2"},                      // bad id
      {"0 'a' 1\n", "line 1: id 0"},                         // id 0 is end-of-text
      {"1 'a' 1\n2 'b 1\n", "line 2"},                       // unterminated literal
      {"1 'a' 1\n2 'b' 1\n3 'a' 1\n", "line 3: token bytes repeat line 1"},
      {"1 'a' 1\n1 'b' 1\n", "line 2: id 1 already used on line 1"},
      {"1 '\\z' 1\n", "unknown escape"},
      {"99999999 'a' 1\n", "line 1: id above"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.data);
    Result<std::unique_ptr<Tokenizer>> tok = make_tokenizer({"world", c.data});
    REQUIRE_FALSE(tok.ok());
    CHECK(tok.status().code() == StatusCode::kCorruption);
    CHECK(tok.status().message().find(c.expect) != std::string::npos);
  }
  Result<std::unique_ptr<Tokenizer>> empty = make_tokenizer({"world", "\n\n"});
  CHECK_FALSE(empty.ok());
}

}  // namespace
}  // namespace rwkv
