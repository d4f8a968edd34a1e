// Tests for engine/formats/gguf.cpp, gguf_writer.cpp and convert.cpp.
//
// Round trips use the rwkv.cpp tiny models read in place from ../shared. Malformed files are
// made by a small GGUF builder written here independently of our writer, so the reader is
// also checked against a second encoder.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "engine/common/fp16.h"
#include "engine/formats/convert.h"
#include "engine/formats/model_file.h"

namespace {

using namespace rwkv;
namespace fs = std::filesystem;

std::string tiny_model(const std::string& name) {
  return std::string(RWKV_EDGE_SOURCE_DIR) + "/../shared/models/rwkv-cpp-tiny/tiny-rwkv-" + name + ".bin";
}

// A fresh directory per test case, removed at the end.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("rwkv_edge_gguf_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), (std::streamsize)b.size());
}

ModelFile load_tiny(const std::string& name) {
  Result<ModelFile> r = read_rwkvcpp(tiny_model(name));
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return std::move(r).value();
}

std::vector<float> values_f32(const TensorRef& t) {
  std::vector<float> v((size_t)t.n_elements());
  const int64_t rows = t.ne[1] * t.ne[2] * t.ne[3];
  const size_t rb = dtype_row_bytes(t.type, t.ne[0]);
  for (int64_t r = 0; r < rows; ++r) dequantize_row(t.type, t.data + r * rb, v.data() + r * t.ne[0], t.ne[0]);
  return v;
}

void check_same_hparams(const Hparams& a, const Hparams& b) {
  CHECK(a.version == b.version);
  CHECK(a.n_vocab == b.n_vocab);
  CHECK(a.n_embd == b.n_embd);
  CHECK(a.n_layer == b.n_layer);
  CHECK(a.n_ffn == b.n_ffn);
  CHECK(a.n_head == b.n_head);
  CHECK(a.head_size == b.head_size);
  CHECK(a.gn_eps == b.gn_eps);
  CHECK(a.rescale_every == b.rescale_every);
}

// Asserts the status code and that the message names the file and each of `names`.
void check_error(const Status& st, StatusCode code, const std::string& path, std::vector<std::string> names) {
  INFO(st.to_string());
  CHECK(st.code() == code);
  CHECK(st.message().find(path) != std::string::npos);
  for (const std::string& n : names) {
    INFO("expected in message: ", n);
    CHECK(st.message().find(n) != std::string::npos);
  }
}

// ---- An independent GGUF encoder for malformed files ----------------------------------------

struct Kv {
  std::string key;
  uint32_t type;
  std::vector<uint8_t> value;
};

struct TensorInfo {
  std::string name;
  std::vector<uint64_t> ne;
  uint32_t type = 0;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  bool fixed_offset = false;
  uint64_t offset = 0;
};

void put_u32(std::vector<uint8_t>* b, uint32_t v) { b->insert(b->end(), (uint8_t*)&v, (uint8_t*)&v + 4); }
void put_u64(std::vector<uint8_t>* b, uint64_t v) { b->insert(b->end(), (uint8_t*)&v, (uint8_t*)&v + 8); }
void put_str(std::vector<uint8_t>* b, const std::string& s) {
  put_u64(b, s.size());
  b->insert(b->end(), s.begin(), s.end());
}

struct GgufBuilder {
  uint32_t magic = 0x46554747;
  uint32_t version = 3;
  uint64_t alignment = 32;
  int64_t tensor_count = -1;  // -1: the real count
  int64_t kv_count = -1;
  std::vector<Kv> kvs;
  std::vector<TensorInfo> tensors;

