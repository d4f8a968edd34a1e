// Weight store, caches and planner (engine/store/, issue 7): byte sizes, the LRU, the budget
// split, and whole models whose logits must be the same bits whether the weights come from the
// file's map, from cache hits or from file reads.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/compress/calib.h"
#include "engine/compress/ffn_predictor.h"
#include "engine/compress/head_cluster.h"
#include "engine/model.h"
#include "engine/store/planner.h"
#include "engine/store/process_memory.h"
#include "engine/store/weight_store.h"
#include "tests/common/test_util.h"

namespace rwkv {
namespace {

TEST_CASE("byte sizes: plain numbers and K/M/G/T suffixes; bad text is refused") {
  CHECK(store::parse_byte_size("1500000").value() == 1500000u);
  CHECK(store::parse_byte_size("64M").value() == 64u << 20);
  CHECK(store::parse_byte_size("64MiB").value() == 64u << 20);
  CHECK(store::parse_byte_size("512k").value() == 512u << 10);
  CHECK(store::parse_byte_size("1G").value() == 1u << 30);
  CHECK(store::parse_byte_size("2gb").value() == 2ull << 30);
  CHECK(store::parse_byte_size("0").value() == 0u);
  for (const char* bad : {"", "M", "12X", "-5M", "1.5G", "99999999999999999999", "20000000T"}) {
    CAPTURE(bad);
    Result<size_t> r = store::parse_byte_size(bad);
    REQUIRE(!r.ok());
    CHECK(r.status().code() == StatusCode::kInvalidArgument);
  }
}

TEST_CASE("SlotLru evicts the least recently used key and never a key of the current round") {
  store::SlotLru lru(10, 3);
  CHECK(lru.find(1) == -1);
  const int32_t s1 = lru.insert(1), s2 = lru.insert(2), s3 = lru.insert(3);
  CHECK(s1 != s2);
  CHECK(s2 != s3);
  CHECK(lru.find(1) == s1);        // 1 is now the most recent; 2 the least
  const int32_t s4 = lru.insert(4);
  CHECK(s4 == s2);                 // 2 evicted
  CHECK(lru.find(2) == -1);
  CHECK(lru.find(3) == s3);
  // Round 7 uses every slot: a fourth key of that round gets no slot and evicts nothing.
  CHECK(lru.find(1, 7) == s1);
  CHECK(lru.find(3, 7) == s3);
  CHECK(lru.find(4, 7) == s4);
  CHECK(lru.insert(5, 7) == -1);
  CHECK(lru.find(1) == s1);
  CHECK(lru.find(3) == s3);
  // The next round may evict again.
  CHECK(lru.insert(5, 8) >= 0);
}

store::StoreLayout toy_layout() {
  store::StoreLayout L;
  L.n_vocab = 1000;
  L.resident_bytes = 1 << 20;
  L.emb_row_bytes = 512;
  for (int64_t l = 0; l < 2; ++l) L.ffn.push_back({l, 1024, 1024, 0.25});
  L.head_bytes = 512 * 1000;
  L.largest_cluster_bytes = 512 * 100;
  L.head_row_fraction = 0.1;
  L.state_bytes = 4096;
  L.scratch_bytes_per_row = 1000;
  L.scratch_bytes_fixed = 8000;
  return L;
}

TEST_CASE("planner: refuses a budget below the resident part, naming the minimum; splits a larger one") {
  const store::StoreLayout L = toy_layout();
  store::PlanRequest req{1 << 20, 2, 16};
  Result<store::MemoryPlan> small = store::plan_memory(L, req);
  REQUIRE(!small.ok());
  CHECK(small.status().code() == StatusCode::kResourceExhausted);
  CHECK(small.status().message().find("needs at least") != std::string::npos);
  // Exactly the minimum works and gives the smallest caches.
  req.budget = 1 << 24;
  Result<store::MemoryPlan> big = store::plan_memory(L, req);
  REQUIRE(big.ok());
  const size_t minimum = big.value().minimum;
  req.budget = minimum;
  Result<store::MemoryPlan> exact = store::plan_memory(L, req);
  REQUIRE(exact.ok());
  CHECK(exact.value().emb_rows == 16);
  CHECK(exact.value().ffn_neurons[0] == 16);
  CHECK(exact.value().head_cache_bytes == 0);
  req.budget = minimum - 1;
  CHECK(!store::plan_memory(L, req).ok());
  // A plan never hands out more than the budget, and a large one holds everything.
  for (size_t b : {minimum + 1000, minimum + 100000, minimum + 600000, (size_t)1 << 24}) {
    req.budget = b;
    const store::MemoryPlan p = store::plan_memory(L, req).value();
    CHECK(p.resident_bytes + p.state_bytes + p.scratch_bytes + p.cache_bytes() <= b);
  }
  const store::MemoryPlan& all = big.value();
  CHECK(all.emb_rows == 1000);
  CHECK(all.ffn_neurons[1] == 1024);
  CHECK(all.head_cache_bytes == L.head_bytes);
  CHECK(all.state_bytes == 2 * 4096);
}

std::vector<int32_t> byte_tokens(const std::string& text) {
  std::vector<int32_t> t;
  for (unsigned char c : text) t.push_back((int32_t)c);
  return t;
}

// A tiny model compressed with a sparse FFN (1-bit predictor, q = 0.5: half the neurons per
// token) and a clustered head (8 clusters, p_min 0.9), written to `path`.
void write_compressed_tiny(const std::string& file, const std::string& path) {
  Result<ModelFile> mf = open_model_file(test::tiny_model(file));
  REQUIRE_MESSAGE(mf.ok(), mf.status().to_string());
  Result<std::shared_ptr<Model>> dense = Model::from_file(mf.value(), {});
  REQUIRE(dense.ok());
  const std::vector<int32_t> calib = byte_tokens(
      "The quick brown fox jumps over the lazy dog. In the beginning was the word, and the word was with "
      "the model; the model predicted the next byte, and the next, until the text was done. 0123456789 "
      "Pack my box with five dozen liquor jugs. How vexingly quick daft zebras jump!");
  compress::FfnProbe ffn_probe(mf.value().hparams.n_layer, 4096);
  compress::HeadProbe head_probe;
  REQUIRE(compress::run_calibration(*dense.value(), calib, &ffn_probe).ok());
  REQUIRE(compress::run_calibration(*dense.value(), calib, &head_probe).ok());
  ModelFile out = mf.value();
  compress::FfnOptions fo;
  fo.q = {0.5};
  fo.mlp = false;
  REQUIRE(compress::compress_ffn(out, ffn_probe.samples(), fo, nullptr, nullptr).ok());
  compress::HeadOptions ho;
  ho.clusters = 8;
  ho.p_min = 0.9f;
  ho.k_min = 1;
  ho.distill.epochs = 2;
  compress::HeadReport hr;
  Status st = compress::compress_head(out, *dense.value(), head_probe.hidden.data(), head_probe.n_rows, ho, &hr);
  REQUIRE_MESSAGE(st.ok(), st.to_string());
  REQUIRE(finalize_model_file(out, true).ok());
  GgufWriteOptions w;
  w.keep_types = true;
  REQUIRE(write_gguf(out, path, w).ok());
}

// Greedy generation of n tokens after `prompt`; every step's logits appended to *all.
void greedy(const Model& m, const std::vector<int32_t>& prompt, int n, std::vector<float>* all) {
  const int64_t V = m.hparams().n_vocab;
  State st = m.new_state();
  std::vector<float> logits((size_t)V);
  REQUIRE(m.eval(st, prompt.data(), prompt.size(), logits.data()).ok());
  for (int i = 0; i < n; ++i) {
    all->insert(all->end(), logits.begin(), logits.end());
    const int32_t next = (int32_t)(std::max_element(logits.begin(), logits.end()) - logits.begin());
    Status s = m.eval(st, &next, 1, logits.data());
    REQUIRE_MESSAGE(s.ok(), s.to_string());
  }
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

Result<std::shared_ptr<Model>> load_budget(const std::string& path, size_t budget) {
  LoadOptions o;
  o.mem_budget = budget;
  o.budget_chunk_rows = 8;
  return Model::load(path, o);
}

TEST_CASE("compressed tiny model: the same logits bits from the map, from cache hits and from file reads") {
  test::TempDir dir;
  const std::string path = dir.file("c.gguf");
  write_compressed_tiny("tiny-rwkv-5v2-730K-FP16.bin", path);
  Result<std::shared_ptr<Model>> mapped = Model::load(path, {});
  REQUIRE(mapped.ok());
  REQUIRE(mapped.value()->clustered_head() != nullptr);
  CHECK(!mapped.value()->store_stats().enabled);
  CHECK(mapped.value()->memory_plan() == nullptr);
  const std::vector<int32_t> prompt = byte_tokens("Once upon a time, ");
  std::vector<float> want;
  greedy(*mapped.value(), prompt, 48, &want);

  // Everything fits: after the first pass only hits.
  Result<std::shared_ptr<Model>> roomy = load_budget(path, 64 << 20);
  REQUIRE_MESSAGE(roomy.ok(), roomy.status().to_string());
  const size_t minimum = roomy.value()->memory_plan()->minimum;
  std::vector<float> got;
  greedy(*roomy.value(), prompt, 48, &got);
  CHECK(same_bits(want, got));
  got.clear();
  roomy.value()->reset_store_stats();
  greedy(*roomy.value(), prompt, 48, &got);
  CHECK(same_bits(want, got));
  const store::StoreStats rs = roomy.value()->store_stats();
  CHECK(rs.enabled);
  CHECK(rs.ffn.misses == 0);
  CHECK(rs.emb.misses == 0);
  CHECK(rs.ffn.hits > 0);

  // The smallest budget: caches far below the working set, so most look-ups read the file.
  Result<std::shared_ptr<Model>> tight = load_budget(path, minimum);
  REQUIRE_MESSAGE(tight.ok(), tight.status().to_string());
  got.clear();
  greedy(*tight.value(), prompt, 48, &got);
  CHECK(same_bits(want, got));
  const store::StoreStats ts = tight.value()->store_stats();
  MESSAGE(tight.value()->memory_plan()->describe());
  CHECK(ts.ffn.misses > ts.ffn.hits);
  CHECK(ts.emb.misses > 0);
  CHECK(ts.head.misses > 0);
  CHECK(ts.bytes_read() > 0);
  // At the minimum every dense per-step matrix is streamed through the shared buffer.
  CHECK(!tight.value()->memory_plan()->streamed.empty());
  CHECK(ts.dense.misses > 0);

  // Batched: two sequences in one forward pass, chunks of 8 rows on both sides (the chunking
  // itself changes the gemm batch sizes, so it must be the same for a bitwise comparison).
  mapped.value()->max_chunk_rows = 8;
  const std::vector<int32_t> a = byte_tokens("first sequence here"), b = byte_tokens("and the second one");
  const int64_t V = mapped.value()->hparams().n_vocab;
  auto batched = [&](const Model& m) {
    State sa = m.new_state(), sb = m.new_state();
    std::vector<float> out((a.size() + b.size()) * (size_t)V);
    Segment seg[2] = {{&sa, a.data(), (int64_t)a.size(), LogitsMode::kAll, out.data()},
                      {&sb, b.data(), (int64_t)b.size(), LogitsMode::kAll, out.data() + a.size() * V}};
    REQUIRE(m.forward(seg, 2).ok());
    return out;
  };
  CHECK(same_bits(batched(*mapped.value()), batched(*tight.value())));

  // One byte less than the minimum is refused with the minimum in the message.
  Result<std::shared_ptr<Model>> too_small = load_budget(path, minimum - 1);
  REQUIRE(!too_small.ok());
  CHECK(too_small.status().code() == StatusCode::kResourceExhausted);
  CHECK(too_small.status().message().find(std::to_string(minimum) + " bytes") != std::string::npos);
}

TEST_CASE("dense tiny models under a budget: embedding rows from the file, same logits bits") {
  for (const char* file : {"tiny-rwkv-4v0-660K-FP32.bin", "tiny-rwkv-6v0-1m-FP16.bin", "tiny-rwkv-7v0-834K-FP16.bin",
                           "tiny-rwkv-5v1-730K-Q5_1.bin"}) {
    CAPTURE(file);
    const std::string path = test::tiny_model(file);
    Result<std::shared_ptr<Model>> mapped = Model::load(path, {});
    REQUIRE(mapped.ok());
    Result<std::shared_ptr<Model>> roomy = load_budget(path, 256 << 20);
    REQUIRE_MESSAGE(roomy.ok(), roomy.status().to_string());
    Result<std::shared_ptr<Model>> tight = load_budget(path, roomy.value()->memory_plan()->minimum);
    REQUIRE(tight.ok());
    const std::vector<int32_t> prompt = byte_tokens("A dense model: ");
    std::vector<float> want, got;
    greedy(*mapped.value(), prompt, 24, &want);
    greedy(*tight.value(), prompt, 24, &got);
    CHECK(same_bits(want, got));
    CHECK(tight.value()->store_stats().emb.misses > 0);
    // Dequantised at load (quantised types): streamed tensors stay what the kernels read.
    LoadOptions dq;
    dq.dequantize = true;
    Result<std::shared_ptr<Model>> dq_mapped = Model::load(path, dq);
    REQUIRE(dq_mapped.ok());
    dq.mem_budget = 256 << 20;
    dq.budget_chunk_rows = 8;
    Result<std::shared_ptr<Model>> dq_roomy = Model::load(path, dq);
    REQUIRE(dq_roomy.ok());
    dq.mem_budget = dq_roomy.value()->memory_plan()->minimum;
    Result<std::shared_ptr<Model>> dq_tight = Model::load(path, dq);
    REQUIRE_MESSAGE(dq_tight.ok(), dq_tight.status().to_string());
    want.clear();
    got.clear();
    greedy(*dq_mapped.value(), prompt, 24, &want);
    greedy(*dq_tight.value(), prompt, 24, &got);
    CHECK(same_bits(want, got));
  }
}

TEST_CASE("a model file that shrinks under a budgeted model gives an error, not a crash") {
  test::TempDir dir;
  const std::string path = dir.file("d.gguf");
  {
    Result<ModelFile> mf = open_model_file(test::tiny_model("tiny-rwkv-5v2-730K-FP32.bin"));
    REQUIRE(mf.ok());
    GgufWriteOptions w;
    w.keep_types = true;
    REQUIRE(write_gguf(mf.value(), path, w).ok());
  }
  Result<std::shared_ptr<Model>> m = load_budget(path, 64 << 20);
  REQUIRE(m.ok());
  // emb.weight is the first tensor of our GGUFs: cutting the file after the header and a few
  // rows leaves most embedding rows unreadable.
  std::filesystem::resize_file(path, 64 << 10);
  State st = m.value()->new_state();
  std::vector<float> logits((size_t)m.value()->hparams().n_vocab);
  bool failed = false;
  for (int32_t t = 0; t < 256 && !failed; ++t) {
    Status s = m.value()->eval(st, &t, 1, logits.data());
    if (!s.ok()) {
      failed = true;
      CHECK(s.code() == StatusCode::kIOError);
      CHECK(s.message().find("d.gguf") != std::string::npos);
    }
  }
  CHECK(failed);
}

TEST_CASE("process memory: VmRSS and VmHWM are read from /proc/self/status") {
  const store::ProcessMemory m = store::read_process_memory();
  REQUIRE(m.rss_bytes > 0);
  CHECK(m.peak_rss_bytes >= m.rss_bytes);
}

}  // namespace
}  // namespace rwkv
