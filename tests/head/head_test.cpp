// Hierarchical head (issue 6): k-means and distillation (engine/compress/head_cluster.h) and
// the run-time ClusteredHead (engine/models/head.h), on synthetic data and a tiny real model.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tests/common/model_logits.h"
#include "engine/compress/calib.h"
#include "engine/compress/head_cluster.h"
#include "engine/eval.h"
#include "engine/model.h"
#include "engine/models/head.h"
#include "tests/common/test_util.h"

namespace rwkv {
namespace {

using compress::HeadClustering;

std::vector<float> gaussian(int64_t n, uint64_t seed, float sd = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, sd);
  std::vector<float> v((size_t)n);
  for (float& x : v) x = nd(rng);
  return v;
}

TensorRef f32_tensor(const std::string& name, const std::vector<float>& v, int64_t cols, int64_t rows,
                     BufferStorage& st) {
  TensorRef t;
  t.name = name;
  t.type = DType::kF32;
  t.n_dims = rows > 0 ? 2 : 1;
  t.ne[0] = cols;
  t.ne[1] = rows > 0 ? rows : 1;
  t.nbytes = v.size() * sizeof(float);
  uint8_t* d = st.add(t.nbytes);
  std::memcpy(d, v.data(), t.nbytes);
  t.data = d;
  return t;
}

// An in-memory file with only a clustered head: dense rows w [V x C] in ORIGINAL order,
// clustered by `cl`, with cluster head cw [K x C] and bias cb [K].
ModelFile head_file(const std::vector<float>& w, int64_t V, int64_t C, const HeadClustering& cl,
                    const std::vector<float>& cw, const std::vector<float>& cb) {
  ModelFile mf;
  mf.path = "synthetic";
  mf.hparams.n_vocab = V;
  mf.hparams.n_embd = C;
  auto st = std::make_shared<BufferStorage>();
  std::vector<float> reordered((size_t)(V * C));
  for (int64_t r = 0; r < V; ++r) {
    std::copy(w.begin() + cl.tokens[(size_t)r] * C, w.begin() + (cl.tokens[(size_t)r] + 1) * C,
              reordered.begin() + r * C);
  }
  const int64_t K = cl.n_clusters();
  mf.add_tensor(f32_tensor("head.weight", reordered, C, V, *st));
  mf.add_tensor(f32_tensor("head.cluster.weight", cw, C, K, *st));
  mf.add_tensor(f32_tensor("head.cluster.bias", cb, K, 0, *st));
  mf.add_tensor(f32_tensor("head.cluster.offsets", std::vector<float>(cl.offsets.begin(), cl.offsets.end()), K + 1, 0, *st));
  mf.add_tensor(f32_tensor("head.cluster.tokens", std::vector<float>(cl.tokens.begin(), cl.tokens.end()), V, 0, *st));
  mf.storage.push_back(st);
  return mf;
}

std::vector<float> dense_logits(const std::vector<float>& w, int64_t V, int64_t C, const float* h) {
  std::vector<float> out((size_t)V);
  for (int64_t t = 0; t < V; ++t) {
    double s = 0.0;
    for (int64_t j = 0; j < C; ++j) s += (double)w[(size_t)(t * C + j)] * h[j];
    out[(size_t)t] = (float)s;
  }
  return out;
}

TEST_CASE("default cluster count scales with the square root of the vocabulary") {
  CHECK(compress::default_head_clusters(65536) == 200);
  CHECK(compress::default_head_clusters(12288) == 87);
  CHECK(compress::default_head_clusters(256) == 13);
  CHECK(compress::default_head_clusters(1) == 1);
}

TEST_CASE("k-means separates well-separated blobs") {
  const int64_t k = 5, per = 60, dims = 8, n = k * per;
  std::vector<float> data((size_t)(n * dims));
  std::vector<float> noise = gaussian(n * dims, 7, 0.3f);
  std::vector<float> centres = gaussian(k * dims, 11, 10.0f);
  // Points are interleaved (point i belongs to blob i % k) so cluster order is not data order.
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < dims; ++j) data[(size_t)(i * dims + j)] = centres[(size_t)((i % k) * dims + j)] + noise[(size_t)(i * dims + j)];
  }
  compress::KMeansOptions opt;
  opt.k = k;
  opt.seed = 3;
  const compress::KMeansResult r = compress::kmeans(data.data(), n, dims, opt);
  REQUIRE(r.labels.size() == (size_t)n);
  std::set<int32_t> used;
  for (int64_t b = 0; b < k; ++b) {
    const int32_t l = r.labels[(size_t)b];
    for (int64_t i = b; i < n; i += k) CHECK(r.labels[(size_t)i] == l);
    used.insert(l);
  }
  CHECK(used.size() == (size_t)k);
  // Inertia ≈ n · dims · 0.3² for the true partition.
  CHECK(r.inertia < 1.5 * n * dims * 0.09);
  // Deterministic for a seed.
  CHECK(compress::kmeans(data.data(), n, dims, opt).labels == r.labels);
}