  void set(const std::string& key, uint32_t type, std::vector<uint8_t> value) {
    for (Kv& kv : kvs) {
      if (kv.key == key) {
        kv.type = type;
        kv.value = std::move(value);
        return;
      }
    }
    kvs.push_back({key, type, std::move(value)});
  }
  void set_string(const std::string& key, const std::string& s) {
    std::vector<uint8_t> v;
    put_str(&v, s);
    set(key, 8, v);
  }
  void set_u32(const std::string& key, uint32_t x) {
    std::vector<uint8_t> v;
    put_u32(&v, x);
    set(key, 4, v);
  }
  void set_f32(const std::string& key, float x) {
    std::vector<uint8_t> v((uint8_t*)&x, (uint8_t*)&x + 4);
    set(key, 6, v);
  }
  void remove(const std::string& key) {
    for (size_t i = 0; i < kvs.size(); ++i) {
      if (kvs[i].key == key) kvs.erase(kvs.begin() + (long)i);
    }
  }
  TensorInfo& tensor(const std::string& name) {
    for (TensorInfo& t : tensors) {
      if (t.name == name) return t;
    }
    FAIL("no tensor " << name);
    return tensors[0];
  }
  void remove_tensor(const std::string& name) {
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (tensors[i].name == name) tensors.erase(tensors.begin() + (long)i);
    }
  }

  std::vector<uint8_t> build() const {
    std::vector<uint8_t> b;
    put_u32(&b, magic);
    put_u32(&b, version);
    put_u64(&b, tensor_count >= 0 ? (uint64_t)tensor_count : tensors.size());
    put_u64(&b, kv_count >= 0 ? (uint64_t)kv_count : kvs.size());
    for (const Kv& kv : kvs) {
      put_str(&b, kv.key);
      put_u32(&b, kv.type);
      b.insert(b.end(), kv.value.begin(), kv.value.end());
    }
    std::vector<uint64_t> offsets;
    uint64_t off = 0, end = 0;
    for (const TensorInfo& t : tensors) {
      const uint64_t o = t.fixed_offset ? t.offset : off;
      offsets.push_back(o);
      if (!t.fixed_offset) off = (off + t.nbytes + alignment - 1) / alignment * alignment;
      if (o + t.nbytes < (1ull << 32)) end = std::max<uint64_t>(end, o + t.nbytes);
      put_str(&b, t.name);
      put_u32(&b, (uint32_t)t.ne.size());
      for (uint64_t d : t.ne) put_u64(&b, d);
      put_u32(&b, t.type);
      put_u64(&b, o);
    }
    const size_t data_start = (b.size() + alignment - 1) / alignment * alignment;
    b.resize(data_start + end, 0);
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (offsets[i] + tensors[i].nbytes <= end) std::memcpy(b.data() + data_start + offsets[i], tensors[i].data, tensors[i].nbytes);
    }
    return b;
  }
};

// Our standard metadata and the model's tensors, as write_gguf would write them (keep_types).
GgufBuilder builder_for(const ModelFile& mf) {
  GgufBuilder g;
  const Hparams& hp = mf.hparams;
  g.set_string("general.architecture", "rwkv_edge");
  g.set_string("general.name", "builder model");
  g.set_u32("general.alignment", 32);
  g.set_string("rwkv_edge.version", version_name(hp.version));
  g.set_u32("rwkv_edge.vocab_size", (uint32_t)hp.n_vocab);
  g.set_u32("rwkv_edge.embedding_length", (uint32_t)hp.n_embd);
  g.set_u32("rwkv_edge.block_count", (uint32_t)hp.n_layer);
  g.set_u32("rwkv_edge.feed_forward_length", (uint32_t)hp.n_ffn);
  g.set_u32("rwkv_edge.head_count", (uint32_t)hp.n_head);
  g.set_u32("rwkv_edge.head_size", (uint32_t)hp.head_size);
  g.set_f32("rwkv_edge.group_norm_epsilon", hp.gn_eps);
  g.set_u32("rwkv_edge.rescale_every", (uint32_t)hp.rescale_every);
  g.set_string("rwkv_edge.value_form", "rwkvcpp");
  g.set_string("tokenizer.rwkv_edge.kind", mf.tokenizer.kind);
  g.set_string("tokenizer.rwkv_edge.data", mf.tokenizer.data);
  for (const TensorRef& t : mf.tensors) {
    TensorInfo ti;
    ti.name = t.name;
    for (int d = 0; d < t.n_dims; ++d) ti.ne.push_back((uint64_t)t.ne[d]);
    ti.type = (uint32_t)t.type;
    ti.data = t.data;
    ti.nbytes = t.nbytes;
    g.tensors.push_back(ti);
  }
  return g;
}

