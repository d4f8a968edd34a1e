// Low-rank projections (issue 6, RWKV-Lite §3): W [out x in] ≈ B·A with A = lr_a [r x in] and
// B = lr_b [out x r], by plain truncated SVD or activation-aware SVD (SVD-LLM whitening, ASVD
// scaling, or fisher: whitening of the inputs and of the output gradients).
//
//   GramProbe calib(lowrank_matrices(mf, opt));            // statistics of the inputs
//   run_calibration(*model, tokens, &calib, progress);
//   std::vector<LowRankReport> rep;
//   Status st = apply_lowrank(mf, opt, &calib, /*heldout=*/nullptr, &rep, nullptr);
//
// Plain SVD: W = U S Vᵀ, B = U_r sqrt(S_r), A = sqrt(S_r) V_rᵀ (minimises ||W - BA||_F).
// Activation-aware: G = XᵀX over the calibration inputs of that matrix (+ ridge λ·mean(diag G)·I),
// G = L Lᵀ (Cholesky), W L = U S Vᵀ, B = U_r sqrt(S_r), A = sqrt(S_r) V_rᵀ L⁻¹. Since
// ||(W - BA) X||_F² = ||(W - BA) L||_F², this minimises the output error on those inputs.
// Fisher: also G_out = Σ g gᵀ (g = dLoss/dy, GradStats) = Lo Loᵀ; SVD of Loᵀ W L, B = Lo⁻ᵀ U_r
// sqrt(S_r): minimises tr(G_out ΔW G ΔWᵀ), the K-FAC estimate of the loss increase.
// All arithmetic in double (Eigen BDCSVD).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "engine/common/status.h"
#include "engine/compress/grad_stats.h"
#include "engine/formats/model_file.h"
#include "engine/model.h"

namespace rwkv::compress {

// kAware: SVD-LLM whitening (the Cholesky factor of the calibration inputs' XᵀX);
// kAsvd: ASVD scaling (W diag(s), s_j = rms of input j to the power asvd_alpha).
// kFisher: two-sided, the whitening of kAware on the inputs and the Cholesky factor of the
// output-gradient Gram G_out (GradStats, scripts/train/grad_stats.py) on the outputs: minimises
// ||Loᵀ (W - BA) L||_F, the K-FAC estimate of the loss increase tr(G_out ΔW G_in ΔWᵀ).
enum class LowRankMethod { kNone, kSvd, kAware, kAsvd, kFisher };
// ASVD's default exponent on the input scales (the ASVD paper's).
constexpr double kAsvdAlpha = 0.5;
// "none", "svd", "aware", "asvd", "fisher".
const char* lowrank_method_name(LowRankMethod m);
bool parse_lowrank_method(const std::string& s, LowRankMethod* out);

struct RankOverride {
  std::string pattern;  // glob (fnmatch) on the base name, e.g. "blocks.*.att.key"
  int64_t rank = 0;     // > 0: this rank (capped at min(in, out)); 0: leave the matrix dense
};

struct LowRankOptions {
  // Default: kAware (needs calibration statistics).
  LowRankMethod method = LowRankMethod::kAware;
  // r = ceil(min(in, out) / rank_factor), rounded up to a multiple of `rank_multiple`, at most
  // min(in, out). Default: 8 (the paper's svdfac); 1 gives full rank (lossless up to rounding).
  double rank_factor = 8.0;
  // Default: 8.
  int64_t rank_multiple = 8;
  // > 0: instead of rank_factor, the smallest r (rounded as above) whose singular values keep
  // this fraction of the energy Σ s_i² (of W for svd, of W·L for aware / asvd, of Loᵀ·W·L for
  // fisher). Default: 0 (off).
  double energy = 0.0;
  // Spread the bytes of the uniform ranks (rank_factor) over the matrices by their spectra
  // instead: the same total Σ r·(in + out), ranks chosen greedily where the next `rank_multiple`
  // singular values remove the most relative error (Σ s_j² / Σ s², of W for svd, of W·L for
  // aware / asvd) per byte. Not with energy. Default: false (every matrix the uniform rank).
  bool allocate = false;
  // Per-matrix ranks, first match wins; they take precedence over rank_factor / energy.
  std::vector<RankOverride> overrides;
  // Which projections: suffixes after "blocks.N." ("att.key", "ffn.receptance", ...) or full
  // base names ("head"). Empty: default_lowrank_targets(version).
  std::vector<std::string> targets;
  // Ridge added to the Gram matrix, relative to its mean diagonal. Default: 1e-3.
  double ridge = 1e-3;
  // kAsvd's exponent α on the input rms (0: plain SVD, 1: full scaling). Default: 0.5.
  double asvd_alpha = kAsvdAlpha;
  // kFisher: the output-gradient statistics (not owned; must outlive apply_lowrank).
  const GradStats* grad_stats = nullptr;
  // Storage type of the factors (f32 or f16; INT8 comes later as its own step). Default: f32.
  DType factor_type = DType::kF32;
};

// The paper's choice per version: v5/v6 att receptance, key, value, gate + ffn receptance;
// v7 att receptance, key, value; v4 att receptance, key, value + ffn receptance.
std::vector<std::string> default_lowrank_targets(RwkvVersion v);

// The base names ("blocks.3.att.key") of the dense matrices `opt` selects in `mf`, in file order.
std::vector<std::string> lowrank_matrices(const ModelFile& mf, const LowRankOptions& opt);

// The rank `opt` gives a matrix of the given shape and base name: > 0 that rank; 0 = leave it
// dense (an override said so); -1 = chosen by energy after the SVD (opt.energy > 0).
int64_t planned_rank(const LowRankOptions& opt, const std::string& name, int64_t out, int64_t in);

// One matrix for allocate_ranks: its shape and the singular values (descending) of the matrix
// its method truncates (W, W·L or W·diag(s)).
struct Spectrum {
  int64_t out = 0, in = 0;
  std::vector<double> s;
};
// Ranks (multiples of `multiple`, each at least `multiple` and at most min(in, out), or its
// spectrum's length) for the matrices of `spectra`, using at most `budget` factor elements
// Σ r·(in + out): every matrix starts at `multiple`, then the step of `multiple` ranks with the
// largest relative energy gain per element is taken while it fits. Greedy is optimal here since
// each matrix's gains shrink with rank. Errors: InvalidArgument when the minimum ranks alone do
// not fit.
Result<std::vector<int64_t>> allocate_ranks(const std::vector<Spectrum>& spectra, int64_t budget, int64_t multiple);

// Accumulates G = Σ x xᵀ (double) of the inputs of the named projections; ignores others.
class GramProbe : public Probe {
 public:
  explicit GramProbe(const std::vector<std::string>& names);
  void on_linear(const std::string& name, const float* x, int64_t T, int64_t in, const float* y,
                 int64_t out) override;
  // in x in, row-major, symmetric; null when the projection was never seen.
  const std::vector<double>* gram(const std::string& name, int64_t* in = nullptr, int64_t* rows = nullptr) const;