TEST_CASE("k-means leaves no cluster empty") {
  // 12 points, only 3 distinct: with k = 6 some clusters start or end empty and are repaired.
  std::vector<float> data;
  for (int i = 0; i < 12; ++i) {
    const float v = (float)(i % 3);
    data.push_back(v);
    data.push_back(-v);
  }
  compress::KMeansOptions opt;
  opt.k = 6;
  const compress::KMeansResult r = compress::kmeans(data.data(), 12, 2, opt);
  std::vector<int> size(6, 0);
  for (int32_t l : r.labels) ++size[(size_t)l];
  for (int s : size) CHECK(s > 0);
}

TEST_CASE("cluster layout: offsets, tokens ascending within a cluster") {
  const std::vector<int32_t> labels = {2, 0, 1, 0, 2, 2};
  const HeadClustering cl = compress::make_clustering(labels, 3);
  CHECK(cl.offsets == std::vector<int32_t>{0, 2, 3, 6});
  CHECK(cl.tokens == std::vector<int32_t>{1, 3, 2, 0, 4, 5});
}

TEST_CASE("PCA projection keeps the dominant direction") {
  // Points along (1, 1, 0) with small noise: the first component carries the variance.
  const int64_t n = 200;
  std::vector<float> t = gaussian(n, 5, 3.0f), e = gaussian(3 * n, 6, 0.01f), data((size_t)(3 * n));
  for (int64_t i = 0; i < n; ++i) {
    data[(size_t)(3 * i)] = t[(size_t)i] + e[(size_t)(3 * i)];
    data[(size_t)(3 * i + 1)] = t[(size_t)i] + e[(size_t)(3 * i + 1)];
    data[(size_t)(3 * i + 2)] = 5.0f + e[(size_t)(3 * i + 2)];
  }
  const std::vector<float> p = compress::pca_project(data.data(), n, 3, 1);
  REQUIRE(p.size() == (size_t)n);
  double mean_t = 0.0;
  for (float v : t) mean_t += v;
  mean_t /= n;
  for (int64_t i = 0; i < n; ++i) CHECK(std::fabs(std::fabs(p[(size_t)i]) - std::fabs((t[(size_t)i] - mean_t) * std::sqrt(2.0))) < 0.05);
}

// A synthetic head with cluster structure: V tokens around K directions.
struct Synth {
  int64_t V = 240, C = 16, K = 12, N = 1500;
  std::vector<float> w, h;
  Synth() {
    std::vector<float> dirs = gaussian(K * C, 21, 1.0f), noise = gaussian(V * C, 22, 0.3f);
    w.resize((size_t)(V * C));
    for (int64_t t = 0; t < V; ++t) {
      for (int64_t j = 0; j < C; ++j) w[(size_t)(t * C + j)] = dirs[(size_t)((t % K) * C + j)] + noise[(size_t)(t * C + j)];
    }
    h = gaussian(N * C, 23, 1.0f);
  }
  kern::MatView view() const { return kern::MatView{DType::kF32, V, C, w.data()}; }
};

