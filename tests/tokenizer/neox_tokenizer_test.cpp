// Tests for engine/tokenizer/neox_tokenizer.cpp and neox_pretokenize.cpp.
#include <doctest/doctest.h>

#include <thread>

#include "engine/tokenizer/neox_pretokenize.h"
#include "tests/tokenizer/tokenizer_test_util.h"

namespace rwkv {
namespace {

using test::ids_of;

std::vector<std::string> split(std::string_view text) {
  std::vector<std::string_view> pieces;
  gpt2_split(text, &pieces);
  return std::vector<std::string>(pieces.begin(), pieces.end());
}
using Pieces = std::vector<std::string>;

TEST_CASE("neox: golden vectors (HF added tokens, NFC, BPE)") {
  CHECK(test::check_golden(test::neox(), "gpt_neox_20b_golden.json") == 9);
}

TEST_CASE("neox: ChatRWKV README decode check and tokenizers.md table") {
  const Tokenizer& t = test::neox();
  CHECK(t.decode(ids_of({187, 510, 1563, 310, 247})) == "\nThe following is a");
  CHECK(std::string(t.kind()) == "neox");
  CHECK(t.vocab_size() == 50277);
  CHECK(t.eos_id() == 0);
  CHECK(t.encode("\n") == ids_of({187}));
  CHECK(t.encode("\n\n") == ids_of({535}));
  CHECK(t.encode(" ") == ids_of({209}));
  CHECK(t.encode(" the") == ids_of({253}));
  CHECK(t.encode("").empty());
  // Added tokens: specials match raw text; space runs swallow the next word's space.
  CHECK(t.encode("<|endoftext|>") == ids_of({0}));
  CHECK(t.encode("a<|padding|>b") == ids_of({66, 1, 67}));
  CHECK(t.token_bytes(0) == "<|endoftext|>");
  CHECK(t.token_bytes(50276) == "  ");
  CHECK(t.token_bytes(50254) == std::string(24, ' '));
  CHECK(t.token_bytes(50277) == "");
  CHECK(t.token_bytes(-1) == "");
  CHECK(t.encode(std::string(30, ' ') + "x") == ids_of({50254, 50272, 89}));  // 24 + 6 spaces, "x"
}

TEST_CASE("neox: NFC is applied before BPE") {
  const Tokenizer& t = test::neox();
  // "e" + COMBINING ACUTE ACCENT composes to U+00E9.
  CHECK(t.encode("cafe\xCC\x81") == t.encode("caf\xC3\xA9"));
  CHECK(t.decode(t.encode("cafe\xCC\x81")) == "caf\xC3\xA9");
}

TEST_CASE("neox: Unicode edge cases agree with Hugging Face tokenizers.js") {
  // Expected ids from @huggingface/tokenizers 0.2.0 (the library the golden file came from),
  // add_special_tokens false. Covers NFC composition (e + U+0301, Hangul jamo, Angstrom and Ohm
  // signs), non-ASCII whitespace (NBSP, ideographic space, thin space), \p{N} beyond digits
  // (1/2, superscript 2, Arabic-Indic 3, Roman numeral one), case-sensitive contractions, a
  // ligature, soft hyphen / zero-width space, and added tokens after emoji.
  const Tokenizer& t = test::neox();
  CHECK(t.encode("e\xCC\x81t\xC3\xA9 \xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8 \xE2\x84\xAB\xE2\x84\xA6") ==
        ids_of({39929, 42984, 212, 17732, 138, 104}));
  CHECK(t.encode("x\xC2\xA0y\xE3\x80\x80z\xE2\x80\x89w \xC2\xBD\xC2\xB2 \xD9\xA3\xE2\x85\xA0") ==
        ids_of({89, 575, 90, 19409, 91, 1186, 88, 24142, 15818, 209, 149, 98, 158, 216, 243}));
  CHECK(t.encode("WE'LL 'S it's \xEF\xAC\x81ne \xC2\xAD\xE2\x80\x8B") ==
        ids_of({10663, 8, 2293, 686, 52, 352, 434, 16141, 107, 212, 570, 43044, 12882}));
  CHECK(t.encode("\xE1\xBA\x9B\xCC\xA3 \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD<|padding|>  end") ==
        ids_of({9702, 238, 136, 98, 22692, 228, 224, 14931, 226, 123, 1, 50276, 423}));
}

TEST_CASE("neox: ill-formed UTF-8 is replaced by U+FFFD, never crashes") {
  const Tokenizer& t = test::neox();
  CHECK(t.encode("\xFF ok") == t.encode("\xEF\xBF\xBD ok"));
  CHECK(t.decode(t.encode("a\xC3")) == "a\xEF\xBF\xBD");
  std::string junk;
  for (int i = 0; i < 2000; ++i) junk.push_back(static_cast<char>((i * 7919) & 0xFF));
  const std::vector<int32_t> ids = t.encode(junk);
  CHECK_FALSE(ids.empty());
  for (int32_t id : ids) CHECK((id >= 0 && id < t.vocab_size()));
}

TEST_CASE("neox: every byte round-trips through the byte-level alphabet") {
  const Tokenizer& t = test::neox();
  std::string ascii;
  for (int b = 1; b < 128; ++b) ascii.push_back(static_cast<char>(b));
  CHECK(t.decode(t.encode(ascii)) == ascii);
  const std::string mixed = "Grüße, 世界! 😀 \xE2\x80\x8B\t\r\n  ok";
  CHECK(t.decode(t.encode(mixed)) == mixed);
}

TEST_CASE("neox: GPT-2 pre-tokenization") {
  CHECK(split("Hello world") == Pieces{"Hello", " world"});
  CHECK(split("I'll 'd") == Pieces{"I", "'ll", " '", "d"});
  CHECK(split("don't DON'T") == Pieces{"don", "'t", " DON", "'", "T"});
  CHECK(split("a  b") == Pieces{"a", " ", " b"});
  CHECK(split("a \n b") == Pieces{"a", " \n", " b"});
  CHECK(split("x\n\n\ny") == Pieces{"x", "\n\n", "\n", "y"});
  CHECK(split("abc123 4.5!!") == Pieces{"abc", "123", " 4", ".", "5", "!!"});
  CHECK(split("end  ") == Pieces{"end", "  "});
  CHECK(split(" ") == Pieces{" "});
  CHECK(split("\xE6\x97\xA5\xE6\x9C\xAC \xE3\x83\x86") == Pieces{"\xE6\x97\xA5\xE6\x9C\xAC", " \xE3\x83\x86"});
  CHECK(split("a\xC2\xBD") == Pieces{"a", "\xC2\xBD"});              // ½ is \p{N} (No)
  CHECK(split("a\xC2\xA0" "b") == Pieces{"a", "\xC2\xA0", "b"});     // NBSP is \s but not ' '
  CHECK(split("x ,.y") == Pieces{"x", " ,.", "y"});
  CHECK(split("").empty());
}

// A tiny tokenizer.json to pin down BPE merge order. Byte-level keys: "Ġ" is the space.
std::string tiny_json(const std::string& merges) {
  return R"({"version":"1.0","added_tokens":[{"id":9,"content":"<|endoftext|>","special":true}],
    "normalizer":{"type":"NFC"},
    "pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true},
    "decoder":{"type":"ByteLevel"},
    "model":{"type":"BPE","dropout":null,"vocab":{"a":0,"b":1,"c":2,"ab":3,"bc":4,"abc":5,"aa":6,"\u0120":7,"\u0120a":8},
    "merges":)" + merges + "}}";
}

