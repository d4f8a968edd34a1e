// Tests for engine/formats/safetensors*.cpp.
//
// Synthetic BlinkDL checkpoints are made from the rwkv.cpp tiny models by inverting
// rwkv.cpp's converter (raw names, PyTorch shapes, un-exponentiated decays, input-major
// low-rank maps); importing them must give back the canonical tensors.
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
#include "engine/formats/model_file.h"
#include "engine/formats/safetensors.h"
#include "engine/formats/safetensors_json.h"

namespace {

using namespace rwkv;
namespace fs = std::filesystem;

std::string tiny_model(const std::string& name) {
  return std::string(RWKV_EDGE_SOURCE_DIR) + "/../shared/models/rwkv-cpp-tiny/tiny-rwkv-" + name + ".bin";
}

struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("rwkv_edge_st_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

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

void check_error(const Status& st, StatusCode code, const std::string& path, std::vector<std::string> names) {
  INFO(st.to_string());
  CHECK(st.code() == code);
  CHECK(st.message().find(path) != std::string::npos);
  for (const std::string& n : names) {
    INFO("expected in message: ", n);
    CHECK(st.message().find(n) != std::string::npos);
  }
}

// ---- A minimal safetensors writer --------------------------------------------------------------

struct RawTensor {
  std::string name;
  std::vector<int64_t> shape;  // PyTorch order
  std::vector<float> values;
};

enum class Dtype { kF32, kF16, kBF16 };

uint16_t to_bf16(float f) {  // round to nearest even
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

// What a value becomes after a round trip through `d`.
float through(Dtype d, float f) {
  if (d == Dtype::kF16) return fp16_to_fp32(fp32_to_fp16(f));
  if (d == Dtype::kBF16) {
    const uint32_t b = (uint32_t)to_bf16(f) << 16;
    float r;
    std::memcpy(&r, &b, 4);
    return r;
  }
  return f;
}

struct Entry {  // a header entry written verbatim (for malformed files)
  std::string name, json;
};

std::vector<uint8_t> safetensors_bytes(const std::vector<RawTensor>& ts, Dtype d,
                                       const std::map<std::string, std::string>& metadata,
                                       const std::vector<Entry>& extra = {}, size_t extra_data = 0) {
  const char* dname = d == Dtype::kF32 ? "F32" : d == Dtype::kF16 ? "F16" : "BF16";
  const size_t esize = d == Dtype::kF32 ? 4 : 2;
  std::string h = "{";
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    bool first = true;
    for (const auto& kv : metadata) {
      h += std::string(first ? "" : ",") + "\"" + kv.first + "\":\"" + kv.second + "\"";
      first = false;
    }
    h += "},";
  }
  std::vector<uint8_t> data;
  for (const RawTensor& t : ts) {
    const size_t begin = data.size();
    for (float f : t.values) {
      if (d == Dtype::kF32) {
        data.insert(data.end(), (uint8_t*)&f, (uint8_t*)&f + 4);
      } else {
        const uint16_t v = d == Dtype::kF16 ? fp32_to_fp16(f) : to_bf16(f);
        data.insert(data.end(), (uint8_t*)&v, (uint8_t*)&v + 2);
      }
    }
    h += "\"" + t.name + "\":{\"dtype\":\"" + dname + "\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i) h += (i ? "," : "") + std::to_string(t.shape[i]);
    h += "],\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(begin + t.values.size() * esize) + "]},";
  }
  for (const Entry& e : extra) h += "\"" + e.name + "\":" + e.json + ",";
  data.resize(data.size() + extra_data, 0);
  h.back() = '}';
  while ((8 + h.size()) % 8 != 0) h += ' ';
  const uint64_t n = h.size();
  std::vector<uint8_t> out;
  out.reserve(8 + h.size() + data.size());
  out.insert(out.end(), (const uint8_t*)&n, (const uint8_t*)&n + 8);
  out.insert(out.end(), h.begin(), h.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

// ---- Inverting rwkv.cpp's converter --------------------------------------------------------

enum class Flavour { kBlinkDL, kWebRwkv };

std::vector<int64_t> torch_shape(const TensorRef& t) {
  std::vector<int64_t> s;
  for (int d = t.n_dims - 1; d >= 0; --d) s.push_back(t.ne[d]);
  return s;
}

// Swaps the last two dims of a row-major tensor.
void transpose_last2(std::vector<int64_t>* shape, std::vector<float>* v) {
  const size_t r = shape->size();
  const int64_t a = (*shape)[r - 2], b = (*shape)[r - 1];
  std::vector<float> out(v->size());
  for (int64_t k = 0; k < (int64_t)v->size() / (a * b); ++k) {
    for (int64_t i = 0; i < a; ++i) {
      for (int64_t j = 0; j < b; ++j) out[k * a * b + j * a + i] = (*v)[k * a * b + i * b + j];
    }
  }
  v->swap(out);
  std::swap((*shape)[r - 2], (*shape)[r - 1]);
}

std::string suffix_of(const std::string& name) {
  if (name.compare(0, 7, "blocks.") != 0) return name;
  return name.substr(name.find('.', 7) + 1);
}

// The raw checkpoint a BlinkDL .pth would hold for `mf` (or its web-rwkv .st rendering).
std::vector<RawTensor> to_checkpoint(const ModelFile& mf, Flavour fl) {
  const Hparams& hp = mf.hparams;
  const int64_t C = hp.n_embd, H = hp.n_head, S = hp.head_size;
  const bool st = fl == Flavour::kWebRwkv;
  std::vector<RawTensor> out;
  for (const TensorRef& t : mf.tensors) {
    RawTensor r{t.name, torch_shape(t), values_f32(t)};
    const std::string sfx = suffix_of(t.name);
    const std::string prefix = t.name.substr(0, t.name.size() - sfx.size());
    const bool is_time = t.name.find(".time_") != std::string::npos;
    if (is_time && hp.version != RwkvVersion::kV7) r.shape = {1, 1, t.n_elements()};
    switch (hp.version) {
      case RwkvVersion::kV4:
        if (sfx == "att.time_decay") {
          for (float& x : r.values) x = (float)std::log(-(double)x);
        }
        if (sfx == "att.time_decay" || sfx == "att.time_first") r.shape = {C};
        break;
      case RwkvVersion::kV5_1:
        if (sfx == "att.time_decay") {
          for (float& x : r.values) x = (float)std::log(-std::log((double)x));
        }
        if (sfx == "att.time_first") {
          for (float& x : r.values) x = (float)std::log((double)x);
        }
        if (sfx == "att.time_decay" || sfx == "att.time_first") r.shape = {H};
        break;
      case RwkvVersion::kV5_2:
        if (sfx == "att.time_decay") {
          for (float& x : r.values) x = (float)std::log(-std::log((double)x));
        }
        if (sfx == "att.time_decay" || sfx == "att.time_faaaa") r.shape = {H, S};
        if (st && sfx == "att.time_faaaa") r.name = prefix + "att.time_first";
        break;
      case RwkvVersion::kV6:
        if (sfx == "att.time_faaaa") r.shape = {H, S};
        if (sfx == "att.time_maa_w2") r.shape = torch_shape(t);
        if (!st && (sfx == "att.time_maa_w1" || sfx == "att.time_decay_w1" || sfx == "att.time_decay_w2" ||
                    sfx == "att.time_maa_w2")) {
          r.shape = torch_shape(t);
          transpose_last2(&r.shape, &r.values);
        }
        if (sfx == "att.time_maa_w1" || sfx == "att.time_decay_w1" || sfx == "att.time_decay_w2") {
          if (st) r.shape = torch_shape(t);
        }
        if (st) {
          const size_t p = r.name.find(".time_maa_");
          if (p != std::string::npos) r.name.replace(p, 10, ".time_mix_");
          if (sfx == "att.time_faaaa") r.name = prefix + "att.time_first";
        }
        break;
      case RwkvVersion::kV7: {
        if (sfx == "att.x_rwkvag") {
          const char* names[6] = {"x_r", "x_w", "x_k", "x_v", "x_a", "x_g"};
          for (int k = 0; k < 6; ++k) {
            out.push_back({prefix + "att." + names[k], {1, 1, C},
                           std::vector<float>(r.values.begin() + k * C, r.values.begin() + (k + 1) * C)});
          }
          continue;
        }
        if (sfx == "att.w0" || sfx == "att.a0" || sfx == "att.v0" || sfx == "att.k_k" || sfx == "att.k_a" ||
            sfx == "ffn.x_k") {
          r.shape = {1, 1, C};
        }
        const std::string last = sfx.substr(sfx.rfind('.') + 1);
        const bool low_rank = last.size() == 2 && std::string("wavg").find(last[0]) != std::string::npos &&
                              (last[1] == '1' || last[1] == '2');
        if (low_rank && !st) transpose_last2(&r.shape, &r.values);
        break;
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

// Compares an import with the canonical model: same names, dims and (within `rel`) values.
void check_matches(const ModelFile& got, const ModelFile& want, double rel, Dtype through_dtype) {
  CHECK(got.tensors.size() == want.tensors.size());
  CHECK(got.hparams.version == want.hparams.version);
  CHECK(got.hparams.n_embd == want.hparams.n_embd);
  CHECK(got.hparams.n_layer == want.hparams.n_layer);
  CHECK(got.hparams.n_head == want.hparams.n_head);
  CHECK(got.hparams.n_ffn == want.hparams.n_ffn);
  for (const TensorRef& w : want.tensors) {
    INFO(w.name);
    const TensorRef* g = got.find(w.name);
    REQUIRE(g != nullptr);
    CHECK(g->n_dims == w.n_dims);
    for (int d = 0; d < 4; ++d) CHECK(g->ne[d] == w.ne[d]);
    const std::vector<float> gv = values_f32(*g), wv = values_f32(w);
    REQUIRE(gv.size() == wv.size());
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < gv.size(); ++i) {
      const double expect = through_dtype == Dtype::kF32 ? wv[i] : through(through_dtype, wv[i]);
      const double err = std::fabs(gv[i] - expect) / std::max(std::fabs(expect), 1e-30);
      if (gv[i] != (float)expect && err > worst) {
        worst = err;
        at = i;
      }
    }
    INFO("worst relative error ", worst, " at ", at, ": got ", gv[at], " want ", wv[at]);
    CHECK(worst <= rel);
  }
}

ModelFile import_file(const std::string& path) {
  Result<ModelFile> r = read_safetensors(path);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return std::move(r).value();
}

}  // namespace

TEST_SUITE("formats_safetensors") {

TEST_CASE("BlinkDL checkpoints import to rwkv.cpp's canonical tensors (v4, v5.1, v5.2, v6, v7)") {
  TempDir dir;
  for (const std::string name : {"4v0-660K-FP32", "5v1-730K-FP32", "5v2-730K-FP32", "6v0-1m-FP32", "7v0-834K-FP32"}) {
    INFO(name);
    const ModelFile canon = load_tiny(name);
    const std::string path = dir.file(name + ".safetensors");
    write_bytes(path, safetensors_bytes(to_checkpoint(canon, Flavour::kBlinkDL), Dtype::kF32,
                                        {{"format", "pt"}, {"rwkv_edge.layout", "blinkdl"}}));
    const ModelFile got = import_file(path);
    // exp/log round trips of the v4/v5 decays and bonuses are computed in double from f32
    // inputs; a few ulps of the f32 raw value is the only loss.
    check_matches(got, canon, 2e-6, Dtype::kF32);
    CHECK(got.source_format == "safetensors");
    CHECK(got.metadata.at("rwkv_edge.source_layout") == "blinkdl");
    CHECK(got.metadata.at("safetensors.format") == "pt");
    CHECK(got.tokenizer.kind == "bytes");
    // rwkv-math §9: raw checkpoints use 64e-5 wherever there is a GroupNorm.
    CHECK(got.hparams.gn_eps == (canon.hparams.version == RwkvVersion::kV4 ? 1e-5f : 64e-5f));
    CHECK(got.hparams.rescale_every == 0);
    // F32 sources keep their matrices f32.
    CHECK(got.find("blocks.0.att.key.weight")->type == DType::kF32);
    // The sniffer dispatches safetensors too.
    Result<ModelFile> sniffed = open_model_file(path);
    CHECK_MESSAGE(sniffed.ok(), sniffed.status().to_string());
  }
}

TEST_CASE("web-rwkv .st flavour: renames and pre-transposed low-rank maps") {
  TempDir dir;
  // F32 data with .st names and orientation: exact comparison. Metadata as web-rwkv writes it.
  for (const std::string name : {"4v0-660K-FP32", "5v2-730K-FP32", "6v0-1m-FP32", "7v0-834K-FP32"}) {
    INFO(name);
    const ModelFile canon = load_tiny(name);
    const std::string path = dir.file(name + ".st");
    write_bytes(path, safetensors_bytes(to_checkpoint(canon, Flavour::kWebRwkv), Dtype::kF32, {{"format", "pt"}}));
    const ModelFile got = import_file(path);
    check_matches(got, canon, 2e-6, Dtype::kF32);
  }
  // The real thing is all F16: web-rwkv layout detected from the metadata + dtypes (v7 has no
  // renamed tensors to tell). v7 needs no exponentials, so values are exactly f16-rounded.
  const ModelFile v7 = load_tiny("7v0-834K-FP32");
  const std::string path = dir.file("v7-f16.st");
  write_bytes(path, safetensors_bytes(to_checkpoint(v7, Flavour::kWebRwkv), Dtype::kF16, {{"format", "pt"}}));
  const ModelFile got = import_file(path);
  check_matches(got, v7, 0.0, Dtype::kF16);
  CHECK(got.metadata.at("rwkv_edge.source_layout") == "web-rwkv");
  CHECK(got.find("blocks.0.att.key.weight")->type == DType::kF16);  // matrices stay f16
  CHECK(got.find("emb.weight")->type == DType::kF16);
  CHECK(got.find("blocks.0.att.w1")->type == DType::kF32);  // transformed / small: f32
  CHECK(got.find("blocks.0.att.x_rwkvag")->type == DType::kF32);
  CHECK(got.find("blocks.0.ln1.weight")->type == DType::kF32);
}

TEST_CASE("BF16 checkpoints load as f32; square low-rank maps follow the declared layout") {
  TempDir dir;
  // Tiny v6 has C = 64 = decay rank, so time_decay_w1/_w2 are square and only the layout
  // (raw BlinkDL here) says whether to transpose. No exponentials in v6: exact after bf16.
  const ModelFile v6 = load_tiny("6v0-1m-FP32");
  const std::string path = dir.file("v6-bf16.safetensors");
  write_bytes(path, safetensors_bytes(to_checkpoint(v6, Flavour::kBlinkDL), Dtype::kBF16, {{"rwkv_edge.layout", "blinkdl"}}));
  const ModelFile got = import_file(path);
  check_matches(got, v6, 0.0, Dtype::kBF16);
  for (const TensorRef& t : got.tensors) CHECK(t.type == DType::kF32);
}

TEST_CASE("ChatRWKV 5.1 (gate + per-head decay) becomes v5.2 with per-channel values") {
  TempDir dir;
  ModelFile canon = load_tiny("5v2-730K-FP32");
  const int64_t H = canon.hparams.n_head, S = canon.hparams.head_size;
  std::vector<RawTensor> raw = to_checkpoint(canon, Flavour::kBlinkDL);
  // Replace decay/bonus by one value per head (the head's first channel).
  std::map<std::string, std::vector<float>> expected;
  for (RawTensor& r : raw) {
    const std::string sfx = suffix_of(r.name);
    if (sfx != "att.time_decay" && sfx != "att.time_faaaa") continue;
    std::vector<float> per_head((size_t)H);
    for (int64_t h = 0; h < H; ++h) per_head[(size_t)h] = r.values[(size_t)(h * S)];
    const TensorRef* c = canon.find(r.name);
    const std::vector<float> cv = values_f32(*c);
    std::vector<float> e((size_t)(H * S));
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t s = 0; s < S; ++s) e[(size_t)(h * S + s)] = cv[(size_t)(h * S)];
    }
    expected[r.name] = e;
    r.values = per_head;
    r.shape = {H};
  }
  const std::string path = dir.file("chatrwkv51.safetensors");
  write_bytes(path, safetensors_bytes(raw, Dtype::kF32, {}));
  const ModelFile got = import_file(path);
  CHECK(got.hparams.version == RwkvVersion::kV5_2);
  REQUIRE(expected.size() == 2 * (size_t)canon.hparams.n_layer);
  for (const auto& kv : expected) {
    INFO(kv.first);
    const TensorRef* t = got.find(kv.first);
    REQUIRE(t != nullptr);
    CHECK(t->ne[0] == 1);
    CHECK(t->ne[1] == S);
    CHECK(t->ne[2] == H);
    const std::vector<float> v = values_f32(*t);
    for (size_t i = 0; i < v.size(); ++i) CHECK(v[i] == doctest::Approx(kv.second[i]).epsilon(2e-6));
  }
}

TEST_CASE("time_state and non-weight entries are dropped with a warning; metadata overrides") {
  TempDir dir;
  const ModelFile canon = load_tiny("7v0-834K-FP32");
  std::vector<RawTensor> raw = to_checkpoint(canon, Flavour::kBlinkDL);
  const int64_t H = canon.hparams.n_head, S = canon.hparams.head_size;
  raw.push_back({"blocks.0.att.time_state", {H, S, S}, std::vector<float>((size_t)(H * S * S), 0.5f)});
  raw.push_back({"blocks.0.head_size", {}, {64.0f}});
  raw.push_back({"optimizer.step", {1}, {3.0f}});
  const std::string path = dir.file("extras.safetensors");
  write_bytes(path, safetensors_bytes(raw, Dtype::kF32,
                                      {{"rwkv_edge.group_norm_epsilon", "1e-5"}, {"rwkv_edge.rescale_every", "6"}}));
  const ModelFile got = import_file(path);
  check_matches(got, canon, 0.0, Dtype::kF32);
  const std::string& w = got.metadata.at("rwkv_edge.import_warning");
  CHECK(w.find("time_state") != std::string::npos);
  CHECK(w.find("blocks.0.head_size") != std::string::npos);
  CHECK(w.find("optimizer.step") != std::string::npos);
  CHECK(got.hparams.gn_eps == 1e-5f);
  CHECK(got.hparams.rescale_every == 6);
}

TEST_CASE("safetensors import feeds the GGUF writer") {
  TempDir dir;
  const ModelFile canon = load_tiny("6v0-1m-FP32");
  const std::string st = dir.file("v6.safetensors");
  write_bytes(st, safetensors_bytes(to_checkpoint(canon, Flavour::kBlinkDL), Dtype::kF32, {}));
  const ModelFile imported = import_file(st);
  GgufWriteOptions opt;
  opt.keep_types = true;
  REQUIRE(write_gguf(imported, dir.file("v6.gguf"), opt).ok());
  Result<ModelFile> g = read_gguf(dir.file("v6.gguf"));
  REQUIRE_MESSAGE(g.ok(), g.status().to_string());
  check_matches(g.value(), canon, 0.0, Dtype::kF32);
  CHECK(g->hparams.gn_eps == 64e-5f);
}

TEST_CASE("malformed safetensors files are refused naming file and tensor") {
  TempDir dir;
  const ModelFile canon = load_tiny("4v0-660K-FP32");
  const std::vector<RawTensor> raw = to_checkpoint(canon, Flavour::kBlinkDL);
  const std::vector<uint8_t> good = safetensors_bytes(raw, Dtype::kF32, {});
  const std::string path = dir.file("bad.safetensors");
  auto status_of = [&](const std::vector<uint8_t>& b) {
    write_bytes(path, b);
    Result<ModelFile> r = read_safetensors(path);
    return r.ok() ? Status::OK() : r.status();
  };
  REQUIRE(status_of(good).ok());

  SUBCASE("header length over 100 MB or past the end") {
    std::vector<uint8_t> b = good;
    uint64_t n = 200ull * 1000 * 1000;
    std::memcpy(b.data(), &n, 8);
    check_error(status_of(b), StatusCode::kCorruption, path, {"100 MB"});
    n = b.size();
    std::memcpy(b.data(), &n, 8);
    check_error(status_of(b), StatusCode::kCorruption, path, {"header length"});
    check_error(status_of(std::vector<uint8_t>(good.begin(), good.begin() + 5)), StatusCode::kCorruption, path, {"short"});
  }
  SUBCASE("bad JSON") {
    std::vector<uint8_t> b = good;
    *std::find(b.begin() + 8, b.end(), ':') = ';';
    check_error(status_of(b), StatusCode::kCorruption, path, {"bad JSON"});
  }
  SUBCASE("truncated data") {
    std::vector<uint8_t> b(good.begin(), good.end() - 100);
    const RawTensor& last = raw.back();
    check_error(status_of(b), StatusCode::kCorruption, path, {last.name, "data buffer"});
  }
  SUBCASE("offsets outside the buffer, overlapping, or disagreeing with dtype x shape") {
    const std::string total = std::to_string(good.size());  // safely past the buffer end
    auto with = [&](const std::string& json) {
      return safetensors_bytes(raw, Dtype::kF32, {}, {{"extra.tensor", json}}, 0);
    };
    check_error(status_of(with("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0," + total + "0]}")),
                StatusCode::kCorruption, path, {"extra.tensor", "outside"});
    check_error(status_of(with("{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}")), StatusCode::kCorruption,
                path, {"extra.tensor", "dtype F32 x shape"});
    check_error(status_of(with("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}")), StatusCode::kCorruption,
                path, {"extra.tensor", "overlaps"});
    check_error(status_of(with("{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}")), StatusCode::kCorruption,
                path, {"extra.tensor", "shape"});
    check_error(status_of(with("{\"dtype\":\"F32\",\"shape\":[2]}")), StatusCode::kCorruption, path,
                {"extra.tensor", "data_offsets"});
  }
  SUBCASE("unsupported dtypes name the tensor") {
    std::vector<RawTensor> r2 = raw;
    r2.erase(r2.begin());  // emb.weight, re-added as I32 below
    const RawTensor& emb = raw.front();
    REQUIRE(emb.name == "emb.weight");
    const size_t bytes = emb.values.size() * 4;
    const std::string end = std::to_string(bytes);
    const std::string shape = "[" + std::to_string(emb.shape[0]) + "," + std::to_string(emb.shape[1]) + "]";
    auto with_emb = [&](const std::string& dtype) {
      // The extra data sits after the other tensors; offsets relative to that.
      size_t used = 0;
      for (const RawTensor& t : r2) used += t.values.size() * 4;
      const std::string json = "{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
                               std::to_string(used) + "," + std::to_string(used + bytes) + "]}";
      return safetensors_bytes(r2, Dtype::kF32, {}, {{"emb.weight", json}}, bytes);
    };
    check_error(status_of(with_emb("I32")), StatusCode::kUnsupported, path, {"emb.weight", "I32"});
    check_error(status_of(with_emb("F4")), StatusCode::kUnsupported, path, {"emb.weight", "F4"});
    REQUIRE(status_of(with_emb("F32")).ok());
  }
  SUBCASE("missing and misshapen tensors") {
    std::vector<RawTensor> r2;
    for (const RawTensor& t : raw) {
      if (t.name != "blocks.2.att.key.weight") r2.push_back(t);
    }
    check_error(status_of(safetensors_bytes(r2, Dtype::kF32, {})), StatusCode::kCorruption, path,
                {"blocks.2.att.key.weight", "missing"});
    r2 = raw;
    for (RawTensor& t : r2) {
      if (t.name == "blocks.1.ffn.key.weight") {
        t.shape[0] /= 2;
        t.values.resize(t.values.size() / 2);
      }
    }
    check_error(status_of(safetensors_bytes(r2, Dtype::kF32, {})), StatusCode::kCorruption, path,
                {"blocks.1.ffn.key.weight", "shape"});
    r2 = raw;
    r2.erase(r2.begin());
    check_error(status_of(safetensors_bytes(r2, Dtype::kF32, {})), StatusCode::kCorruption, path, {"emb.weight"});
  }
  SUBCASE("bad metadata overrides") {
    check_error(status_of(safetensors_bytes(raw, Dtype::kF32, {{"rwkv_edge.group_norm_epsilon", "tiny"}})),
                StatusCode::kCorruption, path, {"rwkv_edge.group_norm_epsilon"});
  }
}

TEST_CASE("the JSON parser handles escapes, big integers and rejects junk") {
  JsonValue v;
  std::string err;
  const std::string ok = "{\"a\\u00e9\\n\": [18446744073709551615, -1.5e3, true, null], \"s\": \"\\ud83d\\ude00\"}  ";
  REQUIRE_MESSAGE(parse_json(ok.data(), ok.size(), &v, &err), err);
  const JsonValue* a = v.get("a\xc3\xa9\n");
  REQUIRE(a != nullptr);
  REQUIRE(a->array.size() == 4);
  CHECK(a->array[0].is_uint);
  CHECK(a->array[0].uint == UINT64_MAX);
  CHECK_FALSE(a->array[1].is_uint);
  CHECK(a->array[1].number == -1500.0);
  CHECK(a->array[2].boolean);
  CHECK(a->array[3].kind == JsonValue::Kind::kNull);
  CHECK(v.get("s")->str == "\xf0\x9f\x98\x80");
  for (const std::string bad : {"{", "{\"a\":}", "[1,]", "{\"a\":1} x", "\"\\x\"", "01", "\"\\ud800\"",
                                 "18446744073709551616x", "{\"a\" 1}", "\"tab\there\""}) {
    INFO(bad);
    CHECK_FALSE(parse_json(bad.data(), bad.size(), &v, &err));
    CHECK(err.find("bad JSON at byte") == 0);
  }
  const std::string deep(100, '[');
  CHECK_FALSE(parse_json(deep.data(), deep.size(), &v, &err));
  // Integers past uint64 are still numbers, just not exact.
  const std::string big = "18446744073709551616";
  REQUIRE(parse_json(big.data(), big.size(), &v, &err));
  CHECK_FALSE(v.is_uint);
}

}  // TEST_SUITE
