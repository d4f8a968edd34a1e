// Low-rank projections (engine/compress/lowrank.cpp), the factored engine path, the GGUF round
// trip and INT8 storage, on the tiny golden models and on synthetic matrices.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tests/common/model_logits.h"
#include "engine/compress/calib.h"
#include "engine/compress/int8.h"
#include "engine/compress/lowrank.h"
#include "engine/model.h"
#include "tests/common/test_util.h"

namespace rwkv {
namespace {

ModelFile open_tiny(const std::string& file) {
  Result<ModelFile> mf = open_model_file(test::tiny_model(file));
  REQUIRE_MESSAGE(mf.ok(), mf.status().to_string());
  return mf.value();
}

std::shared_ptr<Model> build(const ModelFile& mf) {
  Result<std::shared_ptr<Model>> m = Model::from_file(mf, {});
  REQUIRE_MESSAGE(m.ok(), m.status().to_string());
  return m.value();
}

// Bytes of a fixed text (the calibration and test inputs of these tiny byte-vocabulary models).
std::vector<int32_t> text_tokens(size_t n, uint32_t seed) {
  const std::string text =
      "First Citizen: Before we proceed any further, hear me speak. All: Speak, speak. First Citizen: You are all "
      "resolved rather to die than to famish? All: Resolved. resolved. First Citizen: First, you know Caius Marcius "
      "is chief enemy to the people.";
  std::vector<int32_t> t;
  for (size_t i = 0; i < n; ++i) t.push_back((uint8_t)text[(i * 7 + seed) % text.size()]);
  return t;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  float m = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

// Every 2-D projection any version has, so the exactness test covers all of them.
const std::vector<std::string> kAllProjections = {
    "att.receptance", "att.key", "att.value", "att.gate", "att.output", "ffn.key", "ffn.value", "ffn.receptance",
    "att.time_maa_w1", "att.time_decay_w1", "att.time_decay_w2", "att.w1", "att.w2", "att.a1", "att.a2",
    "att.v1", "att.v2", "att.g1", "att.g2", "head"};

struct NameProbe : rwkv::Probe {
  std::vector<std::string> names;
  void on_linear(const std::string& name, const float*, int64_t, int64_t, const float*, int64_t) override {
    names.push_back(name);
  }
};

// A matrix of standard normal entries, row-major [out x in].
std::vector<float> gaussian_matrix(int64_t out, int64_t in, std::mt19937& rng) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> w((size_t)(out * in));
  for (float& v : w) v = g(rng);
  return w;
}

// XᵀX of n inputs whose coordinate i is normal with standard deviation scale·decay^i.
std::vector<double> decaying_gram(int64_t in, int64_t n, double scale, double decay, std::mt19937& rng) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<double> gram((size_t)(in * in), 0.0);
  std::vector<float> x((size_t)in);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t i = 0; i < in; ++i) x[i] = g(rng) * (float)(scale * std::pow(decay, (double)i));
    for (int64_t i = 0; i < in; ++i)
      for (int64_t j = 0; j < in; ++j) gram[i * in + j] += (double)x[i] * x[j];
  }
  return gram;
}

}  // namespace

TEST_CASE("the probe sees every matrix product with its base name") {
  ModelFile mf = open_tiny("tiny-rwkv-5v2-730K-FP32.bin");
  std::shared_ptr<Model> m = build(mf);
  NameProbe p;
  m->set_probe(&p);
  std::vector<int32_t> t = text_tokens(4, 0);
  std::vector<float> logits((size_t)m->hparams().n_vocab);
  State st = m->new_state();
  REQUIRE(m->eval(st, t.data(), t.size(), logits.data()).ok());
  m->set_probe(nullptr);
  // 5.2: att r,k,v,g,o + ffn k,v,r per layer, then the head.
  CHECK(p.names.size() == (size_t)(8 * m->hparams().n_layer + 1));
  CHECK(p.names.front() == "blocks.0.att.key");
  CHECK(p.names.back() == "head");
}