Result<std::unique_ptr<Tokenizer>> tiny(const std::string& merges) {
  return make_tokenizer({"neox", tiny_json(merges)});
}

TEST_CASE("neox: BPE merges by rank, leftmost first on ties") {
  auto ab_first = tiny(R"(["a b", "b c", "a a", "Ġ a"])");
  REQUIRE_MESSAGE(ab_first.ok(), ab_first.status().to_string());
  CHECK(ab_first.value()->encode("abc") == ids_of({3, 2}));
  CHECK(ab_first.value()->encode("aaa") == ids_of({6, 0}));
  CHECK(ab_first.value()->encode("aaaa") == ids_of({6, 6}));
  CHECK(ab_first.value()->encode(" a") == ids_of({8}));
  CHECK(ab_first.value()->eos_id() == 9);
  CHECK(ab_first.value()->vocab_size() == 10);

  // Array-style merges; "b c" now ranks first, then "a bc" completes the word.
  auto bc_first = tiny(R"([["b", "c"], ["a", "b"], ["a", "bc"]])");
  REQUIRE_MESSAGE(bc_first.ok(), bc_first.status().to_string());
  CHECK(bc_first.value()->encode("abc") == ids_of({5}));
  CHECK(bc_first.value()->encode("<|endoftext|>abc") == ids_of({9, 5}));
  CHECK(bc_first.value()->decode(ids_of({9, 5, 7})) == "<|endoftext|>abc ");
  // A byte with no one-byte token is dropped (no unk token).
  CHECK(bc_first.value()->encode("axb") == ids_of({0, 1}));
}

