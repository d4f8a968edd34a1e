// The rwkv.cpp .bin reader refuses damaged and foreign files with a message naming the file,
// the tensor and what is wrong; it never crashes.
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "engine/formats/model_file.h"
#include "tests/common/test_util.h"

namespace rwkv {
namespace {

struct Record {
  size_t offset;  // of the record header
  std::string name;
  size_t type_offset, dims_offset, data_offset, data_bytes;
};

// Walks the tensor records of a well-formed ggmf file.
std::vector<Record> records(const std::vector<uint8_t>& f) {
  std::vector<Record> out;
  size_t o = 24;
  while (o < f.size()) {
    uint32_t nd, nl, t;
    std::memcpy(&nd, &f[o], 4);
    std::memcpy(&nl, &f[o + 4], 4);
    std::memcpy(&t, &f[o + 8], 4);
    Record r;
    r.offset = o;
    r.type_offset = o + 8;
    r.dims_offset = o + 12;
    size_t n = 1;
    for (uint32_t i = 0; i < nd; ++i) {
      uint32_t d;
      std::memcpy(&d, &f[o + 12 + 4 * i], 4);
      n *= d;
    }
    r.name.assign(reinterpret_cast<const char*>(&f[o + 12 + 4 * nd]), nl);
    r.data_offset = o + 12 + 4 * nd + nl;
    r.data_bytes = t == 0 ? n * 4 : t == 1 ? n * 2 : t == 7 ? n / 32 * 22 : n / 32 * 24;
    out.push_back(r);
    o = r.data_offset + r.data_bytes;
  }
  return out;
}

Status load_bytes(const test::TempDir& dir, const std::vector<uint8_t>& bytes, const char* name = "m.bin") {
  const std::string p = dir.file(name);
  test::write_bytes(p, bytes.data(), bytes.size());
  Result<ModelFile> mf = open_model_file(p);
  return mf.ok() ? Status::OK() : mf.status();
}

void put_u32(std::vector<uint8_t>& f, size_t at, uint32_t v) { std::memcpy(&f[at], &v, 4); }

}  // namespace

TEST_CASE("damaged rwkv.cpp files are refused with file, tensor and reason") {
  test::TempDir dir;
  const std::vector<uint8_t> good = test::read_bytes(test::tiny_model("tiny-rwkv-5v2-730K-FP32.bin"));
  REQUIRE(good.size() > 1000);
  REQUIRE(load_bytes(dir, good).ok());
  const std::vector<Record> recs = records(good);
  REQUIRE(recs.size() > 10);

  SUBCASE("truncated at many points") {
    for (size_t cut : {size_t(0), size_t(3), size_t(23), size_t(24), size_t(30), recs[3].data_offset + 5, good.size() - 1}) {
      CAPTURE(cut);
      std::vector<uint8_t> f(good.begin(), good.begin() + (std::ptrdiff_t)cut);
      const Status st = load_bytes(dir, f);
      CHECK(st.code() == StatusCode::kCorruption);
      CHECK(st.message().find("m.bin") != std::string::npos);
    }
    std::vector<uint8_t> f(good.begin(), good.begin() + (std::ptrdiff_t)(recs[3].data_offset + 5));
    CHECK(load_bytes(dir, f).message().find(recs[3].name) != std::string::npos);
  }
  SUBCASE("wrong magic") {
    std::vector<uint8_t> f = good;
    f[0] = 'x';
    const Status st = load_bytes(dir, f);
    CHECK(st.code() == StatusCode::kCorruption);
    CHECK(st.message().find("m.bin") != std::string::npos);
  }
  SUBCASE("unknown file version") {
    std::vector<uint8_t> f = good;
    put_u32(f, 4, 7);
    CHECK(load_bytes(dir, f).code() == StatusCode::kUnsupported);
  }
  SUBCASE("unknown and removed tensor types") {
    for (uint32_t code : {4u, 5u, 6u, 10u, 99u}) {
      CAPTURE(code);
      std::vector<uint8_t> f = good;
      put_u32(f, recs[2].type_offset, code);
      const Status st = load_bytes(dir, f);
      CHECK(st.code() == StatusCode::kUnsupported);
      CHECK(st.message().find(recs[2].name) != std::string::npos);
    }
  }
  SUBCASE("missing tensor") {
    // Drop the record of blocks.3.att.gate.weight.
    const Record* gate = nullptr;
    for (const Record& r : recs) {
      if (r.name == "blocks.3.att.gate.weight") gate = &r;
    }
    REQUIRE(gate != nullptr);
    std::vector<uint8_t> f(good.begin(), good.begin() + (std::ptrdiff_t)gate->offset);
    f.insert(f.end(), good.begin() + (std::ptrdiff_t)(gate->data_offset + gate->data_bytes), good.end());
    const Status st = load_bytes(dir, f);
    CHECK(st.code() == StatusCode::kCorruption);
    CHECK(st.message().find("blocks.3.att.gate.weight") != std::string::npos);
    CHECK(st.message().find("missing") != std::string::npos);
  }
  SUBCASE("wrong shape") {
    // Swap the two dims of a non-square matrix (ffn.key.weight [64, 256] -> [256, 64]).
    const Record* key = nullptr;
    for (const Record& r : recs) {
      if (r.name == "blocks.2.ffn.key.weight") key = &r;
    }
    REQUIRE(key != nullptr);
    std::vector<uint8_t> f = good;
    put_u32(f, key->dims_offset, 256);
    put_u32(f, key->dims_offset + 4, 64);
    const Status st = load_bytes(dir, f);
    CHECK(st.code() == StatusCode::kCorruption);
    CHECK(st.message().find("blocks.2.ffn.key.weight") != std::string::npos);
    CHECK(st.message().find("shape") != std::string::npos);
  }
  SUBCASE("header values out of range or disagreeing with the tensors") {
    std::vector<uint8_t> f = good;
    put_u32(f, 16, 0);  // n_layer 0
    CHECK(load_bytes(dir, f).code() == StatusCode::kCorruption);
    f = good;
    put_u32(f, 8, 300);  // n_vocab 300, tensors say 256
    const Status st = load_bytes(dir, f);
    CHECK(st.code() == StatusCode::kCorruption);
    CHECK(st.message().find("n_vocab") != std::string::npos);
  }
  SUBCASE("absurd dimension and name length") {
    std::vector<uint8_t> f = good;
    put_u32(f, recs[1].dims_offset, 0xfffffff0u);
    CHECK(load_bytes(dir, f).code() == StatusCode::kCorruption);
    f = good;
    put_u32(f, recs[1].offset + 4, 1u << 30);
    CHECK(load_bytes(dir, f).code() == StatusCode::kCorruption);
  }
  SUBCASE("a quantised tensor in a version-100 file") {
    std::vector<uint8_t> q = test::read_bytes(test::tiny_model("tiny-rwkv-5v2-730K-Q5_0.bin"));
    put_u32(q, 4, 100);
    const Status st = load_bytes(dir, q);
    CHECK(st.code() == StatusCode::kCorruption);
    CHECK(st.message().find("version 101") != std::string::npos);
  }
}

TEST_CASE("missing files and empty files are clear errors") {
  test::TempDir dir;
  Result<ModelFile> mf = open_model_file(dir.file("nope.bin"));
  CHECK(mf.status().code() == StatusCode::kNotFound);
  CHECK(mf.status().message().find("nope.bin") != std::string::npos);
  CHECK(load_bytes(dir, {}, "empty.bin").code() == StatusCode::kCorruption);
}

}  // namespace rwkv