TEST_CASE("full-rank factorisation of every projection reproduces the dense logits within 1e-4") {
  for (const char* file : {"tiny-rwkv-4v0-660K-FP32.bin", "tiny-rwkv-5v1-730K-FP32.bin", "tiny-rwkv-5v2-730K-FP32.bin",
                           "tiny-rwkv-6v0-1m-FP32.bin", "tiny-rwkv-7v0-834K-FP32.bin"}) {
    for (compress::LowRankMethod method :
         {compress::LowRankMethod::kSvd, compress::LowRankMethod::kAware, compress::LowRankMethod::kAsvd,
          compress::LowRankMethod::kFisher}) {
      const std::string where = std::string(file) + " " + compress::lowrank_method_name(method);
      CAPTURE(where);
      ModelFile mf = open_tiny(file);
      std::shared_ptr<Model> dense = build(mf);
      const std::vector<int32_t> probe_tokens = text_tokens(24, 3);
      const std::vector<float> want = test::all_logits(*dense, probe_tokens);

      compress::LowRankOptions opt;
      opt.method = method;
      opt.rank_factor = 1.0;  // full rank
      opt.targets = kAllProjections;
      const std::vector<std::string> names = compress::lowrank_matrices(mf, opt);
      REQUIRE(names.size() > 8);
      compress::GramProbe calib(names);
      REQUIRE(compress::run_calibration(*dense, text_tokens(200, 0), &calib).ok());
      // fisher: a random positive definite G_out per matrix (any weighting is exact at full rank).
      compress::GradStats grads;
      if (method == compress::LowRankMethod::kFisher) {
        std::mt19937 rng(5);
        std::normal_distribution<double> nd(0.0, 1.0);
        for (const std::string& n : names) {
          const TensorRef* t = mf.find(n + ".weight");
          if (t == nullptr) t = mf.find(n);
          REQUIRE(t != nullptr);
          const int64_t out = t->ne[1];
          std::vector<double> f((size_t)(out * out));
          for (double& v : f) v = nd(rng);
          compress::GradStats::Entry e;
          e.n = out;
          e.g.assign((size_t)(out * out), 0.0);
          for (int64_t i = 0; i < out; ++i)
            for (int64_t j = 0; j < out; ++j) {
              for (int64_t k = 0; k < out; ++k) e.g[i * out + j] += f[i * out + k] * f[j * out + k] / (double)out;
              if (i == j) e.g[i * out + j] += 0.1;
            }
          for (float v : compress::matrix_f32(*t)) e.weight_sqsum += (double)v * v;
          grads.entries[n] = std::move(e);
        }
        opt.grad_stats = &grads;
      }
      std::vector<compress::LowRankReport> rep;
      ModelFile lr = mf;
      REQUIRE(compress::apply_lowrank(lr, opt, &calib, nullptr, &rep, nullptr).ok());
      CHECK(rep.size() == names.size());
      CHECK(lr.find("blocks.0.att.key.weight") == nullptr);
      CHECK(lr.find("blocks.0.att.key.lr_a") != nullptr);
      CHECK(lr.find("head.lr_b") != nullptr);
      REQUIRE_MESSAGE(finalize_model_file(lr, true).ok(), finalize_model_file(lr, true).to_string());
      std::shared_ptr<Model> factored = build(lr);
      // The factors are f32 roundings of an exact double factorisation; the 1e-4 bound is
      // issue 6's exactness criterion.
      CHECK(max_abs_diff(want, test::all_logits(*factored, probe_tokens)) < 1e-4f);
      for (const compress::LowRankReport& r : rep) CHECK(r.calib_error < 1e-4);
    }
  }
}