Status read_built(const TempDir& dir, const GgufBuilder& g, std::string* path_out) {
  static int n = 0;
  *path_out = dir.file("built" + std::to_string(n++) + ".gguf");
  write_bytes(*path_out, g.build());
  Result<ModelFile> r = read_gguf(*path_out);
  return r.ok() ? Status::OK() : r.status();
}

}  // namespace

TEST_SUITE("formats_gguf") {

TEST_CASE("keep_types round trip of every tiny rwkv.cpp model is byte exact") {
  TempDir dir;
  const char* const kModels[] = {"4v0-660K-FP32",  "4v0-660K-Q5_1", "5v1-730K-FP32", "5v1-730K-FP16",
                                 "5v2-730K-FP32",  "5v2-730K-Q5_0", "6v0-1m-FP32",   "6v0-3m-Q5_1",
                                 "7v0-834K-FP32",  "7v0-834K-FP16"};
  for (const std::string name : kModels) {
    INFO(name);
    ModelFile src = load_tiny(name);
    src.metadata["general.name"] = "tiny " + name;
    src.metadata["custom.note"] = "carried through";
    const std::string path = dir.file(name + ".gguf");
    GgufWriteOptions opt;
    opt.keep_types = true;
    opt.matrix_type = DType::kF32;
    Status st = write_gguf(src, path, opt);
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    CHECK_FALSE(fs::exists(path + ".tmp"));

    Result<ModelFile> back = read_gguf(path);
    REQUIRE_MESSAGE(back.ok(), back.status().to_string());
    const ModelFile& g = back.value();
    CHECK(g.source_format == "gguf");
    check_same_hparams(src.hparams, g.hparams);
    CHECK(g.tokenizer.kind == src.tokenizer.kind);
    CHECK(g.tokenizer.data == src.tokenizer.data);
    CHECK(g.metadata.at("general.name") == "tiny " + name);
    CHECK(g.metadata.at("custom.note") == "carried through");
    REQUIRE(g.tensors.size() == src.tensors.size());
    for (const TensorRef& t : src.tensors) {
      const TensorRef* u = g.find(t.name);
      REQUIRE_MESSAGE(u != nullptr, t.name);
      CHECK(u->type == t.type);
      CHECK(u->n_dims == t.n_dims);
      for (int d = 0; d < 4; ++d) CHECK(u->ne[d] == t.ne[d]);
      REQUIRE(u->nbytes == t.nbytes);
      CHECK(std::memcmp(u->data, t.data, t.nbytes) == 0);
      CHECK(reinterpret_cast<uintptr_t>(u->data) % 32 == 0);
    }
    // The file also opens through the format sniffer.
    Result<ModelFile> sniffed = open_model_file(path);
    CHECK_MESSAGE(sniffed.ok(), sniffed.status().to_string());
  }
}

TEST_CASE("f16 conversion gives rwkv.cpp's FP16 types and values") {
  TempDir dir;
  // rwkv.cpp's own FP16 files are the reference for which tensors become f16.
  for (const std::string base : {"4v0-660K", "5v1-730K", "5v2-730K", "6v0-1m", "7v0-834K"}) {
    INFO(base);
    const ModelFile f32 = load_tiny(base + "-FP32");
    const ModelFile f16_ref = load_tiny(base + "-FP16");
    const std::string path = dir.file(base + "-f16.gguf");
    GgufWriteOptions opt;
    opt.matrix_type = DType::kF16;
    Status st = write_gguf(f32, path, opt);
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    Result<ModelFile> back = read_gguf(path);
    REQUIRE_MESSAGE(back.ok(), back.status().to_string());
    for (const TensorRef& ref : f16_ref.tensors) {
      INFO(ref.name);
      const TensorRef* t = back->find(ref.name);
      REQUIRE(t != nullptr);
      // One deliberate difference: rwkv.cpp's FP16 files store the v7 low-rank maps
      // (w1..g2) as f16; we keep them f32, as its quantised files do.
      const std::string last = ref.name.substr(ref.name.rfind('.') + 1);
      const bool v7_low_rank = last.size() == 2 && std::string("wavg").find(last[0]) != std::string::npos &&
                               (last[1] == '1' || last[1] == '2');
      CHECK(t->type == (v7_low_rank ? DType::kF32 : ref.type));
      const TensorRef* src = f32.find(ref.name);
      const std::vector<float> sv = values_f32(*src);
      if (t->type == DType::kF16) {
        const uint16_t* h = reinterpret_cast<const uint16_t*>(t->data);
        bool exact = true;
        for (size_t i = 0; i < sv.size(); ++i) exact = exact && h[i] == fp32_to_fp16(sv[i]);
        CHECK(exact);
      } else {
        CHECK(std::memcmp(t->data, src->data, src->nbytes) == 0);
      }
    }
  }
  // Spot checks of the rule itself on v6 / v7 names.
  const ModelFile v6 = load_tiny("6v0-1m-FP32");
  const ModelFile v7 = load_tiny("7v0-834K-FP32");
  GgufWriteOptions opt;
  opt.matrix_type = DType::kF16;
  CHECK(converted_type(*v6.find("emb.weight"), opt) == DType::kF16);
  CHECK(converted_type(*v6.find("blocks.0.att.key.weight"), opt) == DType::kF16);
  CHECK(converted_type(*v6.find("blocks.0.att.time_maa_w1"), opt) == DType::kF32);
  CHECK(converted_type(*v6.find("blocks.0.att.time_decay_w2"), opt) == DType::kF32);
  CHECK(converted_type(*v6.find("blocks.0.ln1.weight"), opt) == DType::kF32);
  CHECK(converted_type(*v7.find("blocks.0.att.w1"), opt) == DType::kF32);
  CHECK(converted_type(*v7.find("blocks.1.att.v2"), opt) == DType::kF32);
  CHECK(converted_type(*v7.find("blocks.0.att.g1"), opt) == DType::kF32);
  CHECK(converted_type(*v7.find("blocks.0.att.x_rwkvag"), opt) == DType::kF32);
  CHECK(converted_type(*v7.find("blocks.0.att.r_k"), opt) == DType::kF32);
  CHECK(converted_type(*v7.find("blocks.0.ffn.key.weight"), opt) == DType::kF16);
}

TEST_CASE("q8_0 conversion quantises eligible matrices only") {
  TempDir dir;
  for (const std::string name : {"5v2-730K-FP32", "7v0-834K-FP32", "6v0-3m-Q5_1"}) {
    INFO(name);
    const ModelFile src = load_tiny(name);
    const std::string path = dir.file(name + "-q8.gguf");
    GgufWriteOptions opt;
    opt.matrix_type = DType::kQ8_0;
    Status st = write_gguf(src, path, opt);
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    Result<ModelFile> back = read_gguf(path);
    REQUIRE_MESSAGE(back.ok(), back.status().to_string());
    check_same_hparams(src.hparams, back->hparams);
    for (const TensorRef& s : src.tensors) {
      INFO(s.name);
      const TensorRef* t = back->find(s.name);
      REQUIRE(t != nullptr);
      const bool matrix = s.ne[0] > 1 && s.ne[1] > 1 && s.ne[2] == 1 && s.ne[3] == 1;
      const std::string last = s.name.substr(s.name.rfind('.') + 1);
      const bool small = s.name.find(".time_") != std::string::npos || last == "w1" || last == "w2" ||
                         last == "a1" || last == "a2" || last == "v1" || last == "v2" || last == "g1" ||
                         last == "g2" || last == "r_k" || last == "x_rwkvag";
      const DType want = matrix && !small && s.ne[0] % 32 == 0 ? DType::kQ8_0 : DType::kF32;
      CHECK(t->type == want);
      const std::vector<float> sv = values_f32(s);
      if (want == DType::kQ8_0) {
        // Bytes are exactly the reference quantiser's output of the (dequantised) source rows.
        std::vector<BlockQ8_0> q((size_t)(s.n_elements() / 32));
        for (int64_t r = 0; r < s.ne[1]; ++r) {
          quantize_row_q8_0(sv.data() + r * s.ne[0], q.data() + r * (s.ne[0] / 32), s.ne[0]);
        }
        REQUIRE(t->nbytes == q.size() * sizeof(BlockQ8_0));
        CHECK(std::memcmp(t->data, q.data(), t->nbytes) == 0);
        // And dequantise to within half a step of each block's scale, plus the scale's own fp16
        // rounding (relative 2^-11, or 2^-25 absolute when subnormal) times 127 steps.
        const std::vector<float> tv = values_f32(*t);
        size_t bad = 0;
        for (size_t b = 0; b < q.size(); ++b) {
          const float d = fp16_to_fp32(q[b].d);
          const float bound = d * 0.5f + 127.0f * std::max(d / 2048.0f, std::ldexp(1.0f, -25)) + 1e-12f;
          for (int j = 0; j < 32; ++j) bad += std::fabs(tv[b * 32 + j] - sv[b * 32 + j]) > bound;
        }
        CHECK(bad == 0);
      } else {
        const std::vector<float> tv = values_f32(*t);
        CHECK(tv == sv);
      }
    }
  }
  // A matrix whose rows are not a multiple of 32 stays f32.
  TensorRef odd;
  odd.name = "blocks.0.att.key.weight";
  odd.n_dims = 2;
  odd.ne[0] = 48;
  odd.ne[1] = 4;
  GgufWriteOptions opt;
  opt.matrix_type = DType::kQ8_0;
  CHECK(converted_type(odd, opt) == DType::kF32);
}

TEST_CASE("a non-default alignment is written, honoured and recorded") {
  TempDir dir;
  const ModelFile src = load_tiny("7v0-834K-FP16");
  GgufWriteOptions opt;
  opt.keep_types = true;
  opt.alignment = 4096;
  const std::string path = dir.file("aligned.gguf");
  REQUIRE(write_gguf(src, path, opt).ok());
  Result<ModelFile> back = read_gguf(path);
  REQUIRE_MESSAGE(back.ok(), back.status().to_string());
  // The map starts on a page boundary, so file offsets and addresses agree modulo 4096.
  for (const TensorRef& t : back->tensors) CHECK(reinterpret_cast<uintptr_t>(t.data) % 4096 == 0);
}

TEST_CASE("convert_types and write_gguf refuse bad options") {
  TempDir dir;
  const ModelFile src = load_tiny("4v0-660K-FP32");
  GgufWriteOptions opt;
  opt.matrix_type = DType::kQ5_0;
  Result<ModelFile> c = convert_types(src, opt);
  CHECK(c.status().code() == StatusCode::kInvalidArgument);
  CHECK(write_gguf(src, dir.file("x.gguf"), opt).code() == StatusCode::kInvalidArgument);
  opt.matrix_type = DType::kF16;
  opt.alignment = 24;
  CHECK(write_gguf(src, dir.file("x.gguf"), opt).code() == StatusCode::kInvalidArgument);
  opt.alignment = 32;
  const Status io = write_gguf(src, dir.file("no/such/dir/x.gguf"), opt);
  CHECK(io.code() == StatusCode::kIOError);
  CHECK_FALSE(fs::exists(dir.file("x.gguf")));
}

TEST_CASE("the independent builder's files read back (sanity for the error cases)") {
  TempDir dir;
  const ModelFile src = load_tiny("7v0-834K-FP32");
  std::string path;
  const Status st = read_built(dir, builder_for(src), &path);
  CHECK_MESSAGE(st.ok(), st.to_string());
}

TEST_CASE("loader errors name the file and the key or tensor") {
  TempDir dir;
  const ModelFile src = load_tiny("7v0-834K-FP32");
  std::string path;

  SUBCASE("wrong magic") {
    GgufBuilder g = builder_for(src);
    g.magic = 0x46554748;
    check_error(read_built(dir, g, &path), StatusCode::kCorruption, path, {"magic"});
  }
  SUBCASE("big-endian and other versions") {
    GgufBuilder g = builder_for(src);
    g.version = 0x03000000;
    check_error(read_built(dir, g, &path), StatusCode::kUnsupported, path, {"big-endian"});
    g.version = 1;
    check_error(read_built(dir, g, &path), StatusCode::kUnsupported, path, {"v1"});
    g.version = 4;
    check_error(read_built(dir, g, &path), StatusCode::kUnsupported, path, {"version 4"});
    g.version = 2;  // v2 has the same layout
    CHECK(read_built(dir, g, &path).ok());
  }
  SUBCASE("absurd counts") {
    GgufBuilder g = builder_for(src);
    g.tensor_count = 1ll << 40;
    check_error(read_built(dir, g, &path), StatusCode::kCorruption, path, {"tensor count"});
    g = builder_for(src);
    g.kv_count = 1ll << 40;
    check_error(read_built(dir, g, &path), StatusCode::kCorruption, path, {"metadata key count"});
    g = builder_for(src);
    std::vector<uint8_t> arr;
    put_u32(&arr, 4);           // uint32 elements
    put_u64(&arr, 1ull << 60);  // that many
    g.set("custom.array", 9, arr);
    check_error(read_built(dir, g, &path), StatusCode::kCorruption, path, {"custom.array", "array count"});
  }
  SUBCASE("absurd key length") {
    GgufBuilder g = builder_for(src);
    std::vector<uint8_t> b = g.build();
    const uint64_t huge = 1ull << 50;
    std::memcpy(b.data() + 24, &huge, 8);  // length of the first key
    path = dir.file("keylen.gguf");
    write_bytes(path, b);
    check_error(read_gguf(path).status(), StatusCode::kCorruption, path, {"metadata entry #0", "key length"});
  }
  SUBCASE("unknown metadata value type") {
    GgufBuilder g = builder_for(src);
    for (Kv& kv : g.kvs) {
      if (kv.key == "rwkv_edge.vocab_size") kv.type = 13;
    }
    check_error(read_built(dir, g, &path), StatusCode::kCorruption, path, {"rwkv_edge.vocab_size", "value type 13"});
  }
  SUBCASE("duplicate key") {
    GgufBuilder g = builder_for(src);
    Kv dup = g.kvs[3];
    g.kvs.push_back(dup);
    check_error(read_built(dir, g, &path), StatusCode::kCorruption, path, {dup.key, "twice"});
  }
  SUBCASE("unknown and unsupported tensor types") {
    GgufBuilder g = builder_for(src);
    g.tensor("blocks.0.att.key.weight").type = 99;
    check_error(read_built(dir, g, &path), StatusCode::kCorruption, path, {"blocks.0.att.key.weight", "99"});
    g.tensor("blocks.0.att.key.weight").type = 30;  // bf16: a ggml type we do not run
    check_error(read_built(dir, g, &path), StatusCode::kUnsupported, path, {"blocks.0.att.key.weight", "bf16"});
    g.tensor("blocks.0.att.key.weight").type = 12;  // q4_k
    check_error(read_built(dir, g, &path), StatusCode::kUnsupported, path, {"blocks.0.att.key.weight", "q4_k"});
  }
  SUBCASE("n_dims > 4") {
    GgufBuilder g = builder_for(src);
    g.tensor("blocks.2.att.x_rwkvag").ne = {64, 1, 6, 1, 1};
    check_error(read_built(dir, g, &path), StatusCode::kCorruption, path, {"blocks.2.att.x_rwkvag", "n_dims 5"});
  }
  SUBCASE("quantised rows that are not whole blocks") {
    GgufBuilder g = builder_for(src);
    TensorInfo& t = g.tensor("blocks.0.att.key.weight");
    t.type = 8;  // q8_0
    t.ne = {48, 64};
    t.nbytes = 64 * 34;
    check_error(read_built(dir, g, &path), StatusCode::kCorruption, path, {"blocks.0.att.key.weight", "multiple"});
  }
  SUBCASE("misaligned, overlapping and out-of-file offsets") {
    GgufBuilder g = builder_for(src);
    TensorInfo& t = g.tensor("blocks.3.att.value.weight");
    t.fixed_offset = true;
    t.offset = 33;
    check_error(read_built(dir, g, &path), StatusCode::kCorruption, path, {"blocks.3.att.value.weight", "alignment"});
    t.offset = 0;  // where the first tensor lives
    check_error(read_built(dir, g, &path), StatusCode::kCorruption, path,
                {"blocks.3.att.value.weight", "overlaps", g.tensors[0].name});
    t.offset = 1ull << 40;
    check_error(read_built(dir, g, &path), StatusCode::kCorruption, path, {"blocks.3.att.value.weight", "past end"});
  }
  SUBCASE("truncated at several cut points") {
    ModelFile named = src;
    named.metadata["general.name"] = "a model name long enough to cut in the middle";
    const std::string full = dir.file("full.gguf");
    GgufWriteOptions opt;
    opt.keep_types = true;
    REQUIRE(write_gguf(named, full, opt).ok());
    const std::vector<uint8_t> b = read_bytes(full);
    auto find = [&](const std::string& s) {
      auto it = std::search(b.begin(), b.end(), s.begin(), s.end());
      REQUIRE(it != b.end());
      return (size_t)(it - b.begin());
    };
    const std::string probe = "blocks.5.att.key.weight";
    struct Cut {
      size_t at;
      std::vector<std::string> names;
    };
    const std::vector<Cut> cuts = {
        {3, {"header"}},
        {20, {"header"}},
        // Inside the value of general.name: key, type and length were read.
        {find("general.name") + 12 + 4 + 8 + 10, {"general.name"}},
        // Inside the dims of a tensor info.
        {find(probe) + probe.size() + 4 + 3, {probe}},
        // Inside the last tensor's data.
        {b.size() - 10, {named.tensors.back().name, "past end"}},
    };
    for (const Cut& c : cuts) {
      INFO("cut at ", c.at);
      path = dir.file("cut" + std::to_string(c.at) + ".gguf");
      write_bytes(path, std::vector<uint8_t>(b.begin(), b.begin() + (long)c.at));
      check_error(read_gguf(path).status(), StatusCode::kCorruption, path, c.names);
    }
  }
  SUBCASE("llama.cpp RWKV GGUF is refused with a hint") {
    GgufBuilder g = builder_for(src);
    g.set_string("general.architecture", "rwkv7");
    check_error(read_built(dir, g, &path), StatusCode::kUnsupported, path,
                {"general.architecture", "llama.cpp", "rwkv7", "original checkpoint"});
    g.set_string("general.architecture", "llama");
    check_error(read_built(dir, g, &path), StatusCode::kUnsupported, path, {"general.architecture", "llama"});
  }
  SUBCASE("metadata out of range") {
    GgufBuilder g = builder_for(src);
    g.set_string("rwkv_edge.version", "9");
    check_error(read_built(dir, g, &path), StatusCode::kUnsupported, path, {"rwkv_edge.version", "'9'"});
    g.set_string("rwkv_edge.version", "6");  // well-formed, but the tensors are v7
    check_error(read_built(dir, g, &path), StatusCode::kCorruption, path, {"rwkv_edge.version", "v6", "v7"});
    g = builder_for(src);
    g.remove("rwkv_edge.version");
    check_error(read_built(dir, g, &path), StatusCode::kCorruption, path, {"rwkv_edge.version", "missing"});
    g = builder_for(src);
    g.set_u32("rwkv_edge.vocab_size", 1000);
    check_error(read_built(dir, g, &path), StatusCode::kCorruption, path, {"rwkv_edge.vocab_size", "1000", "256"});
    g = builder_for(src);
    g.set_string("rwkv_edge.head_count", "1");
    check_error(read_built(dir, g, &path), StatusCode::kCorruption, path, {"rwkv_edge.head_count", "string"});
    g = builder_for(src);
    g.set_f32("rwkv_edge.group_norm_epsilon", -1.0f);
    check_error(read_built(dir, g, &path), StatusCode::kCorruption, path, {"rwkv_edge.group_norm_epsilon"});
    g.set_f32("rwkv_edge.group_norm_epsilon", NAN);
    check_error(read_built(dir, g, &path), StatusCode::kCorruption, path, {"rwkv_edge.group_norm_epsilon"});
    g = builder_for(src);
    g.set_u32("rwkv_edge.rescale_every", 100000);
    check_error(read_built(dir, g, &path), StatusCode::kCorruption, path, {"rwkv_edge.rescale_every"});
    g = builder_for(src);
    g.set_string("rwkv_edge.value_form", "raw");
    check_error(read_built(dir, g, &path), StatusCode::kUnsupported, path, {"rwkv_edge.value_form", "raw"});
    g = builder_for(src);
    g.set_u32("general.alignment", 24);
    check_error(read_built(dir, g, &path), StatusCode::kCorruption, path, {"general.alignment", "24"});
    g = builder_for(src);
    g.set_string("tokenizer.rwkv_edge.kind", "sentencepiece");
    check_error(read_built(dir, g, &path), StatusCode::kUnsupported, path, {"tokenizer.rwkv_edge.kind"});
  }
  SUBCASE("missing tensor") {
    GgufBuilder g = builder_for(src);
    g.remove_tensor("blocks.4.att.key.weight");
    check_error(read_built(dir, g, &path), StatusCode::kCorruption, path, {"blocks.4.att.key.weight", "missing"});
  }
  SUBCASE("wrong shape") {
    GgufBuilder g = builder_for(src);
    TensorInfo& t = g.tensor("blocks.1.ffn.value.weight");
    t.ne = {t.ne[0] / 2, t.ne[1]};
    t.nbytes /= 2;
    check_error(read_built(dir, g, &path), StatusCode::kCorruption, path, {"blocks.1.ffn.value.weight", "shape"});
  }
}

}  // TEST_SUITE