TEST_CASE("distillation lowers the cluster KL from the mean-of-rows init") {
  Synth s;
  compress::KMeansOptions ko;
  ko.k = s.K;
  const HeadClustering cl = compress::make_clustering(compress::kmeans(s.w.data(), s.V, s.C, ko).labels, s.K);
  const std::vector<float> p = compress::cluster_targets(s.view(), s.h.data(), s.N, cl);
  for (int64_t i = 0; i < s.N; ++i) {
    double sum = 0.0;
    for (int64_t c = 0; c < s.K; ++c) sum += p[(size_t)(i * s.K + c)];
    REQUIRE(sum == doctest::Approx(1.0).epsilon(1e-5));
  }
  std::vector<float> w((size_t)(s.K * s.C), 0.0f), b((size_t)s.K);
  for (int64_t c = 0; c < s.K; ++c) {
    const int64_t lo = cl.offsets[(size_t)c], hi = cl.offsets[(size_t)c + 1];
    for (int64_t r = lo; r < hi; ++r) {
      for (int64_t j = 0; j < s.C; ++j) w[(size_t)(c * s.C + j)] += s.w[(size_t)(cl.tokens[(size_t)r] * s.C + j)] / (float)(hi - lo);
    }
    b[(size_t)c] = std::log((float)(hi - lo));
  }
  compress::DistillOptions d;
  d.epochs = 6;
  const std::vector<compress::DistillEpoch> hist = compress::distill_cluster_head(s.h.data(), p.data(), s.N, s.C, s.K, w, b, d);
  REQUIRE(hist.size() == 7);
  MESSAGE("held-out KL " << hist.front().heldout_kl << " -> " << hist.back().heldout_kl);
  // The synthetic head is strongly clustered, so the init is already good; training must still
  // cut the KL clearly, on held-out rows too.
  CHECK(hist.back().train_kl < 0.85 * hist.front().train_kl);
  CHECK(hist.back().heldout_kl < 0.85 * hist.front().heldout_kl);
  for (size_t e = 1; e < hist.size(); ++e) CHECK(hist[e].train_kl <= hist[e - 1].train_kl * 1.02);
}

TEST_CASE("clustered head with p_min = 1 gives the dense logits in token order") {
  Synth s;
  compress::KMeansOptions ko;
  ko.k = s.K;
  const HeadClustering cl = compress::make_clustering(compress::kmeans(s.w.data(), s.V, s.C, ko).labels, s.K);
  // The reordering is not the identity, so a missed scatter would show.
  CHECK(cl.tokens != [&] { std::vector<int32_t> id((size_t)s.V); std::iota(id.begin(), id.end(), 0); return id; }());
  const std::vector<float> cw = gaussian(s.K * s.C, 31), cb((size_t)s.K, 0.0f);
  ModelFile mf = head_file(s.w, s.V, s.C, cl, cw, cb);
  ClusterHeadSettings set;
  set.p_min = 1.0f;
  set.k_max = 2;  // ignored at p_min >= 1
  auto h = ClusteredHead::from_file(mf, set);
  REQUIRE_MESSAGE(h.ok(), h.status().to_string());
  const int64_t n = 5;
  std::vector<std::vector<float>> out((size_t)n, std::vector<float>((size_t)s.V));
  std::vector<float*> dst;
  for (auto& o : out) dst.push_back(o.data());
  h.value()->compute(s.h.data(), n, dst.data());
  for (int64_t i = 0; i < n; ++i) {
    const std::vector<float> ref = dense_logits(s.w, s.V, s.C, s.h.data() + i * s.C);
    for (int64_t t = 0; t < s.V; ++t) REQUIRE(out[(size_t)i][(size_t)t] == doctest::Approx(ref[(size_t)t]).epsilon(1e-5));
  }
  const ClusterHeadStats st = h.value()->stats();
  CHECK(st.rows == (uint64_t)n);
  CHECK(st.clusters == (uint64_t)(n * s.K));
  CHECK(st.head_rows == (uint64_t)(n * s.V));
}

// A hand-checkable head: V = 6, C = 2, K = 3: cluster 0 = tokens {4, 1}, cluster 1 = {0, 3, 5},
// cluster 2 = {2}; with one cluster per row (`settings`) x = (0.7, 0.4) takes cluster 0.
struct SixTokenHead {
  static constexpr int64_t V = 6, C = 2;
  const std::vector<float> w = {1, 0, 0.5f, 0.5f, -1, 2, 0, 1, 2, 1, -0.5f, -0.5f};  // token t: row t
  const HeadClustering cl = compress::make_clustering({1, 0, 2, 1, 0, 1}, 3);
  const std::vector<float> cw = {1, 1, 0, 1, -1, 0}, cb = {0.1f, 0.0f, -0.2f};
  ModelFile file() const { return head_file(w, V, C, cl, cw, cb); }
  static ClusterHeadSettings settings() {
    ClusterHeadSettings set;
    set.p_min = 0.5f;
    set.k_min = 1;
    set.k_max = 1;
    return set;
  }
};