TEST_CASE("activation-aware factorisation beats plain SVD on anisotropic inputs") {
  const int64_t out = 48, in = 64, n = 2000, rank = 8;
  std::mt19937 rng(1234);
  const std::vector<float> w = gaussian_matrix(out, in, rng);
  // Inputs with a few dominant directions (scales 10 .. 0.01 per coordinate): the output error
  // that matters is concentrated there, which plain SVD of W ignores.
  const std::vector<double> calib = decaying_gram(in, n, 10.0, 0.85, rng);
  const std::vector<double> heldout = decaying_gram(in, n, 10.0, 0.85, rng);
  Result<compress::Factors> svd =
      compress::factorize(w.data(), out, in, compress::LowRankMethod::kSvd, nullptr, rank, 0.0, 1, 1e-3);
  Result<compress::Factors> aware =
      compress::factorize(w.data(), out, in, compress::LowRankMethod::kAware, calib.data(), rank, 0.0, 1, 1e-3);
  REQUIRE(svd.ok());
  REQUIRE(aware.ok());
  CHECK(svd->rank == rank);
  CHECK(aware->rank == rank);
  const double e_svd = compress::relative_output_error(w.data(), svd.value(), out, in, heldout.data());
  const double e_aware = compress::relative_output_error(w.data(), aware.value(), out, in, heldout.data());
  MESSAGE("held-out relative output error: svd " << e_svd << ", aware " << e_aware);
  CHECK(e_aware < 0.5 * e_svd);
  // ASVD's diagonal scaling sees the per-coordinate scales (not their correlations): it lands
  // between plain SVD and full whitening here; alpha 0 is plain SVD.
  Result<compress::Factors> asvd =
      compress::factorize(w.data(), out, in, compress::LowRankMethod::kAsvd, calib.data(), rank, 0.0, 1, 1e-3);
  REQUIRE(asvd.ok());
  const double e_asvd = compress::relative_output_error(w.data(), asvd.value(), out, in, heldout.data());
  MESSAGE("held-out relative output error: asvd (alpha 0.5) " << e_asvd);
  CHECK(e_asvd < e_svd);
  CHECK(e_asvd >= e_aware);
  Result<compress::Factors> asvd0 =
      compress::factorize(w.data(), out, in, compress::LowRankMethod::kAsvd, calib.data(), rank, 0.0, 1, 1e-3, 0.0);
  REQUIRE(asvd0.ok());
  CHECK(compress::relative_output_error(w.data(), asvd0.value(), out, in, heldout.data()) ==
        doctest::Approx(e_svd).epsilon(1e-6));
  // Plain SVD is still the best in the unweighted Frobenius norm.
  CHECK(compress::relative_output_error(w.data(), svd.value(), out, in, nullptr) <=
        compress::relative_output_error(w.data(), aware.value(), out, in, nullptr));
}

TEST_CASE("fisher factorisation: output weights steer the error away from the outputs the loss sees") {
  const int64_t out = 32, in = 40, n = 1500, rank = 8;
  std::mt19937 rng(77);
  const std::vector<float> w = gaussian_matrix(out, in, rng);
  const std::vector<double> gin = decaying_gram(in, n, 1.0, 0.9, rng);
  // The loss only cares about the first 8 outputs (gradient covariance diag(1,..,1, 1e-4, ..)).
  std::vector<double> gout((size_t)(out * out), 0.0);
  for (int64_t i = 0; i < out; ++i) gout[i * out + i] = i < 8 ? 1.0 : 1e-4;
  Result<compress::Factors> aware =
      compress::factorize(w.data(), out, in, compress::LowRankMethod::kAware, gin.data(), rank, 0.0, 1, 1e-6);
  Result<compress::Factors> fisher = compress::factorize(w.data(), out, in, compress::LowRankMethod::kFisher,
                                                         gin.data(), rank, 0.0, 1, 1e-6, 0.5, gout.data());
  REQUIRE(aware.ok());
  REQUIRE(fisher.ok());
  // The K-FAC loss estimate tr(G_out ΔW G_in ΔWᵀ) of each.
  auto kfac = [&](const compress::Factors& f) {
    double sum = 0.0;
    std::vector<double> d((size_t)(out * in));
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) {
        double p = 0.0;
        for (int64_t k = 0; k < f.rank; ++k) p += (double)f.b[o * f.rank + k] * f.a[k * in + i];
        d[o * in + i] = w[o * in + i] - p;
      }
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i)
        for (int64_t j = 0; j < in; ++j) sum += gout[o * out + o] * d[o * in + i] * gin[i * in + j] * d[o * in + j];
    return sum;
  };
  MESSAGE("K-FAC loss estimate: aware " << kfac(aware.value()) << ", fisher " << kfac(fisher.value()));
  CHECK(kfac(fisher.value()) < 0.1 * kfac(aware.value()));
  // With G_out = I it is the aware factorisation (the same product).
  std::vector<double> eye((size_t)(out * out), 0.0);
  for (int64_t i = 0; i < out; ++i) eye[i * out + i] = 1.0;
  Result<compress::Factors> same = compress::factorize(w.data(), out, in, compress::LowRankMethod::kFisher,
                                                       gin.data(), rank, 0.0, 1, 1e-6, 0.5, eye.data());
  REQUIRE(same.ok());
  CHECK(compress::relative_output_error(w.data(), same.value(), out, in, gin.data()) ==
        doctest::Approx(compress::relative_output_error(w.data(), aware.value(), out, in, gin.data())).epsilon(1e-4));
  // Without output statistics it refuses, naming what is missing.
  Result<compress::Factors> none =
      compress::factorize(w.data(), out, in, compress::LowRankMethod::kFisher, gin.data(), rank, 0.0, 1, 1e-6);
  REQUIRE_FALSE(none.ok());
  CHECK(none.status().message().find("output-gradient") != std::string::npos);
}

