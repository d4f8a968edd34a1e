// compress: turn a model into a compressed GGUF (issue 6, RWKV-Lite). One function per
// technique, called in this order on the canonical ModelFile:
//   calibrate (one pass, every technique's probe) -> lowrank -> [head clustering]
//   -> [FFN predictors] -> float type (--dtype) -> INT8 -> metadata -> write -> load check.
// Adding a technique = an options struct + add_*_options() + a step_*() call below; its library
// code lives in engine/compress/<technique>.{h,cpp}.
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/common.h"
#include "engine/compress/calib.h"
#include "engine/compress/ffn_predictor.h"
#include "engine/compress/head_cluster.h"
#include "engine/compress/int8.h"
#include "engine/compress/lowrank.h"

namespace rwkv::cli {
namespace {

using compress::Int8Mode;
using compress::LowRankMethod;

// Progress on stderr, at most ~4 times a second (always the last one).
class Progress {
 public:
  explicit Progress(bool enabled) : enabled_(enabled) {}
  void operator()(const std::string& what, int64_t done, int64_t total) {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (done < total && now - last_ < std::chrono::milliseconds(250)) return;
    last_ = now;
    std::fprintf(stderr, "\r%s: %" PRId64 "/%" PRId64 "          ", what.c_str(), done, total);
    if (done >= total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }
  void line(const char* fmt, const std::string& s) {
    if (enabled_) std::fprintf(stderr, fmt, s.c_str());
  }

 private:
  bool enabled_;
  std::chrono::steady_clock::time_point last_{};
};

struct CommonArgs {
  std::string in, out, calib, heldout, dtype = "keep";
  int64_t calib_tokens = 16384, threads = 0;
  bool quiet = false;
};

struct LowRankArgs {
  std::string method = "aware";
  double rank_factor = 8.0, energy = 0.0, ridge = 1e-3, asvd_alpha = compress::kAsvdAlpha;
  int64_t rank_multiple = 8;
  std::vector<std::string> ranks;
  std::string targets;
  std::string alloc = "uniform";
  std::string grad_stats;
};

struct FfnArgs {
  bool predict = false, no_mlp = false, plain_recall = false;
  std::string q, layers;
  double threshold = 0.0, recall = 0.99;
  int64_t epochs = 20, hidden = 64, rows = 16384;
};

struct HeadArgs {
  int64_t clusters = 0, epochs = 8, k_min = 3, k_max = 100;
  double p_min = 0.95, prior_uniform = 0.1;
  std::string init = "rows";
  bool prior = false;
};

struct Int8Args {
  std::string mode = "none";
};

void add_common_options(ArgParser& p, CommonArgs& a) {
  p.add_positional("IN", "input model (GGUF, rwkv.cpp .bin or safetensors)", &a.in);
  p.add_positional("OUT", "output GGUF", &a.out);
  p.add_string("--calib", "FILE", "calibration text (required; never the held-out text)", &a.calib, true);
  p.add_int("--calib-tokens", "N", "use the first N tokens of the calibration text", &a.calib_tokens, 1, INT64_MAX);
  p.add_string("--heldout", "FILE", "held-out text: report each factored matrix's relative output error on it",
               &a.heldout);
  p.add_string("--dtype", "T", "type of the matrices that do not become INT8: keep, f16 or f32", &a.dtype);
  p.add_int("--threads", "N", "threads (0 = physical cores)", &a.threads, 0, 1024);
  p.add_flag("--quiet", "no progress on stderr", &a.quiet);
}

void add_lowrank_options(ArgParser& p, LowRankArgs& a) {
  p.add_string("--lowrank", "M", "low-rank projections: none, svd (plain truncated SVD), aware (SVD-LLM whitening), asvd (ASVD activation "
               "scaling) or fisher (whitening of the inputs and of the output gradients; needs --grad-stats)",
               &a.method);
  p.add_float("--rank-factor", "K",
              "rank r = ceil(min(in,out) / K), rounded up to a multiple of --rank-multiple (K = 1: full rank)",
              &a.rank_factor, 1.0, 1e6);
  p.add_int("--rank-multiple", "N", "round ranks up to a multiple of N", &a.rank_multiple, 1, 4096);
  p.add_list("--rank", "NAME=R",
             "rank of matching matrices (glob on the base name, e.g. 'blocks.*.att.key=16'; R = full, or 0 = keep "
             "dense); repeatable, first match wins",
             &a.ranks);
  p.add_string("--rank-alloc", "A",
               "uniform (every matrix the rank of --rank-factor) or spectrum (the same total bytes, spread "
               "greedily to the matrices whose next singular values remove the most relative output error)",
               &a.alloc);
  p.add_float("--energy", "E", "choose each rank to keep this fraction of the singular-value energy (0 = off)",
              &a.energy, 0.0, 1.0);
  p.add_float("--asvd-alpha", "A", "--lowrank asvd: scale input j by its rms to the power A", &a.asvd_alpha, 0.0,
              4.0);
  p.add_string("--lowrank-targets", "LIST",
               "comma-separated projections to factor (e.g. att.key,att.value,ffn.receptance or head); default: "
               "the paper's per version",
               &a.targets);
  p.add_float("--ridge", "L", "aware, fisher: ridge added to X^T X (and G_out), relative to its mean diagonal",
              &a.ridge, 0.0, 1.0);
  p.add_string("--grad-stats", "FILE",
               "--lowrank fisher: output-gradient statistics of IN, from scripts/train/grad_stats.py (same --calib)",
               &a.grad_stats);
}

void add_ffn_options(ArgParser& p, FfnArgs& a) {
  p.add_flag("--ffn-predict", "FFN activation predictors (1-bit W_k copy + MLP) and the sparse channel mix", &a.predict);
  p.add_string("--ffn-q", "Q", "fixed quantile per layer (one value or a comma list per layer; top 1-Q by the 1-bit "
               "score are active); default: chosen per layer by --ffn-recall", &a.q);
  p.add_float("--ffn-mlp-threshold", "T", "MLP sigmoid threshold (0 = tune per layer among 0.5..0.95 and no MLP)",
              &a.threshold, 0.0, 0.999);
  p.add_float("--ffn-recall", "R", "recall of the activation mass relu(k)^2 to reach on the calibration rows",
              &a.recall, 0.0, 1.0);
  p.add_flag("--ffn-plain-recall", "count neurons for --ffn-recall instead of weighting them by relu(k)^2",
             &a.plain_recall);
  p.add_int("--ffn-epochs", "N", "MLP training epochs (Adam, lr 0.005, batch 256)", &a.epochs, 1, 10000);
  p.add_int("--ffn-hidden", "H", "MLP hidden width", &a.hidden, 1, 4096);
  p.add_flag("--ffn-no-mlp", "1-bit predictor only", &a.no_mlp);
  p.add_int("--ffn-rows", "N", "calibration rows per layer (the last 20% are held out)", &a.rows, 16, INT64_MAX);
  p.add_string("--ffn-layers", "LIST", "comma-separated layers to make sparse (default: all)", &a.layers);
}

void add_head_options(ArgParser& p, HeadArgs& a) {
  p.add_int("--head-clusters", "K", "hierarchical head with K vocabulary clusters (0 = off; -1 = the default "
            "round(200 sqrt(V/65536)))", &a.clusters, -1, INT64_MAX);
  p.add_int("--head-epochs", "N", "Adam epochs distilling the cluster head", &a.epochs, 0, 10000);
  p.add_float("--head-p-min", "P", "run-time default: take clusters until their probability mass reaches P "
              "(1 = every cluster, the dense logits)", &a.p_min, 0.0, 1.0);
  p.add_int("--head-k-min", "N", "run-time default: at least N clusters", &a.k_min, 0, INT64_MAX);
  p.add_int("--head-k-max", "N", "run-time default: at most N clusters", &a.k_max, 1, INT64_MAX);
  p.add_string("--head-init", "S", "what k-means clusters: rows (head rows) or pca (embeddings on their top 64 "
               "principal components, as the paper)", &a.init);
  p.add_flag("--head-prior", "store each token's share of its cluster (the dense head's probability summed over the "
             "calibration rows where that cluster is not chosen), so an unchosen cluster's mass is spread by it "
             "instead of evenly", &a.prior);
  p.add_float("--head-prior-uniform", "U", "--head-prior: fraction of each share spread evenly over the cluster "
              "(smoothing)", &a.prior_uniform, 1e-6, 1.0);
}

void add_int8_options(ArgParser& p, Int8Args& a) {
  p.add_string("--int8", "M",
               "INT8 for every 2-D matrix (incl. factors, head, embedding): none, row (i8r, per-row scale) or group "
               "(q8_0, per 32)",
               &a.mode);
}

Status parse_rank_overrides(const std::vector<std::string>& specs, std::vector<compress::RankOverride>* out) {
  for (const std::string& s : specs) {
    const size_t eq = s.rfind('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == s.size()) {
      return Status::InvalidArgument("--rank '" + s + "': expected NAME=R (e.g. blocks.*.att.key=32)");
    }
    compress::RankOverride o;
    o.pattern = s.substr(0, eq);
    const std::string r = s.substr(eq + 1);
    if (r == "full") {
      o.rank = INT64_MAX;
    } else {
      char* end = nullptr;
      const long long v = std::strtoll(r.c_str(), &end, 10);
      if (end == r.c_str() || *end != '\0' || v < 0) {
        return Status::InvalidArgument("--rank '" + s + "': rank '" + r + "' is not a non-negative integer or 'full'");
      }
      o.rank = v;
    }
    out->push_back(o);
  }
  return Status::OK();
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::string fmt_double(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

// Everything the steps share.
struct Job {
  ModelFile mf;                 // being rewritten
  std::shared_ptr<Model> dense;  // the input model, for calibration
  std::vector<int32_t> calib_tokens, heldout_tokens;
  compress::LowRankOptions lowrank;
  compress::GradStats grad_stats;  // --lowrank fisher; lowrank.grad_stats points here
  std::unique_ptr<compress::GramProbe> lowrank_calib, lowrank_heldout;
  bool ffn = false;
  compress::FfnOptions ffn_opt;
  std::unique_ptr<compress::FfnProbe> ffn_probe;
  bool head = false;
  compress::HeadOptions head_opt;
  std::unique_ptr<compress::HeadProbe> head_probe;
  Int8Mode int8 = Int8Mode::kNone;
  DType float_type = DType::kF32;
  bool keep_float_type = true;
};

// --- steps -------------------------------------------------------------------------------------

Status step_lowrank(Job& job, Progress& progress) {
  if (job.lowrank.method == LowRankMethod::kNone) return Status::OK();
  std::vector<compress::LowRankReport> rep;
  Status st = compress::apply_lowrank(
      job.mf, job.lowrank, job.lowrank_calib.get(), job.lowrank_heldout.get(), &rep,
      [&](const std::string& name, int64_t done, int64_t total) { progress("low-rank " + std::string(compress::lowrank_method_name(job.lowrank.method)), done, total); });
  if (!st.ok()) return st;
  size_t before = 0, after = 0;
  std::printf("%-28s %6s %6s %5s %8s %10s %10s\n", "low-rank matrix", "out", "in", "rank", "energy", "calib err",
              "heldout err");
  for (const compress::LowRankReport& r : rep) {
    std::printf("%-28s %6" PRId64 " %6" PRId64 " %5" PRId64 " %8.4f %10.4f %10s\n", r.name.c_str(), r.out, r.in,
                r.rank, r.energy_kept, r.calib_error,
                r.heldout_error >= 0 ? fmt_double(r.heldout_error).c_str() : "-");
    before += r.bytes_before;
    after += r.bytes_after;
  }
  std::printf("low-rank: %zu matrices, %zu -> %zu bytes\n", rep.size(), before, after);
  job.mf.metadata["rwkv_edge.compress.lowrank.matrices"] = std::to_string(rep.size());
  return Status::OK();
}

// Hierarchical head (engine/compress/head_cluster.*): k-means over the vocabulary, cluster head
// distilled on the dense model's head inputs collected during calibration.
Status step_head_cluster(Job& job, Progress& progress) {
  if (!job.head) return Status::OK();
  compress::HeadReport rep;
  Status st = compress::compress_head(job.mf, *job.dense, job.head_probe->hidden.data(), job.head_probe->n_rows,
                                      job.head_opt, &rep, [&](const std::string&, const std::string& line) {
                                        progress.line("head: %s\n", line);
                                      });
  if (!st.ok()) return st;
  std::printf("head: %" PRId64 " clusters (%" PRId64 "..%" PRId64 " tokens), held-out KL %.4f -> %.4f over %d epochs; "
              "at p_min %g: %.1f clusters, %.1f%% of head rows per token; +%zu bytes\n",
              rep.clusters, rep.min_size, rep.max_size, rep.epochs.front().heldout_kl, rep.epochs.back().heldout_kl,
              (int)rep.epochs.size() - 1, job.head_opt.p_min, rep.heldout_clusters, 100.0 * rep.heldout_row_fraction,
              rep.cluster_bytes);
  return Status::OK();
}

// FFN activation predictors (engine/compress/ffn_predictor.*), trained on the dense model's
// channel-mix inputs collected during calibration.
Status step_ffn_predictors(Job& job, Progress& progress) {
  if (!job.ffn) return Status::OK();
  std::vector<compress::FfnLayerReport> rep;
  Status st = compress::compress_ffn(job.mf, job.ffn_probe->samples(), job.ffn_opt,
                                     [&](int64_t d, int64_t t, const std::string&) { progress("FFN predictors", d, t); },
                                     &rep);
  if (!st.ok()) return st;
  std::printf("FFN predictors (recall target %g, %s):\n%s", job.ffn_opt.recall,
              job.ffn_opt.weighted_recall ? "weighted by relu(k)^2" : "plain", compress::format_ffn_report(rep).c_str());
  return Status::OK();
}

Status step_float_type(Job& job, Progress& progress) {
  if (job.keep_float_type) return Status::OK();
  return compress::apply_float_type(job.mf, job.float_type);
}

Status step_int8(Job& job, Progress& progress) {
  if (job.int8 == Int8Mode::kNone) return Status::OK();
  compress::Int8Report rep;
  Status st = compress::apply_int8(job.mf, job.int8, &rep);
  if (!st.ok()) return st;
  std::printf("int8 %s: %" PRId64 " matrices, %zu -> %zu bytes\n", compress::int8_mode_name(job.int8), rep.converted,
              rep.bytes_before, rep.bytes_after);
  for (const std::string& n : rep.skipped) std::printf("int8: kept %s (rows not a multiple of 32)\n", n.c_str());
  return Status::OK();
}

// Runs the calibration text (and the held-out text) once through the dense model with every
// technique's probe installed.
Status calibrate(Job& job, Progress& progress) {
  compress::ProbeList probes;
  if (compress::lowrank_needs_calibration(job.lowrank.method)) probes.probes.push_back(job.lowrank_calib.get());
  if (job.head_probe) probes.probes.push_back(job.head_probe.get());
  if (job.ffn_probe) probes.probes.push_back(job.ffn_probe.get());
  if (!probes.probes.empty()) {
    Status st = compress::run_calibration(*job.dense, job.calib_tokens, &probes,
                                          [&](int64_t d, int64_t t) { progress("calibration tokens", d, t); });
    if (!st.ok()) return st;
  }
  if (job.lowrank_heldout) {
    Status st = compress::run_calibration(*job.dense, job.heldout_tokens, job.lowrank_heldout.get(),
                                          [&](int64_t d, int64_t t) { progress("held-out tokens", d, t); });
    if (!st.ok()) return st;
  }
  return Status::OK();
}

}  // namespace

int cmd_compress(int argc, char** argv) {
  ArgParser p("rwkv-edge compress",
              "Compress a model into a GGUF the engine runs directly (RWKV-Lite, issue 6): low-rank projections\n"
              "(plain or activation-aware SVD) and INT8 weights; settings are stored as rwkv_edge.compress.*\n"
              "metadata. The calibration text feeds the activation statistics; the per-matrix report goes to\n"
              "stdout, progress to stderr. Example:\n"
              "  rwkv-edge compress dense.gguf small.gguf --calib train.txt --lowrank aware --rank-factor 8 --int8 row");
  CommonArgs common;
  LowRankArgs lr;
  Int8Args i8;
  FfnArgs ffn;
  HeadArgs head;
  add_common_options(p, common);
  add_lowrank_options(p, lr);
  add_head_options(p, head);
  add_ffn_options(p, ffn);
  add_int8_options(p, i8);
  if (int rc = parse_args(p, argc, argv); rc >= 0) return rc;

  Job job;
  if (!compress::parse_lowrank_method(lr.method, &job.lowrank.method)) {
    std::fprintf(stderr, "error: --lowrank must be none, svd, aware, asvd or fisher, got '%s'\n", lr.method.c_str());
    return 2;
  }
  if (!lr.grad_stats.empty() && job.lowrank.method != LowRankMethod::kFisher) {
    std::fprintf(stderr, "error: --grad-stats is only used by --lowrank fisher\n");
    return 2;
  }
  if (!lr.grad_stats.empty()) {
    Result<compress::GradStats> gs = compress::read_grad_stats(lr.grad_stats);
    if (!gs.ok()) {
      std::fprintf(stderr, "error: %s\n", gs.status().message().c_str());
      return 1;
    }
    job.grad_stats = std::move(gs.value());
    job.lowrank.grad_stats = &job.grad_stats;
  }
  if (!compress::parse_int8_mode(i8.mode, &job.int8)) {
    std::fprintf(stderr, "error: --int8 must be none, row or group, got '%s'\n", i8.mode.c_str());
    return 2;
  }
  if (common.dtype == "f16" || common.dtype == "f32") {
    job.keep_float_type = false;
    job.float_type = common.dtype == "f16" ? DType::kF16 : DType::kF32;
  } else if (common.dtype != "keep") {
    std::fprintf(stderr, "error: --dtype must be keep, f16 or f32, got '%s'\n", common.dtype.c_str());
    return 2;
  }
  if (Status st = parse_rank_overrides(lr.ranks, &job.lowrank.overrides); !st.ok()) {
    std::fprintf(stderr, "error: %s\n", st.message().c_str());
    return 2;
  }
  job.lowrank.rank_factor = lr.rank_factor;
  job.lowrank.rank_multiple = lr.rank_multiple;
  job.lowrank.energy = lr.energy;
  if (lr.alloc == "spectrum") {
    job.lowrank.allocate = true;
  } else if (lr.alloc != "uniform") {
    std::fprintf(stderr, "error: --rank-alloc must be uniform or spectrum, got '%s'\n", lr.alloc.c_str());
    return 2;
  }
  job.lowrank.ridge = lr.ridge;
  job.lowrank.asvd_alpha = lr.asvd_alpha;
  job.lowrank.targets = split_list(lr.targets);
  if (job.lowrank.method != LowRankMethod::kNone) {
    // Before the model is loaded and calibrated, so a contradiction costs nothing.
    if (Status st = compress::check_lowrank_options(job.lowrank); !st.ok()) {
      std::fprintf(stderr, "error: %s\n", st.message().c_str());
      return 2;
    }
  }
  job.head = head.clusters != 0;
  job.head_opt.clusters = head.clusters < 0 ? 0 : head.clusters;
  job.head_opt.distill.epochs = (int)head.epochs;
  job.head_opt.p_min = (float)head.p_min;
  job.head_opt.k_min = head.k_min;
  job.head_opt.k_max = head.k_max;
  job.head_opt.tail_prior = head.prior;
  job.head_opt.prior_uniform = (float)head.prior_uniform;
  if (head.init == "pca") {
    job.head_opt.space = compress::HeadClusterSpace::kPca;
  } else if (head.init != "rows") {
    std::fprintf(stderr, "error: --head-init must be rows or pca, got '%s'\n", head.init.c_str());
    return 2;
  }
  job.ffn = ffn.predict;
  job.ffn_opt.recall = ffn.recall;
  job.ffn_opt.weighted_recall = !ffn.plain_recall;
  job.ffn_opt.mlp_threshold = ffn.threshold;
  job.ffn_opt.mlp = !ffn.no_mlp;
  job.ffn_opt.epochs = (int)ffn.epochs;
  job.ffn_opt.hidden = (int)ffn.hidden;
  if (!ffn.q.empty()) {
    if (Status st = compress::parse_ffn_q_list(ffn.q, &job.ffn_opt.q); !st.ok()) {
      std::fprintf(stderr, "error: %s\n", st.message().c_str());
      return 2;
    }
  }
  for (const std::string& l : split_list(ffn.layers)) job.ffn_opt.layers.push_back(std::atoll(l.c_str()));
  if (common.in == common.out) return fail("compress", Status::InvalidArgument("input and output are the same file"));
  apply_threads(common.threads);
  Progress progress(!common.quiet);

  Result<ModelFile> mf = open_model_file(common.in);
  if (!mf.ok()) return fail("compress", mf.status());
  job.mf = mf.value();
  // Factors keep the input's float type unless --dtype says otherwise.
  job.lowrank.factor_type = job.keep_float_type ? DType::kF32 : job.float_type;
  if (job.keep_float_type) {
    for (const std::string& base : compress::lowrank_matrices(job.mf, job.lowrank)) {
      const TensorRef* t = job.mf.find(base + ".weight");
      if (t == nullptr) t = job.mf.find(base);
      if (t != nullptr && t->type == DType::kF16) job.lowrank.factor_type = DType::kF16;
    }
  }
  Result<std::shared_ptr<Model>> dense = Model::from_file(mf.value(), {});
  if (!dense.ok()) return fail("compress", dense.status());
  job.dense = dense.value();

  Result<std::vector<int32_t>> toks = compress::calib_tokens(*job.dense, common.calib, common.calib_tokens);
  if (!toks.ok()) return fail("compress", toks.status());
  job.calib_tokens = std::move(toks).value();
  const std::vector<std::string> lr_names = compress::lowrank_matrices(job.mf, job.lowrank);
  if (job.lowrank.method != LowRankMethod::kNone && lr_names.empty()) {
    return fail("compress", Status::InvalidArgument("--lowrank-targets '" + lr.targets + "' matches no matrix of " +
                                                    common.in));
  }
  job.lowrank_calib = std::make_unique<compress::GramProbe>(lr_names);
  if (!common.heldout.empty() && job.lowrank.method != LowRankMethod::kNone) {
    Result<std::vector<int32_t>> h = compress::calib_tokens(*job.dense, common.heldout, common.calib_tokens);
    if (!h.ok()) return fail("compress", h.status());
    job.heldout_tokens = std::move(h).value();
    job.lowrank_heldout = std::make_unique<compress::GramProbe>(lr_names);
  }

  if (job.head) job.head_probe = std::make_unique<compress::HeadProbe>();
  if (job.ffn) job.ffn_probe = std::make_unique<compress::FfnProbe>(job.mf.hparams.n_layer, ffn.rows);

  const auto t0 = std::chrono::steady_clock::now();
  using Step = Status (*)(Job&, Progress&);
  const struct { const char* name; Step run; } steps[] = {
      {"calibration", calibrate},      {"low-rank", step_lowrank},       {"head clustering", step_head_cluster},
      {"FFN predictors", step_ffn_predictors}, {"dtype", step_float_type}, {"int8", step_int8},
  };
  for (const auto& s : steps) {
    Status st = s.run(job, progress);
    if (!st.ok()) return fail("compress", st.with_context(s.name));
  }

  std::map<std::string, std::string>& md = job.mf.metadata;
  const std::string k = "rwkv_edge.compress.";
  md[k + "source"] = common.in;
  md[k + "calib"] = common.calib;
  md[k + "calib_tokens"] = std::to_string(job.calib_tokens.size());
  md[k + "lowrank"] = compress::lowrank_method_name(job.lowrank.method);
  if (job.lowrank.method != LowRankMethod::kNone) {
    md[k + "lowrank.rank_factor"] = fmt_double(job.lowrank.rank_factor);
    md[k + "lowrank.rank_multiple"] = std::to_string(job.lowrank.rank_multiple);
    md[k + "lowrank.energy"] = fmt_double(job.lowrank.energy);
    md[k + "lowrank.rank_alloc"] = job.lowrank.allocate ? "spectrum" : "uniform";
    md[k + "lowrank.ridge"] = fmt_double(job.lowrank.ridge);
    if (job.lowrank.method == LowRankMethod::kAsvd) md[k + "lowrank.asvd_alpha"] = fmt_double(job.lowrank.asvd_alpha);
    if (job.lowrank.method == LowRankMethod::kFisher) {
      md[k + "lowrank.grad_stats"] = job.grad_stats.path;
      md[k + "lowrank.grad_stats_tokens"] = std::to_string(job.grad_stats.tokens);
    }
    std::string ov;
    for (const std::string& r : lr.ranks) ov += (ov.empty() ? "" : ",") + r;
    md[k + "lowrank.ranks"] = ov;
    std::string tg;
    for (const std::string& t : job.lowrank.targets.empty() ? compress::default_lowrank_targets(job.mf.hparams.version)
                                                            : job.lowrank.targets) {
      tg += (tg.empty() ? "" : ",") + t;
    }
    md[k + "lowrank.targets"] = tg;
  }
  md[k + "int8"] = compress::int8_mode_name(job.int8);
  md[k + "dtype"] = common.dtype;

  GgufWriteOptions wo;
  wo.keep_types = true;
  if (Status st = write_gguf(job.mf, common.out, wo); !st.ok()) return fail("compress", st);
  // The output must load: catches a technique that wrote something the engine cannot run.
  Result<std::shared_ptr<Model>> check = Model::load(common.out, {});
  if (!check.ok()) return fail("compress", check.status().with_context("checking the written model"));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("wrote %s: %zu weight bytes per token (input %zu), %.1f s\n", common.out.c_str(),
              (*check)->weight_bytes_per_token(), job.dense->weight_bytes_per_token(), secs);
  return 0;
}

}  // namespace rwkv::cli