TEST_CASE("convert_types keeps 1-bit (i1r) predictor tensors and converts the rest") {
  ModelFile mf;
  mf.path = "mem";
  auto buf = std::make_shared<BufferStorage>();
  mf.storage.push_back(buf);
  const int64_t cols = 64, rows = 4;
  TensorRef sign;
  sign.name = "blocks.0.ffn.key.sign";
  sign.type = DType::kI1R;
  sign.n_dims = 2;
  sign.ne[0] = cols;
  sign.ne[1] = rows;
  sign.nbytes = dtype_row_bytes(DType::kI1R, cols) * rows;
  uint8_t* d = buf->add(sign.nbytes);
  std::memset(d, 0x5a, sign.nbytes);
  sign.data = d;
  mf.add_tensor(sign);
  TensorRef w;
  w.name = "blocks.0.ffn.receptance.weight";
  w.type = DType::kF32;
  w.n_dims = 2;
  w.ne[0] = cols;
  w.ne[1] = rows;
  w.nbytes = (size_t)(cols * rows) * 4;
  uint8_t* wd = buf->add(w.nbytes);
  std::memset(wd, 0, w.nbytes);
  w.data = wd;
  mf.add_tensor(w);
  GgufWriteOptions opt;
  opt.matrix_type = DType::kF16;
  Result<ModelFile> out = convert_types(mf, opt);
  REQUIRE(out.ok());
  const TensorRef* s2 = out->find("blocks.0.ffn.key.sign");
  REQUIRE(s2 != nullptr);
  CHECK(s2->type == DType::kI1R);
  CHECK(std::memcmp(s2->data, d, sign.nbytes) == 0);
  const TensorRef* w2 = out->find("blocks.0.ffn.receptance.weight");
  REQUIRE(w2 != nullptr);
  CHECK(w2->type == DType::kF16);
}
