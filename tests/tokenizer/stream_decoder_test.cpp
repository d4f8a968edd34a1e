// Tests for engine/tokenizer/stream_decoder.cpp.
#include <doctest/doctest.h>

#include <random>

#include "engine/tokenizer/stream_decoder.h"
#include "engine/tokenizer/utf8.h"
#include "tests/tokenizer/tokenizer_test_util.h"

namespace rwkv {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

const Tokenizer& bytes_tokenizer() {
  static std::unique_ptr<Tokenizer> t = std::move(make_tokenizer({"bytes", ""})).value();
  return *t;
}

// Pushes `ids` one by one and records each push's output.
std::vector<std::string> push_all(StreamDecoder* dec, const std::vector<int32_t>& ids) {
  std::vector<std::string> out;
  for (int32_t id : ids) out.push_back(dec->push(id));
  return out;
}

std::vector<int32_t> byte_ids(std::string_view s) { return bytes_tokenizer().encode(s); }

std::string join(const std::vector<std::string>& parts) {
  std::string s;
  for (const auto& p : parts) s += p;
  return s;
}

TEST_CASE("stream: multi-byte characters split across tokens are held until complete") {
  StreamDecoder dec(bytes_tokenizer(), {});
  // "é€😀" = C3 A9 | E2 82 AC | F0 9F 98 80
  const std::vector<std::string> out = push_all(&dec, byte_ids("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80!"));
  const std::vector<std::string> want = {"", "\xC3\xA9", "", "", "\xE2\x82\xAC", "", "", "", "\xF0\x9F\x98\x80", "!"};
  CHECK(out == want);
  CHECK(dec.flush() == "");
  CHECK_FALSE(dec.stopped());
}

TEST_CASE("stream: World tokens that are partial characters") {
  const Tokenizer& world = test::world();
  // World byte tokens are id = byte + 1; the emoji arrives as four one-byte tokens.
  StreamDecoder dec(world, {});
  CHECK(dec.push(0xF0 + 1) == "");
  CHECK(dec.push(0x9F + 1) == "");
  CHECK(dec.push(0x98 + 1) == "");
  CHECK(dec.push(0x80 + 1) == "\xF0\x9F\x98\x80");
  // Every golden text streams back exactly, one valid chunk per token.
  for (const std::string& text : {std::string("以下は、テスト 😀👍🏽 блабла"), std::string("a\n\nb")}) {
    StreamDecoder d(world, {});
    std::string all;
    for (int32_t id : world.encode(text)) {
      const std::string chunk = d.push(id);
      CHECK(utf8_is_valid(chunk));
      all += chunk;
    }
    all += d.flush();
    CHECK(all == text);
  }
}

TEST_CASE("stream: invalid bytes become U+FFFD without stalling") {
  StreamDecoder dec(bytes_tokenizer(), {});
  CHECK(dec.push(0xFF) == kFffd);   // can never start a character: replaced at once
  CHECK(dec.push('a') == "a");
  CHECK(dec.push(0xE2) == "");      // may still complete
  CHECK(dec.push(0x28) == kFffd + "(");  // did not: one U+FFFD for E2, then '('
  CHECK(dec.push(0xE0) == "");
  CHECK(dec.push(0x80) == kFffd + kFffd);  // E0 80 is an overlong prefix: ill-formed now
  CHECK(dec.push(0x80) == kFffd);   // stray continuation byte
  CHECK(dec.push(0xF0) == "");
  CHECK(dec.push(0x9F) == "");
  CHECK(dec.push('A') == kFffd + "A");  // maximal subpart F0 9F -> one U+FFFD
  CHECK(dec.push(0xC3) == "");
  CHECK(dec.flush() == kFffd);      // incomplete tail at the end
  CHECK(dec.push('z') == "");       // nothing after flush
}

TEST_CASE("stream: stop string split across tokens never appears") {
  const std::string text = "Hello!\n\nUser: more text";
  StreamDecoder dec(bytes_tokenizer(), {"\n\nUser:"});
  std::string out;
  size_t pushes = 0;
  for (int32_t id : byte_ids(text)) {
    out += dec.push(id);
    ++pushes;
    if (dec.stopped()) break;
  }
  CHECK(dec.stopped());
  CHECK(pushes == std::string("Hello!\n\nUser:").size());
  CHECK(out == "Hello!");
  CHECK(dec.push('x') == "");
  CHECK(dec.flush() == "");
}

TEST_CASE("stream: stop strings with World tokens") {
  const Tokenizer& world = test::world();
  StreamDecoder dec(world, {"\n\n"});
  std::string out;
  for (int32_t id : world.encode("First line.\n\nSecond")) {
    out += dec.push(id);
    if (dec.stopped()) break;
  }
  CHECK(dec.stopped());
  CHECK(out == "First line.");
}

TEST_CASE("stream: a held prefix is released when it turns out not to be a stop string") {
  StreamDecoder dec(bytes_tokenizer(), {"STOP"});
  CHECK(join(push_all(&dec, byte_ids("go ST"))) == "go ");
  CHECK(dec.push('x') == "STx");
  CHECK(join(push_all(&dec, byte_ids(" STO"))) == " ");
  CHECK(dec.flush() == "STO");  // end of stream: held text is emitted
  CHECK_FALSE(dec.stopped());
}

TEST_CASE("stream: the stop string that completes first wins") {
  // "bc" completes (at 'c') before "abcd" could; the text before it is "xa".
  StreamDecoder dec(bytes_tokenizer(), {"abcd", "bc"});
  std::string out = join(push_all(&dec, byte_ids("xabcd")));
  CHECK(dec.stopped());
  CHECK(out == "xa");
}

TEST_CASE("stream: multi-byte stop strings and empty stop strings") {
  StreamDecoder dec(bytes_tokenizer(), {"", "\xC3\xA9!"});  // "é!"
  std::string out = join(push_all(&dec, byte_ids("caf\xC3\xA9 caf\xC3\xA9!")));
  CHECK(dec.stopped());
  CHECK(out == "caf\xC3\xA9 caf");
}

TEST_CASE("stream: end-of-text is the caller's job") {
  // Pushing eos just appends its bytes: nothing for World, the literal content for NeoX.
  StreamDecoder w(test::world(), {});
  CHECK(w.push(test::world().eos_id()) == "");
  StreamDecoder n(test::neox(), {});
  CHECK(n.push(test::neox().eos_id()) == "<|endoftext|>");
}

TEST_CASE("stream: random byte streams match one-shot decoding") {
  // Property: without stops, the concatenated output equals U+FFFD-replaced decoding of all
  // bytes, and every chunk is valid UTF-8. With one stop string, the output is that text cut
  // at the stop string's first occurrence.
  std::mt19937 rng(12345);
  const std::vector<uint8_t> alphabet = {'a', 'b', ' ', 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80, 0xFF, 0xED, 0xA0};
  const std::string stop = "b \xC3\xA9";
  int stopped_runs = 0;
  for (int run = 0; run < 300; ++run) {
    std::string bytes;
    const int n = 1 + static_cast<int>(rng() % 60);
    for (int i = 0; i < n; ++i) bytes.push_back(static_cast<char>(alphabet[rng() % alphabet.size()]));
    std::string expected;
    utf8_append_replacing(bytes, &expected);

    StreamDecoder plain(bytes_tokenizer(), {});
    StreamDecoder with_stop(bytes_tokenizer(), {stop});
    std::string out_plain, out_stop;
    for (int32_t id : byte_ids(bytes)) {
      const std::string a = plain.push(id), b = with_stop.push(id);
      CHECK(utf8_is_valid(a));
      CHECK(utf8_is_valid(b));
      out_plain += a;
      out_stop += b;
    }
    out_plain += plain.flush();
    out_stop += with_stop.flush();
    CAPTURE(bytes);
    CHECK(out_plain == expected);
    const size_t cut = expected.find(stop);
    CHECK(out_stop == expected.substr(0, cut));
    CHECK(with_stop.stopped() == (cut != std::string::npos));
    CHECK(out_stop.find(stop) == std::string::npos);
    if (cut != std::string::npos) ++stopped_runs;
  }
  CHECK(stopped_runs > 0);  // the alphabet makes the stop string appear in some runs
}

}  // namespace
}  // namespace rwkv
