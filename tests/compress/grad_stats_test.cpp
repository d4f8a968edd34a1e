// Output-gradient statistics (engine/compress/grad_stats.cpp) and `--lowrank fisher` on a tiny
// golden model: the file format of scripts/train/grad_stats.py, its validation, and the checks
// that tie a statistics file to the model it was computed on.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "engine/compress/calib.h"
#include "engine/compress/grad_stats.h"
#include "engine/compress/lowrank.h"
#include "engine/model.h"
#include "tests/common/test_util.h"

namespace rwkv {
namespace {

struct StatEntry {
  std::string name;
  uint32_t n = 0;
  double weight_sqsum = 0.0;
  std::vector<float> g;
};

// Writes the format documented in scripts/train/grad_stats.py.
void write_stats(const std::string& path, uint64_t tokens, const std::vector<StatEntry>& entries,
                 const std::string& trailing = "") {
  std::ofstream f(path, std::ios::binary);
  f.write("RWKVEGS1", 8);
  const uint32_t count = (uint32_t)entries.size();
  f.write(reinterpret_cast<const char*>(&tokens), 8);
  f.write(reinterpret_cast<const char*>(&count), 4);
  for (const StatEntry& e : entries) {
    const uint32_t len = (uint32_t)e.name.size();
    f.write(reinterpret_cast<const char*>(&len), 4);
    f.write(e.name.data(), len);
    f.write(reinterpret_cast<const char*>(&e.n), 4);
    f.write(reinterpret_cast<const char*>(&e.weight_sqsum), 8);
    f.write(reinterpret_cast<const char*>(e.g.data()), (std::streamsize)(e.g.size() * sizeof(float)));
  }
  f << trailing;
}

std::vector<float> identity(uint32_t n) {
  std::vector<float> g((size_t)n * n, 0.0f);
  for (uint32_t i = 0; i < n; ++i) g[(size_t)i * n + i] = 1.0f;
  return g;
}

}  // namespace

TEST_CASE("gradient statistics: the file round trip and its errors") {
  test::TempDir dir;
  const std::string path = dir.file("s.gradstats");
  write_stats(path, 123, {{"blocks.0.att.key", 2, 7.5, {1.0f, 0.5f, 0.5f, 2.0f}}, {"head", 1, 1.0, {3.0f}}});
  Result<compress::GradStats> gs = compress::read_grad_stats(path);
  REQUIRE_MESSAGE(gs.ok(), gs.status().to_string());
  CHECK(gs->tokens == 123);
  REQUIRE(gs->find("blocks.0.att.key") != nullptr);
  CHECK(gs->find("blocks.0.att.key")->n == 2);
  CHECK(gs->find("blocks.0.att.key")->weight_sqsum == 7.5);
  CHECK(gs->find("blocks.0.att.key")->g == std::vector<double>{1.0, 0.5, 0.5, 2.0});
  CHECK(gs->find("blocks.1.att.key") == nullptr);

  auto error_of = [&](const std::string& p) {
    Result<compress::GradStats> r = compress::read_grad_stats(p);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().message().find(p) != std::string::npos);  // names the file
    return r.status().message();
  };
  CHECK(error_of(dir.file("missing")).find("cannot open") != std::string::npos);
  {
    std::ofstream(dir.file("bad-magic"), std::ios::binary) << "GGUF and more, not statistics";
  }
  CHECK(error_of(dir.file("bad-magic")).find("magic") != std::string::npos);
  write_stats(dir.file("trailing"), 1, {{"head", 1, 1.0, {3.0f}}}, "x");
  CHECK(error_of(dir.file("trailing")).find("trailing") != std::string::npos);
  write_stats(dir.file("nan"), 1, {{"head", 1, 1.0, {NAN}}});
  CHECK(error_of(dir.file("nan")).find("non-finite") != std::string::npos);
  write_stats(dir.file("twice"), 1, {{"head", 1, 1.0, {3.0f}}, {"head", 1, 1.0, {3.0f}}});
  CHECK(error_of(dir.file("twice")).find("twice") != std::string::npos);
  // Truncated inside the matrix: the entry says 2 x 2 but holds one value.
  write_stats(dir.file("short"), 1, {{"head", 2, 1.0, {3.0f}}});
  CHECK(error_of(dir.file("short")).find("truncated") != std::string::npos);
}