TEST_CASE("pseudo-logits follow m + log(Q p_j / (P n_j))") {
  const SixTokenHead six;
  const int64_t V = six.V;
  REQUIRE(six.cl.tokens == std::vector<int32_t>{1, 4, 0, 3, 5, 2});
  ModelFile mf = six.file();
  auto h = ClusteredHead::from_file(mf, SixTokenHead::settings());
  REQUIRE(h.ok());
  const float x[2] = {0.7f, 0.4f};
  std::vector<float> out((size_t)V);
  float* dst = out.data();
  h.value()->compute(x, 1, &dst);
  // By hand: z = (0.7+0.4+0.1, 0.4, -0.7-0.2) = (1.2, 0.4, -0.9) -> cluster 0 is chosen.
  const double z[3] = {1.2, 0.4, -0.9};
  const double zs = std::exp(z[0]) + std::exp(z[1]) + std::exp(z[2]);
  const double p[3] = {std::exp(z[0]) / zs, std::exp(z[1]) / zs, std::exp(z[2]) / zs};
  const double l1 = 0.5 * 0.7 + 0.5 * 0.4, l4 = 2 * 0.7 + 1 * 0.4;  // exact logits of tokens 1, 4
  const double m = std::max(l1, l4), Q = std::exp(l1 - m) + std::exp(l4 - m), P = p[0];
  const double pseudo1 = m + std::log(Q * p[1] / (P * 3)), pseudo2 = m + std::log(Q * p[2] / (P * 1));
  CHECK(out[1] == doctest::Approx(l1).epsilon(1e-6));
  CHECK(out[4] == doctest::Approx(l4).epsilon(1e-6));
  for (int t : {0, 3, 5}) CHECK(out[(size_t)t] == doctest::Approx(pseudo1).epsilon(1e-5));
  CHECK(out[2] == doctest::Approx(pseudo2).epsilon(1e-5));
  CHECK(h.value()->choose(x) == std::vector<int32_t>{0});
  // The resulting distribution: the chosen cluster keeps mass ≈ P·(its share), the others p_j.
  double zsum = 0.0;
  for (float v : out) zsum += std::exp((double)v - m);
  CHECK(std::exp(pseudo1 - m) * 3 / zsum == doctest::Approx(p[1]).epsilon(1e-5));
}

TEST_CASE("with a per-token prior an unchosen cluster keeps its mass, spread by the prior") {
  // The six-token head plus head.cluster.log_prior (head-row order 1,4 | 0,3,5 | 2),
  // unnormalised on purpose: the head renormalises each cluster's shares at load.
  const SixTokenHead six;
  const int64_t V = six.V;
  ModelFile mf = six.file();
  const double share[6] = {0.5, 0.5, 0.6, 0.3, 0.1, 1.0};  // π of rows 0..5 within their clusters
  std::vector<float> lp(6);
  for (int r = 0; r < 6; ++r) lp[(size_t)r] = (float)std::log(share[r] * 7.0);  // scaled: sums are 7, not 1
  auto st = std::make_shared<BufferStorage>();
  mf.add_tensor(f32_tensor("head.cluster.log_prior", lp, V, 0, *st));
  mf.storage.push_back(st);
  ClusterHeadSettings set = SixTokenHead::settings();
  auto h = ClusteredHead::from_file(mf, set);
  REQUIRE(h.ok());
  CHECK(h.value()->uses_prior());
  const float x[2] = {0.7f, 0.4f};
  std::vector<float> out((size_t)V), flat((size_t)V);
  float* dst = out.data();
  h.value()->compute(x, 1, &dst);
  set.use_prior = false;
  auto u = ClusteredHead::from_file(mf, set);
  REQUIRE(u.ok());
  CHECK_FALSE(u.value()->uses_prior());
  dst = flat.data();
  u.value()->compute(x, 1, &dst);
  // Chosen cluster 0 (tokens 1, 4): exact logits either way.
  CHECK(out[1] == flat[1]);
  CHECK(out[4] == flat[4]);
  // Cluster 1 (tokens 0, 3, 5 at rows 2, 3, 4): the same total mass as the even spread, split
  // 0.6 / 0.3 / 0.1; cluster 2 (one token): unchanged.
  const double m = out[4];
  const double even = 3 * std::exp((double)flat[0] - m);
  const double mass = std::exp((double)out[0] - m) + std::exp((double)out[3] - m) + std::exp((double)out[5] - m);
  CHECK(mass == doctest::Approx(even).epsilon(1e-5));
  CHECK(std::exp((double)out[0] - m) / mass == doctest::Approx(0.6).epsilon(1e-5));
  CHECK(std::exp((double)out[3] - m) / mass == doctest::Approx(0.3).epsilon(1e-5));
  CHECK(std::exp((double)out[5] - m) / mass == doctest::Approx(0.1).epsilon(1e-5));
  CHECK(out[2] == doctest::Approx(flat[2]).epsilon(1e-6));
  // A non-finite prior is an error naming the tensor.
  ModelFile bad = six.file();
  std::vector<float> nan_lp = lp;
  nan_lp[3] = NAN;
  auto st2 = std::make_shared<BufferStorage>();
  bad.add_tensor(f32_tensor("head.cluster.log_prior", nan_lp, V, 0, *st2));
  bad.storage.push_back(st2);
  auto e = ClusteredHead::from_file(bad, {});
  REQUIRE_FALSE(e.ok());
  CHECK(e.status().message().find("head.cluster.log_prior") != std::string::npos);
}

