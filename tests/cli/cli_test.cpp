// Black-box tests of the rwkv-edge executable: the stable `logits` and `tokenize` interfaces,
// --help on every subcommand, exit codes and error messages.
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/cli/cli_run.h"
#include "tests/common/test_util.h"

namespace rwkv {
namespace {

using Run = test::CliRun;

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') q += "'\\''";
    else q += c;
  }
  return q + "'";
}

Run run(const std::string& args) { return test::run_cli(args); }

std::vector<int32_t> json_ids(const std::string& out) {
  // The array is the last line that starts with '['.
  const size_t pos = out.rfind('[');
  REQUIRE(pos != std::string::npos);
  const size_t end = out.find(']', pos);
  REQUIRE(end != std::string::npos);
  return nlohmann::json::parse(out.substr(pos, end - pos + 1)).get<std::vector<int32_t>>();
}

}  // namespace

TEST_CASE("logits writes [n_tokens, n_vocab] f32 equal to the per-position golden") {
  test::TempDir dir;
  const std::vector<uint8_t> text = test::read_bytes(test::shared_dir() + "/data/tiny-shakespeare/input.txt");
  test::write_bytes(dir.file("in.txt"), text.data(), 64);
  for (const char* ver : {"4v0-660K", "5v1-730K", "5v2-730K", "6v0-1m", "7v0-834K"}) {
    CAPTURE(ver);
    const std::string model = test::tiny_model(std::string("tiny-rwkv-") + ver + "-FP32.bin");
    const Run r = run("logits --model " + quote(model) + " --text-file " + quote(dir.file("in.txt")) + " --out " +
                      quote(dir.file("out.f32")));
    REQUIRE_MESSAGE(r.exit_code == 0, r.out);
    const std::vector<float> got = test::read_f32(dir.file("out.f32"));
    const std::vector<float> want = test::read_f32(test::shared_dir() + "/models/rwkv-cpp-tiny/golden/golden-logits-" +
                                                   ver + "-FP32-shakespeare64.bin");
    REQUIRE(got.size() == 64 * 256);
    REQUIRE(want.size() == got.size());
    float worst = 0.0f;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(got[i] - want[i]));
    CHECK(worst <= 1e-4f);
  }
}

TEST_CASE("tokenize prints the golden ids for the World and NeoX tokenizers") {
  test::TempDir dir;
  const struct {
    const char* golden;
    const char* tokenizer;
  } kCases[] = {{"rwkv_world_v20230424_golden.json", "rwkv_vocab_v20230424.txt"},
                {"gpt_neox_20b_golden.json", "20B_tokenizer.json"}};
  for (const auto& c : kCases) {
    CAPTURE(c.tokenizer);
    const std::vector<uint8_t> raw = test::read_bytes(test::shared_dir() + "/tokenizers/golden/" + c.golden);
    const nlohmann::json cases = nlohmann::json::parse(raw.begin(), raw.end());
    REQUIRE(cases.size() > 0);
    for (const auto& g : cases) {
      const std::string text = g["text"].get<std::string>();
      test::write_bytes(dir.file("t.txt"), text.data(), text.size());
      const Run r = run("tokenize --tokenizer " + quote(test::shared_dir() + "/tokenizers/" + c.tokenizer) +
                        " --text-file " + quote(dir.file("t.txt")));
      REQUIRE_MESSAGE(r.exit_code == 0, r.out);
      CHECK(json_ids(r.out) == g["ids"].get<std::vector<int32_t>>());
    }
  }
}

TEST_CASE("tokenize --model uses the embedded tokenizer (byte-level for rwkv.cpp tiny models)") {
  test::TempDir dir;
  test::write_bytes(dir.file("t.txt"), "\"in", 3);
  const Run r = run("tokenize --model " + quote(test::tiny_model("tiny-rwkv-5v2-730K-FP32.bin")) + " --text-file " +
                    quote(dir.file("t.txt")));
  REQUIRE_MESSAGE(r.exit_code == 0, r.out);
  CHECK(json_ids(r.out) == std::vector<int32_t>{34, 105, 110});
}

TEST_CASE("every subcommand has --help") {
  for (const char* cmd : {"info", "generate", "logits", "tokenize", "convert", "synth", "bench", "eval", "serve", "loadgen"}) {
    CAPTURE(cmd);
    const Run r = run(std::string(cmd) + " --help");
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("usage: rwkv-edge " + std::string(cmd)) != std::string::npos);
  }
  const Run top = run("--help");
  CHECK(top.exit_code == 0);
  CHECK(top.out.find("commands:") != std::string::npos);
}

TEST_CASE("bad usage exits 2, failures exit 1 with a message naming the file") {
  CHECK(run("nosuchcommand").exit_code == 2);
  CHECK(run("logits --model x").exit_code == 2);  // missing --text-file / --out
  CHECK(run("generate --prompt hi --temperature -1").exit_code == 2);
  CHECK(run("generate --prompt hi --top-p 1.5").exit_code == 2);
  CHECK(run("synth --shape nope --out /tmp/x.gguf").exit_code == 2);
  const Run missing = run("info /nonexistent/model.gguf");
  CHECK(missing.exit_code == 1);
  CHECK(missing.out.find("/nonexistent/model.gguf") != std::string::npos);
  test::TempDir dir;
  test::write_bytes(dir.file("junk.bin"), "this is not a model file at all", 31);
  const Run junk = run("info " + quote(dir.file("junk.bin")));
  CHECK(junk.exit_code == 1);
  CHECK(junk.out.find("junk.bin") != std::string::npos);
}