TEST_CASE("neox: bad or unsupported tokenizer.json") {
  auto bad = make_tokenizer({"neox", "{\"model\": {\n  \"vocab\": [1,2,\n}"});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().code() == StatusCode::kCorruption);
  CHECK(bad.status().message().find("line 3") != std::string::npos);

  auto unknown_merge = tiny(R"(["a x"])");
  REQUIRE_FALSE(unknown_merge.ok());
  CHECK(unknown_merge.status().code() == StatusCode::kCorruption);
  CHECK(unknown_merge.status().message().find("merges[0]") != std::string::npos);

  std::string lower = tiny_json("[]");
  lower.replace(lower.find("\"NFC\""), 5, "\"Lowercase\"");
  auto unsupported = make_tokenizer({"neox", lower});
  REQUIRE_FALSE(unsupported.ok());
  CHECK(unsupported.status().code() == StatusCode::kUnsupported);
  CHECK(unsupported.status().message().find("normalizer") != std::string::npos);

  std::string prefix = tiny_json("[]");
  prefix.replace(prefix.find("\"add_prefix_space\":false"), 24, "\"add_prefix_space\":true");
  auto prefix_space = make_tokenizer({"neox", prefix});
  REQUIRE_FALSE(prefix_space.ok());
  CHECK(prefix_space.status().code() == StatusCode::kUnsupported);

  auto wrong_type = make_tokenizer({"neox", R"({"model":{"type":"BPE","vocab":{"a":"zero"},"merges":[]},
      "pre_tokenizer":{"type":"ByteLevel"}})"});
  REQUIRE_FALSE(wrong_type.ok());
  CHECK(wrong_type.status().code() == StatusCode::kCorruption);

  auto wordpiece = make_tokenizer({"neox", R"({"model":{"type":"WordPiece","vocab":{}},
      "pre_tokenizer":{"type":"ByteLevel"}})"});
  REQUIRE_FALSE(wordpiece.ok());
  CHECK(wordpiece.status().code() == StatusCode::kUnsupported);
}

// Generates distinct lowercase words so the piece cache fills up and is cleared mid-run.
std::string word_list(int first, int count) {
  std::string text;
  for (int i = first; i < first + count; ++i) {
    text += ' ';
    for (int v = i + 1; v > 0; v /= 26) text.push_back(static_cast<char>('a' + v % 26));
  }
  return text;
}

TEST_CASE("neox: encode is safe from several threads (shared piece cache)") {
  const Tokenizer& t = test::neox();
  std::vector<std::string> texts;
  for (int k = 0; k < 4; ++k) texts.push_back(word_list(k * 9000, 9000));
  texts.push_back("Emoji: \xF0\x9F\x98\x80 and accents: caf\xC3\xA9 na\xC3\xAFve <|endoftext|>");
  // Expected results from a fresh tokenizer, so the cache of `t` plays no part in them.
  Result<std::unique_ptr<Tokenizer>> fresh = make_tokenizer({"neox", test::read_all(test::neox_json_path())});
  REQUIRE(fresh.ok());
  std::vector<std::vector<int32_t>> want;
  for (const auto& s : texts) want.push_back(fresh.value()->encode(s));

  std::vector<int> failures(4, 0);
  std::vector<std::thread> threads;
  for (int th = 0; th < 4; ++th) {
    threads.emplace_back([&, th] {
      for (int round = 0; round < 3; ++round) {
        for (size_t k = 0; k < texts.size(); ++k) {
          const size_t idx = (k + static_cast<size_t>(th)) % texts.size();
          if (t.encode(texts[idx]) != want[idx]) ++failures[static_cast<size_t>(th)];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int f : failures) CHECK(f == 0);
  CHECK(t.decode(want[0]) == texts[0]);
}

}  // namespace
}  // namespace rwkv