TEST_CASE("cluster choice respects p_min, k_min and k_max") {
  Synth s;
  compress::KMeansOptions ko;
  ko.k = s.K;
  const HeadClustering cl = compress::make_clustering(compress::kmeans(s.w.data(), s.V, s.C, ko).labels, s.K);
  const std::vector<float> cw = gaussian(s.K * s.C, 41, 2.0f), cb((size_t)s.K, 0.0f);
  ModelFile mf = head_file(s.w, s.V, s.C, cl, cw, cb);
  for (int64_t kmin : {1, 3}) {
    for (int64_t kmax : {3, 5, 100}) {
      ClusterHeadSettings set;
      set.p_min = 0.8f;
      set.k_min = kmin;
      set.k_max = kmax;
      auto h = ClusteredHead::from_file(mf, set);
      REQUIRE(h.ok());
      for (int64_t i = 0; i < 50; ++i) {
        const std::vector<int32_t> c = h.value()->choose(s.h.data() + i * s.C);
        CHECK((int64_t)c.size() >= std::min(kmin, s.K));
        CHECK((int64_t)c.size() <= std::max(kmin, std::min(kmax, s.K)));
      }
    }
  }
}

TEST_CASE("a clustered file with bad offsets or tokens is rejected") {
  Synth s;
  compress::KMeansOptions ko;
  ko.k = s.K;
  HeadClustering cl = compress::make_clustering(compress::kmeans(s.w.data(), s.V, s.C, ko).labels, s.K);
  const std::vector<float> cw = gaussian(s.K * s.C, 41), cb((size_t)s.K, 0.0f);
  HeadClustering dup = cl;
  dup.tokens[1] = dup.tokens[0];
  CHECK(!ClusteredHead::from_file(head_file(s.w, s.V, s.C, dup, cw, cb), {}).ok());
  HeadClustering rev = cl;
  std::swap(rev.offsets[1], rev.offsets[2]);
  CHECK(!ClusteredHead::from_file(head_file(s.w, s.V, s.C, rev, cw, cb), {}).ok());
}

// The tiny v5.2 golden model: compress its head at p_min = 1 and compare with the dense logits.
struct TinyCase {
  std::shared_ptr<Model> dense;
  ModelFile compressed;
  compress::HeadReport report;
};

TinyCase compress_tiny(const std::string& file, int64_t K, float p_min, bool prior = false, int64_t k_max = 100) {
  TinyCase tc;
  auto m = Model::load(test::tiny_model(file), {});
  REQUIRE_MESSAGE(m.ok(), m.status().to_string());
  tc.dense = m.value();
  std::mt19937 rng(5);
  std::vector<int32_t> toks(600);
  for (int32_t& t : toks) t = (int32_t)(32 + rng() % 90);  // printable bytes
  compress::HeadProbe probe;
  REQUIRE(compress::run_calibration(*tc.dense, toks, &probe).ok());
  REQUIRE(probe.n_rows == 600);
  tc.compressed = tc.dense->file();
  compress::HeadOptions opt;
  opt.clusters = K;
  opt.p_min = p_min;
  opt.distill.epochs = 3;
  opt.tail_prior = prior;
  if (k_max < 3) {
    opt.k_min = 1;
    opt.k_max = k_max;
  }
  Status st = compress::compress_head(tc.compressed, *tc.dense, probe.hidden.data(), probe.n_rows, opt, &tc.report);
  REQUIRE_MESSAGE(st.ok(), st.to_string());
  REQUIRE(finalize_model_file(tc.compressed, true).ok());
  return tc;
}

