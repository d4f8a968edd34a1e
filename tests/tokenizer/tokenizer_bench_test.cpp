// Load-time and throughput measurements; TEST_SUITE("slow"), run with
//   test_tokenizer --test-suite=slow
// Prints numbers (MESSAGE) and only asserts loose bounds, so that a pathological regression
// (say, a quadratic trie build) fails without making the test flaky on slow machines.
#include <doctest/doctest.h>

#include <chrono>

#include "tests/tokenizer/tokenizer_test_util.h"

namespace rwkv {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Best of a few runs of make_tokenizer on in-memory content (excludes the file read).
double load_seconds(const std::string& kind, const std::string& data) {
  double best = 1e9;
  for (int i = 0; i < 3; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    Result<std::unique_ptr<Tokenizer>> tok = make_tokenizer({kind, data});
    best = std::min(best, seconds_since(t0));
    REQUIRE(tok.ok());
  }
  return best;
}

TEST_SUITE("slow") {
  TEST_CASE("bench: load times") {
    const double world = load_seconds("world", test::read_all(test::world_vocab_path()));
    const double neox = load_seconds("neox", test::read_all(test::neox_json_path()));
    MESSAGE("World vocab make_tokenizer: " << world * 1e3 << " ms");
    MESSAGE("20B tokenizer.json make_tokenizer: " << neox * 1e3 << " ms");
    const auto t0 = std::chrono::steady_clock::now();
    Result<TokenizerSpec> spec = read_tokenizer_file(test::world_vocab_path());
    REQUIRE(spec.ok());
    REQUIRE(make_tokenizer(spec.value()).ok());
    MESSAGE("World read_tokenizer_file + make_tokenizer: " << seconds_since(t0) * 1e3 << " ms");
    CHECK(world < 1.0);
    CHECK(neox < 5.0);
  }

  TEST_CASE("bench: encode throughput on wikitext-2 test") {
    const std::string text = test::read_all(test::shared_dir() + "/data/wikitext-2/wiki.test.raw");
    for (const std::string which : {"world", "neox"}) {
      const Tokenizer& tok = which == "world" ? test::world() : test::neox();
      for (int pass = 0; pass < 2; ++pass) {
        const auto t0 = std::chrono::steady_clock::now();
        const std::vector<int32_t> ids = tok.encode(text);
        const double s = seconds_since(t0);
        const std::string label = which + (pass == 0 ? " (first pass): " : " (second pass): ");
        MESSAGE(label << text.size() / s / 1e6 << " MB/s, " << ids.size() << " tokens for " << text.size()
                      << " bytes");
        CHECK(tok.decode(ids) == text);
      }
    }
  }
}

}  // namespace
}  // namespace rwkv