TEST_CASE("ranks: factor, multiple, overrides and energy") {
  compress::LowRankOptions opt;
  CHECK(compress::planned_rank(opt, "blocks.0.att.key", 256, 256) == 32);
  CHECK(compress::planned_rank(opt, "blocks.0.att.key", 100, 100) == 16);  // ceil(12.5) -> 16
  opt.rank_factor = 1.0;
  CHECK(compress::planned_rank(opt, "blocks.0.att.key", 100, 100) == 100);  // capped at the width
  opt.overrides.push_back({"blocks.*.att.key", 24});
  opt.overrides.push_back({"blocks.1.*", 0});
  CHECK(compress::planned_rank(opt, "blocks.3.att.key", 256, 256) == 24);
  CHECK(compress::planned_rank(opt, "blocks.1.att.value", 256, 256) == 0);
  opt.overrides.clear();
  opt.energy = 0.9;
  CHECK(compress::planned_rank(opt, "blocks.0.att.key", 256, 256) == -1);
  // A rank-2 matrix: 2 singular values hold all the energy.
  std::vector<float> w(16 * 12);
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 12; ++c) w[r * 12 + c] = (float)((r + 1) * (c % 3) + (r % 2) * c);
  Result<compress::Factors> f = compress::factorize(w.data(), 16, 12, compress::LowRankMethod::kSvd, nullptr, 0,
                                                    0.999999, 1, 0.0);
  REQUIRE(f.ok());
  CHECK(f->rank == 2);
  CHECK(compress::relative_output_error(w.data(), f.value(), 16, 12, nullptr) < 1e-5);
}

TEST_CASE("rank allocation spends the uniform ranks' bytes where the spectrum has the most energy left") {
  // Three 64x64 matrices, budget of rank 16 each: a flat spectrum (every step worth the same), a
  // steep one (rank 4 holds all its energy) and a middle one.
  std::vector<double> flat(64, 1.0), steep(64, 0.0), middle(64);
  for (int i = 0; i < 4; ++i) steep[(size_t)i] = 10.0 - i;
  for (int i = 0; i < 64; ++i) middle[(size_t)i] = std::pow(0.9, i);
  const std::vector<compress::Spectrum> sp = {{64, 64, flat}, {64, 64, steep}, {64, 64, middle}};
  const int64_t budget = 3 * 16 * (64 + 64);
  Result<std::vector<int64_t>> r = compress::allocate_ranks(sp, budget, 4);
  REQUIRE(r.ok());
  const std::vector<int64_t>& rank = r.value();
  int64_t used = 0;
  for (size_t i = 0; i < rank.size(); ++i) {
    CHECK(rank[i] % 4 == 0);
    CHECK(rank[i] >= 4);
    used += rank[i] * 128;
  }
  CHECK(used == budget);  // equal step costs: the whole budget is spent
  CHECK(rank[1] == 4);    // nothing left to gain past its rank 4
  CHECK(rank[0] > 16);    // the flat spectrum gains the same at every step
  // The last step taken is worth at least every step left out (greedy optimality).
  auto gain = [&](size_t i, int64_t from) {
    double e = 0.0, tot = 0.0;
    for (double v : sp[i].s) tot += v * v;
    for (int64_t j = from; j < std::min<int64_t>(from + 4, 64); ++j) e += sp[i].s[(size_t)j] * sp[i].s[(size_t)j];
    return e / tot;
  };
  double worst_taken = INFINITY, best_left = 0.0;
  for (size_t i = 0; i < 3; ++i) {
    if (rank[i] > 4) worst_taken = std::min(worst_taken, gain(i, rank[i] - 4));
    if (rank[i] < 64) best_left = std::max(best_left, gain(i, rank[i]));
  }
  CHECK(worst_taken >= best_left);
  // A budget below the minimum ranks is an error that says so.
  Result<std::vector<int64_t>> tight = compress::allocate_ranks(sp, 3 * 4 * 128 - 1, 4);
  REQUIRE_FALSE(tight.ok());
  CHECK(tight.status().message().find("budget") != std::string::npos);
}

