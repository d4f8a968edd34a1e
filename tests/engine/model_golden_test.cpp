// The engine against external ground truth: rwkv.cpp's expected logits and the per-position
// goldens of shared/models/rwkv-cpp-tiny (an independent reference implementation).
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "engine/model.h"
#include "tests/common/test_util.h"

namespace rwkv {
namespace {

std::shared_ptr<Model> load(const std::string& file, bool dequantize = false) {
  LoadOptions opt;
  opt.dequantize = dequantize;
  Result<std::shared_ptr<Model>> m = Model::load(test::tiny_model(file), opt);
  REQUIRE_MESSAGE(m.ok(), m.status().to_string());
  return m.value();
}

// Feeds `"in` one byte at a time, returns the logits after the third byte.
std::vector<float> logits_after_in(const Model& m, bool sequence_mode) {
  const int32_t prompt[3] = {0x22, 0x69, 0x6E};
  State st = m.new_state();
  std::vector<float> logits((size_t)m.hparams().n_vocab);
  if (sequence_mode) {
    REQUIRE(m.eval(st, prompt, 3, logits.data()).ok());
  } else {
    for (int i = 0; i < 3; ++i) REQUIRE(m.eval(st, prompt + i, 1, logits.data()).ok());
  }
  return logits;
}

struct Expected {
  const char* model;
  const char* expected;
  float threshold;  // rwkv.cpp's signed-sum threshold for this file
};

// rwkv.cpp tests/test_tiny_rwkv.c and test_quantization_format_compatibility.c: the signed
// sum of (actual - expected) over the 256 logits must satisfy |sum| <= 1.05 * |threshold|.
const Expected kExpected[] = {
    {"tiny-rwkv-4v0-660K-FP32.bin", "expected-logits-4v0-660K.bin", 0.001f},
    {"tiny-rwkv-4v0-660K-FP16.bin", "expected-logits-4v0-660K.bin", -0.013652f},
    {"tiny-rwkv-4v0-660K-Q5_0.bin", "expected-logits-4v0-660K.bin", -0.170404f},
    {"tiny-rwkv-4v0-660K-Q5_1.bin", "expected-logits-4v0-660K.bin", +0.278034f},
    {"tiny-rwkv-5v1-730K-FP32.bin", "expected-logits-5v1-730K.bin", 0.001f},
    {"tiny-rwkv-5v1-730K-FP16.bin", "expected-logits-5v1-730K.bin", -0.289921f},
    {"tiny-rwkv-5v1-730K-Q5_0.bin", "expected-logits-5v1-730K.bin", -163.439407f},
    {"tiny-rwkv-5v1-730K-Q5_1.bin", "expected-logits-5v1-730K.bin", -18.017435f},
    {"tiny-rwkv-5v2-730K-FP32.bin", "expected-logits-5v2-730K.bin", 0.001f},
    {"tiny-rwkv-5v2-730K-FP16.bin", "expected-logits-5v2-730K.bin", +0.455912f},
    {"tiny-rwkv-5v2-730K-Q5_0.bin", "expected-logits-5v2-730K.bin", +25.273308f},
    {"tiny-rwkv-5v2-730K-Q5_1.bin", "expected-logits-5v2-730K.bin", +48.068733f},
    {"tiny-rwkv-6v0-1m-FP32.bin", "expected-logits-6v0-1m.bin", 0.001f},
    // v6-1m FP16 weights are exactly representable: same threshold as FP32 (README).
    {"tiny-rwkv-6v0-1m-FP16.bin", "expected-logits-6v0-1m.bin", 0.001f},
    {"tiny-rwkv-6v0-3m-Q5_0.bin", "expected-logits-6v0-3m.bin", -21.151785f},
    {"tiny-rwkv-6v0-3m-Q5_1.bin", "expected-logits-6v0-3m.bin", +3.576909f},
    {"tiny-rwkv-7v0-834K-FP32.bin", "expected-logits-7v0-834K.bin", 0.001f},
    {"tiny-rwkv-7v0-834K-FP16.bin", "expected-logits-7v0-834K.bin", +0.005766f},
};

}  // namespace

TEST_CASE("rwkv.cpp expected logits, serial and sequence mode, every tiny model and format") {
  for (const Expected& e : kExpected) {
    CAPTURE(e.model);
    std::shared_ptr<Model> m = load(e.model);
    const std::vector<float> want = test::read_f32(test::tiny_model(e.expected));
    REQUIRE(want.size() == 256);
    for (bool seq : {false, true}) {
      CAPTURE(seq);
      const std::vector<float> got = logits_after_in(*m, seq);
      double sum = 0.0;
      for (int i = 0; i < 256; ++i) sum += (double)got[i] - want[i];
      CHECK(std::fabs(sum) <= 1.05 * std::fabs(e.threshold));
    }
  }
}

TEST_CASE("legacy expected_logits.bin matches the v4 model") {
  std::shared_ptr<Model> m = load("tiny-rwkv-4v0-660K-FP32.bin");
  const std::vector<float> want = test::read_f32(test::tiny_model("expected_logits.bin"));
  const std::vector<float> got = logits_after_in(*m, false);
  float max_diff = 0.0f;
  for (int i = 0; i < 256; ++i) max_diff = std::max(max_diff, std::fabs(got[i] - want[i]));
  CHECK(max_diff <= 1e-4f);
}

namespace {

struct Golden {
  const char* model;
  const char* golden;
  bool dequantize;
};

// Per-position goldens: 64 rows x 256 logits for the first 64 bytes of tiny-shakespeare.
// Tolerance 1e-4 per position (issue #2): the reference computes in float, so only summation
// order separates us; 1e-4 leaves ~30x headroom over the ~3e-6 seen on "in.
const Golden kGoldens[] = {
    {"tiny-rwkv-4v0-660K-FP32.bin", "golden-logits-4v0-660K-FP32-shakespeare64.bin", false},
    {"tiny-rwkv-5v1-730K-FP32.bin", "golden-logits-5v1-730K-FP32-shakespeare64.bin", false},
    {"tiny-rwkv-5v2-730K-FP32.bin", "golden-logits-5v2-730K-FP32-shakespeare64.bin", false},
    {"tiny-rwkv-6v0-1m-FP32.bin", "golden-logits-6v0-1m-FP32-shakespeare64.bin", false},
    {"tiny-rwkv-7v0-834K-FP32.bin", "golden-logits-7v0-834K-FP32-shakespeare64.bin", false},
    // The reference ran this one with dequantised Q5_1 weights and float activations.
    {"tiny-rwkv-6v0-3m-Q5_1.bin", "golden-logits-6v0-3m-Q5_1-shakespeare64.bin", true},
};

std::vector<int32_t> shakespeare64() {
  const std::vector<uint8_t> text = test::read_bytes(test::shared_dir() + "/data/tiny-shakespeare/input.txt");
  REQUIRE(text.size() >= 64);
  return std::vector<int32_t>(text.begin(), text.begin() + 64);
}

float max_abs_diff(const float* a, const float* b, size_t n) {
  float m = 0.0f;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

}  // namespace

TEST_CASE("per-position goldens: serial, sequence mode and odd chunk sizes") {
  const std::vector<int32_t> toks = shakespeare64();
  for (const Golden& g : kGoldens) {
    CAPTURE(g.model);
    std::shared_ptr<Model> m = load(g.model, g.dequantize);
    const std::vector<float> want = test::read_f32(test::shared_dir() + "/models/rwkv-cpp-tiny/golden/" + g.golden);
    REQUIRE(want.size() == 64 * 256);
    // Serial: one token per call.
    {
      State st = m->new_state();
      std::vector<float> logits(256);
      float worst = 0.0f;
      for (int t = 0; t < 64; ++t) {
        REQUIRE(m->eval(st, &toks[t], 1, logits.data()).ok());
        worst = std::max(worst, max_abs_diff(logits.data(), &want[(size_t)t * 256], 256));
      }
      CHECK(worst <= 1e-4f);
    }
    // Sequence mode: all logits of one call, with chunk boundaries at 64, 7 and 1 rows.
    for (int64_t chunk : {64, 7, 1}) {
      CAPTURE(chunk);
      Model& mm = const_cast<Model&>(*m);
      mm.max_chunk_rows = chunk;
      State st = m->new_state();
      std::vector<float> all(64 * 256);
      Segment seg{&st, toks.data(), 64, LogitsMode::kAll, all.data()};
      REQUIRE(m->forward(&seg, 1).ok());
      CHECK(max_abs_diff(all.data(), want.data(), all.size()) <= 1e-4f);
      mm.max_chunk_rows = 64;
    }
  }
}

TEST_CASE("several sequences in one forward pass equal separate runs") {
  std::shared_ptr<Model> m = load("tiny-rwkv-7v0-834K-FP32.bin");
  const std::vector<int32_t> toks = shakespeare64();
  // Reference: two independent sequences, run one after the other.
  State a = m->new_state(), b = m->new_state();
  std::vector<float> la(256), lb(256);
  REQUIRE(m->eval(a, toks.data(), 20, la.data()).ok());
  REQUIRE(m->eval(b, toks.data() + 30, 9, lb.data()).ok());
  // Batched: both in one forward() call.
  State a2 = m->new_state(), b2 = m->new_state();
  std::vector<float> la2(256), lb2(256);
  Segment segs[2] = {{&a2, toks.data(), 20, LogitsMode::kLast, la2.data()},
                     {&b2, toks.data() + 30, 9, LogitsMode::kLast, lb2.data()}};
  REQUIRE(m->forward(segs, 2).ok());
  CHECK(max_abs_diff(la.data(), la2.data(), 256) <= 1e-5f);
  CHECK(max_abs_diff(lb.data(), lb2.data(), 256) <= 1e-5f);
}

TEST_CASE("a state saved and restored continues identically") {
  for (const char* file : {"tiny-rwkv-4v0-660K-FP32.bin", "tiny-rwkv-5v2-730K-FP32.bin", "tiny-rwkv-6v0-1m-FP32.bin",
                           "tiny-rwkv-7v0-834K-FP32.bin"}) {
    CAPTURE(file);
    std::shared_ptr<Model> m = load(file);
    const std::vector<int32_t> toks = shakespeare64();
    State st = m->new_state();
    REQUIRE(m->eval(st, toks.data(), 32, nullptr).ok());
    const std::vector<uint8_t> bytes = st.serialize();
    Result<State> back = State::deserialize(bytes.data(), bytes.size());
    REQUIRE(back.ok());
    State copy = st;  // value semantics
    std::vector<float> l1(256), l2(256), l3(256);
    REQUIRE(m->eval(st, toks.data() + 32, 32, l1.data()).ok());
    REQUIRE(m->eval(back.value(), toks.data() + 32, 32, l2.data()).ok());
    REQUIRE(m->eval(copy, toks.data() + 32, 32, l3.data()).ok());
    CHECK(max_abs_diff(l1.data(), l2.data(), 256) == 0.0f);
    CHECK(max_abs_diff(l1.data(), l3.data(), 256) == 0.0f);
  }
}

TEST_CASE("damaged state bytes are refused") {
  std::shared_ptr<Model> m = load("tiny-rwkv-5v2-730K-FP32.bin");
  State st = m->new_state();
  std::vector<uint8_t> bytes = st.serialize();
  CHECK(State::deserialize(bytes.data(), bytes.size() - 1).status().code() == StatusCode::kCorruption);
  bytes[100] ^= 0x40;
  CHECK(State::deserialize(bytes.data(), bytes.size()).status().code() == StatusCode::kCorruption);
  CHECK(State::deserialize(nullptr, 0).status().code() == StatusCode::kCorruption);
}

TEST_CASE("bad inputs to forward are refused, not crashed on") {
  std::shared_ptr<Model> m = load("tiny-rwkv-5v2-730K-FP32.bin");
  std::shared_ptr<Model> other = load("tiny-rwkv-4v0-660K-FP32.bin");
  State st = m->new_state();
  const int32_t bad[2] = {65, 256};
  CHECK(m->eval(st, bad, 2, nullptr).code() == StatusCode::kInvalidArgument);
  const int32_t neg = -1;
  CHECK(m->eval(st, &neg, 1, nullptr).code() == StatusCode::kInvalidArgument);
  State wrong = other->new_state();
  const int32_t ok = 65;
  CHECK(m->eval(wrong, &ok, 1, nullptr).code() == StatusCode::kInvalidArgument);
  CHECK(m->eval(st, &ok, 0, nullptr).code() == StatusCode::kInvalidArgument);
}

}  // namespace rwkv
