// Tests for engine/tokenizer/tokenizer.cpp: make_tokenizer, read_tokenizer_file, the byte
// tokenizer and Tokenizer::decode.
#include <doctest/doctest.h>

#include "tests/tokenizer/tokenizer_test_util.h"

namespace rwkv {
namespace {

using test::ids_of;

TEST_CASE("bytes: id = byte value") {
  Result<std::unique_ptr<Tokenizer>> tok = make_tokenizer({"bytes", ""});
  REQUIRE(tok.ok());
  const Tokenizer& t = *tok.value();
  CHECK(std::string(t.kind()) == "bytes");
  CHECK(t.vocab_size() == 256);
  CHECK(t.eos_id() == -1);
  CHECK(t.encode("\"in") == ids_of({34, 105, 110}));  // the rwkv.cpp tiny-model prompt
  CHECK(t.encode(std::string_view("\xFF\0x", 3)) == ids_of({255, 0, 120}));
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  const std::vector<int32_t> ids = t.encode(all);
  REQUIRE(ids.size() == 256);
  CHECK(ids[200] == 200);
  CHECK(t.decode(ids) == all);
  CHECK(t.token_bytes(256) == "");
  CHECK(t.token_bytes(-1) == "");
  CHECK(t.decode(ids_of({104, 105, 999, 33})) == "hi!");  // unknown ids decode to nothing
}

TEST_CASE("make_tokenizer: bad kinds") {
  Result<std::unique_ptr<Tokenizer>> none = make_tokenizer({"", ""});
  REQUIRE_FALSE(none.ok());
  CHECK(none.status().code() == StatusCode::kInvalidArgument);
  Result<std::unique_ptr<Tokenizer>> other = make_tokenizer({"sentencepiece", "x"});
  REQUIRE_FALSE(other.ok());
  CHECK(other.status().code() == StatusCode::kUnsupported);
  CHECK(other.status().message().find("sentencepiece") != std::string::npos);
}

TEST_CASE("read_tokenizer_file: detects the shared files") {
  Result<TokenizerSpec> world = read_tokenizer_file(test::world_vocab_path());
  REQUIRE_MESSAGE(world.ok(), world.status().to_string());
  CHECK(world.value().kind == "world");
  CHECK(world.value().data.size() == 1093733);
  Result<TokenizerSpec> neox = read_tokenizer_file(test::neox_json_path());
  REQUIRE_MESSAGE(neox.ok(), neox.status().to_string());
  CHECK(neox.value().kind == "neox");
  CHECK(neox.value().data.size() == 2467981);
}

TEST_CASE("read_tokenizer_file: errors name the file and line") {
  test::TempDir dir;
  SUBCASE("missing file") {
    const std::string path = dir.path() + "/does_not_exist.txt";
    Result<TokenizerSpec> r = read_tokenizer_file(path);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == StatusCode::kNotFound);
    CHECK(r.status().message().find(path) != std::string::npos);
  }
  SUBCASE("malformed world line") {
    const std::string path = dir.write("vocab.txt", "1 'a' 1\n2 'b' 1\n3 'c' 1 extra\n4 'd' 1\n");
    Result<TokenizerSpec> r = read_tokenizer_file(path);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == StatusCode::kCorruption);
    CHECK(r.status().message().find(path) != std::string::npos);
    CHECK(r.status().message().find("line 3") != std::string::npos);
  }
  SUBCASE("bad JSON") {
    const std::string path = dir.write("tokenizer.json", "{\n  \"model\": {\n    \"vocab\": {,}\n  }\n}\n");
    Result<TokenizerSpec> r = read_tokenizer_file(path);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == StatusCode::kCorruption);
    CHECK(r.status().message().find(path) != std::string::npos);
    CHECK(r.status().message().find("line 3") != std::string::npos);
  }
  SUBCASE("JSON that is not a tokenizer.json") {
    const std::string path = dir.write("config.json", "{\"n_layer\": 12}");
    Result<TokenizerSpec> r = read_tokenizer_file(path);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == StatusCode::kUnsupported);
    CHECK(r.status().message().find(path) != std::string::npos);
  }
  SUBCASE("neither format") {
    const std::string path = dir.write("readme.md", "# hello\n");
    Result<TokenizerSpec> r = read_tokenizer_file(path);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == StatusCode::kUnsupported);
  }
  SUBCASE("empty file") {
    const std::string path = dir.write("empty.txt", "\n");
    Result<TokenizerSpec> r = read_tokenizer_file(path);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == StatusCode::kCorruption);
  }
  SUBCASE("a small world vocab with a BOM") {
    const std::string path = dir.write("bom.txt", "\xEF\xBB\xBF" "1 'a' 1\n2 'b' 1\n");
    Result<TokenizerSpec> r = read_tokenizer_file(path);
    REQUIRE_MESSAGE(r.ok(), r.status().to_string());
    CHECK(r.value().kind == "world");
    Result<std::unique_ptr<Tokenizer>> tok = make_tokenizer(r.value());
    REQUIRE(tok.ok());
    CHECK(tok.value()->encode("ba") == ids_of({2, 1}));
  }
}

}  // namespace
}  // namespace rwkv