TEST_CASE("spectrum allocation keeps the uniform ranks' bytes on a tiny model, for svd and aware") {
  ModelFile base = open_tiny("tiny-rwkv-5v2-730K-FP32.bin");
  std::shared_ptr<Model> dense = build(base);
  compress::LowRankOptions opt;
  opt.rank_factor = 4.0;
  opt.rank_multiple = 2;
  compress::GramProbe calib(compress::lowrank_matrices(base, opt));
  REQUIRE(compress::run_calibration(*dense, text_tokens(256, 3), &calib, nullptr).ok());
  for (compress::LowRankMethod m : {compress::LowRankMethod::kSvd, compress::LowRankMethod::kAware}) {
    CAPTURE(std::string(compress::lowrank_method_name(m)));
    int64_t bytes[2] = {0, 0};
    std::vector<int64_t> ranks[2];
    for (int alloc = 0; alloc < 2; ++alloc) {
      ModelFile mf = base;
      opt.method = m;
      opt.allocate = alloc == 1;
      std::vector<compress::LowRankReport> rep;
      REQUIRE(compress::apply_lowrank(mf, opt, &calib, nullptr, &rep, nullptr).ok());
      REQUIRE_FALSE(rep.empty());
      for (const compress::LowRankReport& r : rep) {
        bytes[alloc] += (int64_t)r.bytes_after;
        ranks[alloc].push_back(r.rank);
      }
    }
    CHECK(bytes[1] <= bytes[0]);
    CHECK(bytes[1] > bytes[0] - (int64_t)(2 * 2 * base.hparams.n_embd * 4));  // within one step of rank
    CHECK(ranks[1] != ranks[0]);  // the spectra differ, so do the ranks
  }
  // Overridden matrices keep their ranks and stay out of the budget.
  {
    ModelFile mf = base;
    opt.method = compress::LowRankMethod::kSvd;
    opt.allocate = true;
    opt.overrides = {{"blocks.0.*", 0}, {"blocks.1.att.key", 4}};
    std::vector<compress::LowRankReport> rep;
    REQUIRE(compress::apply_lowrank(mf, opt, &calib, nullptr, &rep, nullptr).ok());
    for (const compress::LowRankReport& r : rep) {
      CHECK(r.name.rfind("blocks.0.", 0) != 0);
      if (r.name == "blocks.1.att.key") CHECK(r.rank == 4);
    }
    CHECK(mf.find("blocks.0.att.key.weight") != nullptr);
    opt.overrides.clear();
  }
  ModelFile mf = base;
  opt.energy = 0.9;
  Status st = compress::apply_lowrank(mf, opt, &calib, nullptr, nullptr, nullptr);
  CHECK_FALSE(st.ok());
  CHECK(st.message().find("--energy") != std::string::npos);
}