TEST_CASE("convert to GGUF and back to rwkv.cpp keeps the logits; generate runs on the result") {
  test::TempDir dir;
  const std::string src = test::tiny_model("tiny-rwkv-5v2-730K-FP32.bin");
  Run r = run("convert " + quote(src) + " " + quote(dir.file("m.gguf")) + " --tokenizer bytes");
  REQUIRE_MESSAGE(r.exit_code == 0, r.out);
  r = run("convert " + quote(dir.file("m.gguf")) + " " + quote(dir.file("m.bin")) + " --to rwkvcpp");
  REQUIRE_MESSAGE(r.exit_code == 0, r.out);
  test::write_bytes(dir.file("in.txt"), "\"in", 3);
  for (const char* f : {"m.gguf", "m.bin"}) {
    CAPTURE(f);
    r = run("logits --model " + quote(dir.file(f)) + " --text-file " + quote(dir.file("in.txt")) + " --out " +
            quote(dir.file("l.f32")));
    REQUIRE_MESSAGE(r.exit_code == 0, r.out);
    const std::vector<float> got = test::read_f32(dir.file("l.f32"));
    const std::vector<float> want = test::read_f32(test::tiny_model("expected-logits-5v2-730K.bin"));
    REQUIRE(got.size() == 3 * 256);
    float worst = 0.0f;
    for (int i = 0; i < 256; ++i) worst = std::max(worst, std::fabs(got[2 * 256 + i] - want[i]));
    CHECK(worst <= 1e-4f);
  }
  r = run("generate --model " + quote(dir.file("m.gguf")) + " --prompt 'First Citizen:' --max-tokens 8 --seed 3 --quiet");
  CHECK(r.exit_code == 0);
  const Run again = run("generate --model " + quote(dir.file("m.gguf")) + " --prompt 'First Citizen:' --max-tokens 8 --seed 3 --quiet");
  CHECK(again.out == r.out);  // same seed, same text
}

}  // namespace rwkv

namespace rwkv {

TEST_CASE("eval reproduces the independent reference's cross-entropy on tiny-shakespeare") {
  // golden/bits_per_byte.json: bits per predicted byte over positions 1..1023 of the first
  // 1024 bytes, by an independent pure-Python forward pass.
  const std::vector<uint8_t> raw = test::read_bytes(test::shared_dir() + "/models/rwkv-cpp-tiny/golden/bits_per_byte.json");
  const nlohmann::json golden = nlohmann::json::parse(raw.begin(), raw.end())["results"];
  for (const char* file : {"tiny-rwkv-4v0-660K-FP32.bin", "tiny-rwkv-5v1-730K-FP32.bin", "tiny-rwkv-5v2-730K-FP32.bin",
                           "tiny-rwkv-6v0-1m-FP32.bin", "tiny-rwkv-7v0-834K-FP32.bin"}) {
    CAPTURE(file);
    const Run r = run("eval --model " + quote(test::tiny_model(file)) + " --text-file " +
                      quote(test::shared_dir() + "/data/tiny-shakespeare/input.txt") + " --max-tokens 1024 --json --quiet");
    REQUIRE_MESSAGE(r.exit_code == 0, r.out);
    const nlohmann::json j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
    CHECK(j["tokens_scored"] == 1023);
    const double bits = j["mean_nll"].get<double>() / std::log(2.0);
    // The reference prints 4 decimals.
    CHECK(std::fabs(bits - golden[file]["tiny-shakespeare[0:1024]"].get<double>()) <= 1e-4);
  }
}

TEST_CASE("eval --lambada and --reference run end to end") {
  const std::string model = test::tiny_model("tiny-rwkv-5v2-730K-FP32.bin");
  Run r = run("eval --model " + quote(model) + " --lambada " + quote(test::shared_dir() + "/data/lambada_openai/lambada_test.jsonl") +
              " --max-items 5 --json --quiet");
  REQUIRE_MESSAGE(r.exit_code == 0, r.out);
  nlohmann::json j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  CHECK(j["items"] == 5);
  CHECK(j["accuracy"].get<double>() >= 0.0);
  CHECK(j["perplexity"].get<double>() > 1.0);
  // A model against itself: no drift.
  r = run("eval --model " + quote(model) + " --reference " + quote(model) + " --text-file " +
          quote(test::shared_dir() + "/data/tiny-shakespeare/input.txt") + " --max-tokens 200 --json --quiet");
  REQUIRE_MESSAGE(r.exit_code == 0, r.out);
  j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  CHECK(j["mean_kl"].get<double>() < 1e-9);
  CHECK(j["top1_agreement"] == 1.0);
  // Against the Q5_0 file of the same model: some drift, mostly the same argmax.
  r = run("eval --model " + quote(test::tiny_model("tiny-rwkv-5v2-730K-Q5_1.bin")) + " --reference " + quote(model) +
          " --text-file " + quote(test::shared_dir() + "/data/tiny-shakespeare/input.txt") + " --max-tokens 200 --json --quiet");
  REQUIRE_MESSAGE(r.exit_code == 0, r.out);
  j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  CHECK(j["mean_kl"].get<double>() > 1e-6);
  CHECK(j["top1_agreement"].get<double>() > 0.5);
}

}  // namespace rwkv