TEST_CASE("tiny golden model with a clustered head at p_min = 1 reproduces its dense logits") {
  for (const char* file : {"tiny-rwkv-5v2-730K-FP32.bin", "tiny-rwkv-7v0-834K-FP16.bin"}) {
    CAPTURE(file);
    TinyCase tc = compress_tiny(file, 10, 1.0f);
    CHECK(tc.report.clusters == 10);
    CHECK(tc.report.epochs.back().heldout_kl < tc.report.epochs.front().heldout_kl);
    auto cm = Model::from_file(tc.compressed, {});
    REQUIRE_MESSAGE(cm.ok(), cm.status().to_string());
    REQUIRE(cm.value()->clustered_head() != nullptr);
    const std::vector<int32_t> toks = {0x22, 0x69, 0x6E, 0x20, 0x74, 0x68, 0x65, 0x20, 0x62};
    const std::vector<float> a = test::all_logits(*tc.dense, toks), b = test::all_logits(*cm.value(), toks);
    float worst = 0.0f;
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
    // Issue 6's lossless criterion: 1e-4. Only the summation order of the dot products differs.
    CHECK(worst < 1e-4f);

    // Through a GGUF file: the cluster tensors survive the writer and reader.
    test::TempDir dir;
    GgufWriteOptions wo;
    wo.keep_types = true;
    REQUIRE(write_gguf(tc.compressed, dir.file("c.gguf"), wo).ok());
    auto rm = Model::load(dir.file("c.gguf"), {});
    REQUIRE_MESSAGE(rm.ok(), rm.status().to_string());
    const std::vector<float> c = test::all_logits(*rm.value(), toks);
    worst = 0.0f;
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - c[i]));
    CHECK(worst < 1e-4f);
    // The run-time override turns the approximation on.
    LoadOptions lo;
    lo.head_p_min = 0.5;
    lo.head_k_min = 1;
    auto am = Model::load(dir.file("c.gguf"), lo);
    REQUIRE(am.ok());
    (void)test::all_logits(*am.value(), toks);
    const ClusterHeadStats hs = am.value()->clustered_head()->stats();
    CHECK(hs.rows == toks.size());
    CHECK(hs.head_rows < hs.rows * (uint64_t)am.value()->hparams().n_vocab);
  }
}

}  // namespace
}  // namespace rwkv