TEST_CASE("--lowrank fisher on a tiny model: identity statistics give the aware factors; other weights are refused") {
  Result<ModelFile> opened = open_model_file(test::tiny_model("tiny-rwkv-5v2-730K-FP32.bin"));
  REQUIRE_MESSAGE(opened.ok(), opened.status().to_string());
  const ModelFile& base = opened.value();
  Result<std::shared_ptr<Model>> dense = Model::from_file(base, {});
  REQUIRE(dense.ok());
  compress::LowRankOptions opt;
  opt.rank_factor = 4.0;
  const std::vector<std::string> names = compress::lowrank_matrices(base, opt);
  compress::GramProbe calib(names);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 200; ++i) tokens.push_back(32 + (i * 37) % 90);
  REQUIRE(compress::run_calibration(*dense.value(), tokens, &calib).ok());

  std::vector<StatEntry> entries;
  for (const std::string& n : names) {
    const TensorRef* t = base.find(n + ".weight");
    REQUIRE(t != nullptr);
    const std::vector<float> w = compress::matrix_f32(*t);
    double sq = 0.0;
    for (float v : w) sq += (double)v * v;
    entries.push_back({n, (uint32_t)t->ne[1], sq, identity((uint32_t)t->ne[1])});
  }
  test::TempDir dir;
  write_stats(dir.file("ok"), 200, entries);
  Result<compress::GradStats> gs = compress::read_grad_stats(dir.file("ok"));
  REQUIRE(gs.ok());

  std::vector<compress::LowRankReport> rep_aware, rep_fisher;
  ModelFile a = base, f = base;
  opt.method = compress::LowRankMethod::kAware;
  REQUIRE(compress::apply_lowrank(a, opt, &calib, nullptr, &rep_aware, nullptr).ok());
  opt.method = compress::LowRankMethod::kFisher;
  opt.grad_stats = &gs.value();
  REQUIRE(compress::apply_lowrank(f, opt, &calib, nullptr, &rep_fisher, nullptr).ok());
  REQUIRE(rep_aware.size() == rep_fisher.size());
  for (size_t i = 0; i < rep_aware.size(); ++i) {
    CAPTURE(rep_aware[i].name);
    CHECK(rep_fisher[i].rank == rep_aware[i].rank);
    CHECK(rep_fisher[i].calib_error == doctest::Approx(rep_aware[i].calib_error).epsilon(1e-3));
  }

  // Statistics of other weights, a missing entry, or none at all: refused, naming the matrix.
  auto refused = [&](const compress::GradStats* stats) {
    ModelFile m = base;
    opt.grad_stats = stats;
    Status st = compress::apply_lowrank(m, opt, &calib, nullptr, nullptr, nullptr);
    REQUIRE_FALSE(st.ok());
    return st.message();
  };
  std::vector<StatEntry> other = entries;
  other[0].weight_sqsum *= 1.01;
  write_stats(dir.file("other"), 200, other);
  Result<compress::GradStats> gs_other = compress::read_grad_stats(dir.file("other"));
  REQUIRE(gs_other.ok());
  const std::string m1 = refused(&gs_other.value());
  CHECK(m1.find(names[0]) != std::string::npos);
  CHECK(m1.find("different weights") != std::string::npos);
  std::vector<StatEntry> fewer(entries.begin() + 1, entries.end());
  write_stats(dir.file("fewer"), 200, fewer);
  Result<compress::GradStats> gs_fewer = compress::read_grad_stats(dir.file("fewer"));
  REQUIRE(gs_fewer.ok());
  CHECK(refused(&gs_fewer.value()).find("no entry") != std::string::npos);
  CHECK(refused(nullptr).find("--grad-stats") != std::string::npos);
}

}  // namespace rwkv