TEST_CASE("a compressed model survives the GGUF round trip: factors, INT8 types and metadata") {
  test::TempDir dir;
  ModelFile mf = open_tiny("tiny-rwkv-5v2-730K-FP32.bin");
  compress::LowRankOptions opt;
  opt.method = compress::LowRankMethod::kSvd;
  opt.rank_factor = 2.0;
  REQUIRE(compress::apply_lowrank(mf, opt, nullptr, nullptr, nullptr, nullptr).ok());
  compress::Int8Report rep;
  REQUIRE(compress::apply_int8(mf, compress::Int8Mode::kRow, &rep).ok());
  CHECK(rep.converted > 10);
  CHECK(mf.find("blocks.0.att.key.lr_a")->type == DType::kI8R);
  CHECK(mf.find("head.weight")->type == DType::kI8R);
  CHECK(mf.find("emb.weight")->type == DType::kI8R);
  mf.metadata["rwkv_edge.compress.lowrank"] = "svd";
  GgufWriteOptions wo;
  wo.keep_types = true;
  const std::string path = dir.file("c.gguf");
  REQUIRE(write_gguf(mf, path, wo).ok());
  Result<ModelFile> back = open_model_file(path);
  REQUIRE_MESSAGE(back.ok(), back.status().to_string());
  CHECK(back->metadata["rwkv_edge.compress.lowrank"] == "svd");
  for (const char* name : {"blocks.0.att.key.lr_a", "blocks.0.att.key.lr_b", "blocks.1.ffn.receptance.lr_b"}) {
    const TensorRef* a = mf.find(name);
    const TensorRef* b = back->find(name);
    REQUIRE(b != nullptr);
    CHECK(a->type == b->type);
    CHECK(a->ne[0] == b->ne[0]);
    CHECK(a->ne[1] == b->ne[1]);
    CHECK(std::memcmp(a->data, b->data, a->nbytes) == 0);
  }
  CHECK(back->find("blocks.0.att.key.weight") == nullptr);
  std::shared_ptr<Model> m1 = build(mf);
  std::shared_ptr<Model> m2 = build(back.value());
  const std::vector<int32_t> t = text_tokens(16, 1);
  CHECK(max_abs_diff(test::all_logits(*m1, t), test::all_logits(*m2, t)) == 0.0f);
}

TEST_CASE("INT8 row and group keep the tiny model's logits close") {
  ModelFile mf = open_tiny("tiny-rwkv-5v2-730K-FP32.bin");
  std::shared_ptr<Model> dense = build(mf);
  const std::vector<int32_t> t = text_tokens(16, 2);
  const std::vector<float> want = test::all_logits(*dense, t);
  for (compress::Int8Mode mode : {compress::Int8Mode::kRow, compress::Int8Mode::kGroup}) {
    ModelFile q = mf;
    REQUIRE(compress::apply_int8(q, mode, nullptr).ok());
    const float d = max_abs_diff(want, test::all_logits(*build(q), t));
    MESSAGE(std::string(compress::int8_mode_name(mode)) << ": max |logit diff| " << d);
    // Symmetric int8 keeps ~2-3 significant digits per weight; the tiny model's logits are O(10).
    CHECK(d < 0.5f);
  }
}

TEST_CASE("factor shapes are checked with messages naming the tensor") {
  ModelFile mf = open_tiny("tiny-rwkv-5v2-730K-FP32.bin");
  compress::LowRankOptions opt;
  opt.method = compress::LowRankMethod::kSvd;
  REQUIRE(compress::apply_lowrank(mf, opt, nullptr, nullptr, nullptr, nullptr).ok());
  // Drop lr_b of one matrix.
  ModelFile missing = mf;
  compress::replace_tensor(missing, "blocks.0.att.key.lr_b", {});
  Status st = finalize_model_file(missing, true);
  CHECK(!st.ok());
  CHECK(st.message().find("blocks.0.att.key.lr_b") != std::string::npos);
  // Give lr_b a wrong rank.
  ModelFile bad = mf;
  TensorRef b = *bad.find("blocks.0.att.key.lr_b");
  b.ne[0] -= 8;
  b.nbytes = (size_t)(b.ne[0] * b.ne[1]) * 4;
  compress::replace_tensor(bad, b.name, {b});
  st = finalize_model_file(bad, true);
  CHECK(!st.ok());
  CHECK(st.message().find("blocks.0.att.key.lr_b") != std::string::npos);
}

}  // namespace rwkv