 private:
  struct Acc {
    int64_t in = 0;
    int64_t rows = 0;
    std::vector<double> g;
  };
  std::map<std::string, Acc> acc_;
};

// Whether the method needs calibration statistics (aware, asvd, fisher).
bool lowrank_needs_calibration(LowRankMethod m);

// One factorisation. W row-major [out x in]; gram (in x in) is required for kAware and kAsvd
// (only its diagonal for kAsvd), ignored for kSvd; kFisher also needs out_gram (out x out). rank > 0: that rank; rank == 0 with energy > 0: chosen by energy (rounded up to
// `rank_multiple`). On success a = [r x in], b = [out x r] (row-major), *rank_out = r and
// *energy_kept = fraction of Σ s_i² kept. Errors: InvalidArgument (shapes, missing gram).
struct Factors {
  std::vector<float> a, b;
  int64_t rank = 0;
  double energy_kept = 1.0;
};
Result<Factors> factorize(const float* w, int64_t out, int64_t in, LowRankMethod method, const double* gram,
                          int64_t rank, double energy, int64_t rank_multiple, double ridge,
                          double asvd_alpha = kAsvdAlpha, const double* out_gram = nullptr);

// The singular values (descending) of the matrix `method` truncates: W (svd), W·L (aware) or
// W·diag(s) (asvd). Same arguments and errors as factorize.
Result<std::vector<double>> singular_values(const float* w, int64_t out, int64_t in, LowRankMethod method,
                                            const double* gram, double ridge, double asvd_alpha = kAsvdAlpha,
                                            const double* out_gram = nullptr);

// ||(W - W') X||_F / ||W X||_F given G = XᵀX (in x in): sqrt(tr(ΔW G ΔWᵀ) / tr(W G Wᵀ)).
// W' = b·a. Without a gram (null) the plain Frobenius ratio ||W - W'||_F / ||W||_F.
double relative_output_error(const float* w, const Factors& f, int64_t out, int64_t in, const double* gram);

struct LowRankReport {
  std::string name;
  int64_t out = 0, in = 0, rank = 0;
  double energy_kept = 1.0;
  double calib_error = -1.0;    // relative output error on the calibration inputs (-1: no stats)
  double heldout_error = -1.0;  // on held-out inputs (-1: not measured)
  size_t bytes_before = 0, bytes_after = 0;
};

// (name, done, total) after each matrix.
using LowRankProgress = std::function<void(const std::string& name, int64_t done, int64_t total)>;

// Options that cannot work together, found before any calibration: factors not f32/f16,
// allocate with energy, fisher without grad_stats. InvalidArgument naming the option.
Status check_lowrank_options(const LowRankOptions& opt);

// Replaces each selected matrix `P.weight` of `mf` by `P.lr_a`, `P.lr_b` (in factor_type), in
// place in the tensor order. `calib` is required for kAware; `heldout` (optional) gives each
// report's heldout_error. Does nothing for kNone. Errors: InvalidArgument naming the matrix
// (no statistics for it, bad override) or the factorisation's.
Status apply_lowrank(ModelFile& mf, const LowRankOptions& opt, const GramProbe* calib, const GramProbe* heldout,
                     std::vector<LowRankReport>* report, const LowRankProgress& progress);

}  // namespace rwkv::compress