namespace rwkv {

TEST_CASE("compress --head-prior: shares from the dense head, lossless at p_min = 1, a closer tail below it") {
  // The prior is fitted to the selection the file will use: one cluster per token.
  TinyCase tc = compress_tiny("tiny-rwkv-5v2-730K-FP32.bin", 10, 0.01f, true, 1);
  const TensorRef* lp = tc.compressed.find("head.cluster.log_prior");
  REQUIRE(lp != nullptr);
  CHECK(lp->type == DType::kF16);
  CHECK(tc.compressed.metadata["rwkv_edge.compress.head.tail"].rfind("prior", 0) == 0);
  // Each cluster's shares sum to 1 up to the f16 rounding of their logs.
  std::vector<float> v((size_t)lp->n_elements());
  dequantize_row(lp->type, lp->data, v.data(), lp->n_elements());
  std::vector<int32_t> off;
  {
    const TensorRef* o = tc.compressed.find("head.cluster.offsets");
    std::vector<float> of((size_t)o->n_elements());
    dequantize_row(o->type, o->data, of.data(), o->n_elements());
    for (float f : of) off.push_back((int32_t)f);
  }
  for (size_t c = 0; c + 1 < off.size(); ++c) {
    double sum = 0.0;
    for (int32_t r = off[c]; r < off[c + 1]; ++r) sum += std::exp((double)v[(size_t)r]);
    CHECK(sum == doctest::Approx(1.0).epsilon(2e-3));
  }
  const std::vector<int32_t> toks = {0x22, 0x69, 0x6E, 0x20, 0x74, 0x68, 0x65, 0x20, 0x62, 0x65, 0x73, 0x74};
  const std::vector<float> dense = test::all_logits(*tc.dense, toks);
  // p_min = 1: every cluster is exact, the prior is never used.
  LoadOptions exact_lo;
  exact_lo.head_p_min = 1.0;
  auto cm = Model::from_file(tc.compressed, exact_lo);
  REQUIRE(cm.ok());
  const std::vector<float> exact = test::all_logits(*cm.value(), toks);
  float worst = 0.0f;
  for (size_t i = 0; i < dense.size(); ++i) worst = std::max(worst, std::fabs(dense[i] - exact[i]));
  CHECK(worst < 1e-4f);
  // One cluster per token: the KL to the dense distribution is smaller with the prior than with
  // the even spread (the prior is the dense head's mass on the calibration text where the
  // token's cluster is not chosen; the tokens here are other text).
  auto kl_for = [&](bool uniform) {
    LoadOptions lo;
    lo.head_p_min = 0.01;
    lo.head_k_min = 1;
    lo.head_k_max = 1;
    lo.head_uniform_tail = uniform;
    auto am = Model::from_file(tc.compressed, lo);
    REQUIRE(am.ok());
    CHECK(am.value()->clustered_head()->uses_prior() == !uniform);
    const std::vector<float> a = test::all_logits(*am.value(), toks);
    const int64_t V = am.value()->hparams().n_vocab;
    double kl = 0.0;
    for (size_t i = 0; i < toks.size(); ++i) {
      const float* p = dense.data() + i * V;
      const float* q = a.data() + i * V;
      const double mp = *std::max_element(p, p + V), mq = *std::max_element(q, q + V);
      double sp = 0.0, sq = 0.0;
      for (int64_t t = 0; t < V; ++t) {
        sp += std::exp(p[t] - mp);
        sq += std::exp(q[t] - mq);
      }
      for (int64_t t = 0; t < V; ++t) {
        const double lpp = p[t] - mp - std::log(sp), lqq = q[t] - mq - std::log(sq);
        kl += std::exp(lpp) * (lpp - lqq);
      }
    }
    return kl / (double)toks.size();
  };
  const double kl_prior = kl_for(false), kl_even = kl_for(true);
  CAPTURE(kl_prior);
  CAPTURE(kl_even);
  CHECK(kl_prior < kl_even);
}

TEST_CASE("BytesMeter counts the clustered head's chosen rows from its statistics") {
  TinyCase tc = compress_tiny("tiny-rwkv-5v2-730K-FP32.bin", 10, 0.5f);
  auto cm = Model::from_file(tc.compressed, {});
  REQUIRE_MESSAGE(cm.ok(), cm.status().to_string());
  const ClusteredHead* ch = cm.value()->clustered_head();
  REQUIRE(ch != nullptr);
  const std::vector<int32_t> toks = {0x22, 0x69, 0x6E, 0x20, 0x74, 0x68, 0x65, 0x20, 0x62, 0x69, 0x67};
  BytesMeter meter(*cm.value());
  Result<PerplexityResult> r = eval_perplexity(*cm.value(), toks, (int64_t)toks.size(), 3, nullptr);
  REQUIRE(r.ok());
  const WeightBytes w = meter.result(r->tokens_scored);
  const ClusterHeadStats st = ch->stats();
  REQUIRE(st.rows == (uint64_t)r->tokens_scored);
  CHECK(w.head_row_fraction == doctest::Approx((double)st.head_rows / ((double)st.rows * (double)ch->n_vocab())));
  CHECK(w.head_row_fraction < 1.0);
  CHECK(w.head_clusters == doctest::Approx((double)st.clusters / (double)st.rows));
  const ModelFile& mf = cm.value()->file();
  double cluster_bytes = 0;
  for (const TensorRef& t : mf.tensors) {
    if (t.name.rfind("head.cluster.", 0) == 0) cluster_bytes += (double)t.nbytes;
  }
  CHECK(w.head == doctest::Approx((double)mf.find("head.weight")->nbytes * w.head_row_fraction + cluster_bytes));

  // p_min = 1 at load: every head row.
  LoadOptions all;
  all.head_p_min = 1.0;
  auto full = Model::from_file(tc.compressed, all);
  REQUIRE(full.ok());
  BytesMeter meter_full(*full.value());
  REQUIRE(eval_perplexity(*full.value(), toks, (int64_t)toks.size(), 3, nullptr).ok());
  CHECK(meter_full.result((int64_t)toks.size() - 1).head_row_fraction == doctest::Approx(1.0));
}

}  // namespace rwkv
