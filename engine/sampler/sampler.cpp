#include "engine/sampler/sampler.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

namespace rwkv {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kMaxFloat = std::numeric_limits<float>::max();

// top_p bisects (with nth_element) until the cut is known to lie within this many candidates,
// then sorts only up to there.
constexpr size_t kTopPSortedHead = 64;

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

// The uniform double in [0, 1) built from the top 53 bits of one 64-bit output. Written out
// here because std::uniform_real_distribution's output is implementation-defined.
double next_uniform(std::mt19937_64& rng) {
  const uint64_t x = rng();
  return static_cast<double>(x >> 11) * 0x1.0p-53;
}

// exp(x) for x in [kExpMin, 0], within 1 ulp of std::exp, in straight-line code that the
// compiler vectorises: weighing a 65k vocabulary with std::exp took about as long as a
// sequence's share of a batched forward pass. x = k ln2 + r with |r| <= ln2 / 2, e^r by its
// Taylor polynomial to degree 13 (remainder below 2^-60 there), 2^k from the exponent bits.
// Adding 1.5 * 2^52 + 1023 rounds x log2(e) to the integer k and leaves k + 1023 (1 .. 1023
// here) in the low mantissa bits, which a left shift by 52 moves into the exponent field.
constexpr double kExpMin = -708.0;  // 2^k stays a normal double
inline double exp_nonpos(double x) {
  constexpr double kLog2e = 1.4426950408889634;
  constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;
  constexpr double kShifter = 0x1.8p52 + 1023.0;
  const double t = x * kLog2e + kShifter;
  const double k = t - kShifter;
  const double r = (x - k * kLn2Hi) - k * kLn2Lo;
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  uint64_t bits;
  std::memcpy(&bits, &t, sizeof bits);
  const uint64_t scale_bits = bits << 52;
  double scale;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  return p * scale;
}

// e^x for any x <= 0 (-inf gives 0).
inline double weight_exp(double x) { return x >= kExpMin ? exp_nonpos(x) : std::exp(x); }

// The vectorised passes over the vocabulary are also compiled for AVX2+FMA and AVX-512 and
// picked at load time from the CPU (GCC's function multi-versioning; other compilers: baseline).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RWKV_EDGE_SAMPLER_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define RWKV_EDGE_SAMPLER_CLONES
#endif

// The lowest i with x[i] == v, or -1. Blocks of 64 are tested with a branch-free OR of the
// comparisons (which vectorises) and only the block holding the match is scanned one by one:
// the plain early-exit loop stays scalar and cost about a tenth of an untruncated draw.
RWKV_EDGE_SAMPLER_CLONES
int32_t first_index_of(const float* x, int32_t n, float v) {
  constexpr int32_t kBlock = 64;
  int32_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    uint32_t hit = 0;
    for (int32_t j = 0; j < kBlock; ++j) hit |= static_cast<uint32_t>(x[i + j] == v);
    if (hit != 0) break;
  }
  for (; i < n; ++i) {
    if (x[i] == v) return i;
  }
  return -1;
}

// w[i] = weight_exp((logits[i] - max_logit) * inv_t) for i < n: the bulk passes vectorise (no
// branches), the rare entries below kExpMin (-inf logits among them) are redone with std::exp.
// On x86-64 the bulk pass is also compiled for AVX2+FMA and AVX-512 (4 and 8 doubles per
// instruction instead of SSE2's 2) and picked at load time from the CPU; FMA contraction there
// may change the last bit of a weight, within exp_nonpos's 1 ulp. Returns whether any argument
// fell below kExpMin (an integer OR, so the check vectorises with the rest; as a separate
// scalar pass it cost a fifth of an untruncated draw).
RWKV_EDGE_SAMPLER_CLONES
bool weigh_bulk(const float* logits, int32_t n, double max_logit, double inv_t, double* w) {
  uint32_t tiny = 0;
  for (int32_t i = 0; i < n; ++i) {
    const double x = (static_cast<double>(logits[i]) - max_logit) * inv_t;
    tiny |= static_cast<uint32_t>(x < kExpMin);
    w[i] = exp_nonpos(x);
  }
  return tiny != 0;
}

void weigh_all(const float* logits, int32_t n, double max_logit, double inv_t, double* w) {
  // Garbage below kExpMin, redone below.
  if (!weigh_bulk(logits, n, max_logit, inv_t, w)) return;
  for (int32_t i = 0; i < n; ++i) {
    const double x = (static_cast<double>(logits[i]) - max_logit) * inv_t;
    if (x < kExpMin) w[i] = std::exp(x);
  }
}

// NaN -> -inf and +inf -> the largest float in place; returns the largest value (-inf if all
// are). Branch-free (the two replacements as integer selects on the bits, eight running
// maxima), so it vectorises.
inline float sanitize_one(float x) {
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  b = (b & 0x7fffffffu) > 0x7f800000u ? 0xff800000u : b;  // NaN -> -inf
  b = b == 0x7f800000u ? 0x7f7fffffu : b;                  // +inf -> largest float
  std::memcpy(&x, &b, sizeof b);
  return x;
}

RWKV_EDGE_SAMPLER_CLONES
float sanitize_and_max(float* logits, int32_t n) {
  for (int32_t i = 0; i < n; ++i) logits[i] = sanitize_one(logits[i]);
  constexpr int kLanes = 16;
  float m[kLanes];
  for (float& x : m) x = -kInf;
  int32_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) m[j] = logits[i + j] > m[j] ? logits[i + j] : m[j];
  }
  for (; i < n; ++i) m[0] = logits[i] > m[0] ? logits[i] : m[0];
  float best = m[0];
  for (int j = 1; j < kLanes; ++j) best = m[j] > best ? m[j] : best;
  return best;
}

}  // namespace

Status validate(const SamplerParams& p, int32_t n_vocab) {
  if (n_vocab <= 0) {
    return Status::InvalidArgument("n_vocab must be > 0, got " + std::to_string(n_vocab));
  }
  // Each check is written so that NaN fails it.
  if (!(std::isfinite(p.temperature) && p.temperature >= 0.0f)) {
    return Status::InvalidArgument("temperature must be a finite number >= 0, got " +
                                   fmt(p.temperature));
  }
  if (p.top_k < 0) {
    return Status::InvalidArgument("top_k must be >= 0 (0 = off), got " + std::to_string(p.top_k));
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return Status::InvalidArgument("top_p must be in (0, 1], got " + fmt(p.top_p));
  }
  if (!(p.min_p >= 0.0f && p.min_p < 1.0f)) {
    return Status::InvalidArgument("min_p must be in [0, 1), got " + fmt(p.min_p));
  }
  if (!(p.presence_penalty >= -2.0f && p.presence_penalty <= 2.0f)) {
    return Status::InvalidArgument("presence_penalty must be in [-2, 2], got " +
                                   fmt(p.presence_penalty));
  }
  if (!(p.frequency_penalty >= -2.0f && p.frequency_penalty <= 2.0f)) {
    return Status::InvalidArgument("frequency_penalty must be in [-2, 2], got " +
                                   fmt(p.frequency_penalty));
  }
  if (!(p.penalty_decay >= 0.0f && p.penalty_decay <= 1.0f)) {
    return Status::InvalidArgument("penalty_decay must be in [0, 1], got " + fmt(p.penalty_decay));
  }
  for (const auto& [id, bias] : p.logit_bias) {
    if (id < 0 || id >= n_vocab) {
      return Status::InvalidArgument("logit_bias token id must be in [0, " +
                                     std::to_string(n_vocab) + "), got " + std::to_string(id));
    }
    if (std::isnan(bias) || bias == kInf) {
      return Status::InvalidArgument("logit_bias for token " + std::to_string(id) +
                                     " must be a number below +inf, got " + fmt(bias));
    }
  }
  return Status::OK();
}

Result<Sampler> Sampler::create(SamplerParams p, int32_t n_vocab) {
  Status s = validate(p, n_vocab);
  if (!s.ok()) return s;
  return Sampler(std::move(p), n_vocab);
}

Sampler::Sampler(SamplerParams p, int32_t n_vocab)
    : params_(std::move(p)), n_vocab_(n_vocab), rng_(params_.seed) {
  assert(validate(params_, n_vocab_).ok());
  // Release-build guard for the REQUIRES: an out-of-range id would write out of bounds.
  auto& bias = params_.logit_bias;
  bias.erase(std::remove_if(bias.begin(), bias.end(),
                            [n_vocab](const std::pair<int32_t, float>& b) {
                              return b.first < 0 || b.first >= n_vocab;
                            }),
             bias.end());
}

void Sampler::accept(int32_t id) {
  assert(id >= 0 && id < n_vocab_);
  if (id < 0 || id >= n_vocab_) return;
  // One pass decays every count and finds id; the table holds only accepted tokens, so this is
  // O(distinct tokens so far) rather than O(n_vocab).
  bool found = false;
  for (auto& [tok, count] : occurrences_) {
    count *= params_.penalty_decay;
    if (tok == id) {
      count += 1.0f;
      found = true;
    }
  }
  if (!found) occurrences_.emplace_back(id, 1.0f);
}

void Sampler::reset() {
  occurrences_.clear();
  rng_.seed(params_.seed);
}

// A total order, so that the kept set and the order of the draw do not depend on the standard
// library's sort algorithms.
bool Sampler::higher(const Candidate& a, const Candidate& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

float Sampler::occurrence(int32_t id) const {
  for (const auto& [tok, count] : occurrences_) {
    if (tok == id) return count;
  }
  return 0.0f;
}

int32_t Sampler::prepare(float* logits, Scratch* s, bool lazy_untruncated) const {
  const int32_t n = n_vocab_;
  s->raw.clear();
  s->all_tokens = false;

  // 1. Logit bias, then penalties. Both are sparse; each touched entry's previous value is
  // kept so the all -inf fallback can see the raw logits again.
  for (const auto& [id, bias] : params_.logit_bias) {
    s->raw.emplace_back(id, logits[id]);
    logits[id] = bias <= kLogitBiasBan ? -kInf : logits[id] + bias;
  }
  if (params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f) {
    for (const auto& [id, count] : occurrences_) {
      s->raw.emplace_back(id, logits[id]);
      logits[id] -= params_.presence_penalty + params_.frequency_penalty * count;
    }
  }

  // 2. Sanitise (NaN -> -inf, +inf -> largest float) and find the argmax, lowest id on ties.
  const float best_logit = sanitize_and_max(logits, n);
  const int32_t best = best_logit > -kInf ? first_index_of(logits, n, best_logit) : -1;

  if (best < 0) {
    // Every logit is -inf: nothing is admissible. Undo bias and penalties (newest record first,
    // so the oldest, i.e. raw, value of a twice-touched id wins) and return the raw argmax.
    for (auto it = s->raw.rbegin(); it != s->raw.rend(); ++it) logits[it->first] = it->second;
    int32_t raw_best = 0;
    float raw_best_logit = -kInf;
    for (int32_t i = 0; i < n; ++i) {
      if (logits[i] > raw_best_logit) {  // false for NaN
        raw_best_logit = logits[i];
        raw_best = i;
      }
    }
    return raw_best;
  }
  if (params_.temperature == 0.0f) return best;

  // weight = exp((logit - max) / T): the top token weighs exactly 1 and nothing overflows.
  const double inv_t = 1.0 / static_cast<double>(params_.temperature);
  const double max_logit = best_logit;
  const auto weight_of = [&](float logit) {
    return weight_exp((static_cast<double>(logit) - max_logit) * inv_t);
  };

  std::vector<Candidate>& c = s->cands;
  c.clear();
  bool sorted = false;  // whether c is in `higher` order
  double z = 0.0;       // total weight of the top-k survivors: the top-p denominator
  size_t n_finite = 0;  // how many tokens that total covers

  // 3. Top-k, on logits (temperature does not change the order), with a bounded heap whose
  // front is the worst of the best k seen so far: O(n_vocab) plus O(k log k), no full sort.
  const bool use_top_k = params_.top_k > 0 && params_.top_k < n;
  if (use_top_k) {
    const size_t k = static_cast<size_t>(params_.top_k);
    c.reserve(k);
    for (int32_t i = 0; i < n; ++i) {
      if (!(logits[i] > -kInf)) continue;
      const Candidate x{i, logits[i], 0.0};
      if (c.size() < k) {
        c.push_back(x);
        std::push_heap(c.begin(), c.end(), higher);
      } else if (higher(x, c.front())) {
        std::pop_heap(c.begin(), c.end(), higher);
        c.back() = x;
        std::push_heap(c.begin(), c.end(), higher);
      }
    }
    std::sort_heap(c.begin(), c.end(), higher);  // best first
    sorted = true;
    for (Candidate& x : c) {
      x.weight = weight_of(x.logit);
      z += x.weight;
    }
    n_finite = c.size();
  } else {
    // Every token may survive: weigh them all in one vectorised pass.
    s->weights.resize(static_cast<size_t>(n));
    weigh_all(logits, n, max_logit, inv_t, s->weights.data());
    if (params_.top_p < 1.0f) {
      for (int32_t i = 0; i < n; ++i) {
        if (!(logits[i] > -kInf)) continue;
        z += s->weights[static_cast<size_t>(i)];
        ++n_finite;
      }
    }
  }

  // 4. Drop early what cannot survive, so later steps (and the draw) see few candidates:
  //  - weight 0 (underflow): never drawn;
  //  - weight < min_p: weight is p / p_max, and min_p comes after top-p, which does not change
  //    that ratio. Both conditions keep a prefix of the sorted order, so top-p's walk below
  //    (which sums against the full Z) still finds the same cut, and min-p after top-p means
  //    keeping the shorter of the two prefixes;
  //  - under top-p, weight <= (1 - top_p) * Z / n_finite: the tokens from the cut token on
  //    weigh more than (1 - top_p) * Z together and none outweighs it, so the cut token (and
  //    every kept one) weighs more than that. Halved to stay clear of rounding.
  const double tail_bound =
      params_.top_p < 1.0f ? 0.5 * (1.0 - static_cast<double>(params_.top_p)) * z / n_finite : 0.0;
  const double min_weight = params_.min_p;
  const auto keep = [&](double w) { return w > 0.0 && w >= min_weight && w > tail_bound; };
  if (use_top_k) {
    c.erase(std::remove_if(c.begin(), c.end(), [&](const Candidate& x) { return !keep(x.weight); }),
            c.end());
  } else if (lazy_untruncated && params_.top_p >= 1.0f && min_weight <= 0.0) {
    // keep() is w > 0 and nothing below reorders or cuts: the draw walks s->weights.
    s->all_tokens = true;
    return -1;
  } else {
    const double* w = s->weights.data();
    for (int32_t i = 0; i < n; ++i) {
      if (logits[i] > -kInf && keep(w[i])) c.push_back({i, logits[i], w[i]});
    }
  }

  // 5. Top-p: the kept set is the shortest prefix of the sorted order whose weight reaches
  // top_p * Z. Rather than sorting every candidate, first narrow down where the cut lies by
  // bisecting with nth_element (expected O(n) in all), then sort only the head and walk it;
  // the walk decides, so the cut is the same as after a full sort.
  if (params_.top_p < 1.0f) {
    const double target = static_cast<double>(params_.top_p) * z;
    size_t sorted_end = sorted ? c.size() : 0;
    if (!sorted) {
      // Invariant: the top `lo` weigh less than target (cum), the top `hi` at least target.
      size_t lo = 0, hi = c.size();
      double cum = 0.0;
      while (hi - lo > kTopPSortedHead) {
        const size_t mid = lo + (hi - lo) / 2;
        std::nth_element(c.begin() + lo, c.begin() + mid, c.begin() + hi, higher);
        double mass = 0.0;
        for (size_t i = lo; i < mid; ++i) mass += c[i].weight;
        if (cum + mass >= target) {
          hi = mid;
        } else {
          cum += mass;
          lo = mid;
        }
      }
      std::sort(c.begin(), c.begin() + hi, higher);
      sorted_end = hi;
    }
    double cum = 0.0;
    size_t cut = c.size();
    for (size_t i = 0; i < c.size(); ++i) {
      // Only reached if rounding in the bisection's sums put the cut just past `hi`.
      if (i == sorted_end) {
        const size_t end = std::min(c.size(), sorted_end + kTopPSortedHead);
        std::partial_sort(c.begin() + sorted_end, c.begin() + end, c.end(), higher);
        sorted_end = end;
      }
      cum += c[i].weight;
      if (cum >= target) {
        cut = i + 1;
        break;
      }
    }
    c.resize(cut);
  }
  // The top token always survives valid parameters (its weight is 1); this only guards release
  // builds run with parameters that failed validate() (min_p >= 1, NaN temperature).
  if (c.empty()) return best;
  return -1;
}

int32_t Sampler::sample(float* logits) {
  assert(logits != nullptr);
  if (n_vocab_ <= 0) return 0;
  const int32_t forced = prepare(logits, &scratch_, /*lazy_untruncated=*/true);
  if (params_.temperature == 0.0f) return forced;

  // Exactly one RNG output per non-greedy call, even when the outcome is already decided, so
  // the stream position depends only on the number of calls.
  const double u = next_uniform(rng_);
  if (forced >= 0) return forced;

  if (scratch_.all_tokens) {
    // The same walk over every token in id order (zero weights never win and add nothing),
    // by blocks: a block's total is summed in independent lanes, so the 65k-long chain of
    // dependent adds becomes one per block, and only the block where the cumulative weight
    // passes the target is walked token by token.
    const double* w = scratch_.weights.data();
    const int32_t n = n_vocab_;
    constexpr int32_t kBlock = 256;
    std::vector<double>& sums = scratch_.block_sums;
    sums.assign((size_t)((n + kBlock - 1) / kBlock), 0.0);
    double total = 0.0;
    for (int32_t b = 0; b * kBlock < n; ++b) {
      const int32_t end = std::min(n, (b + 1) * kBlock);
      double lane[4] = {0.0, 0.0, 0.0, 0.0};
      int32_t i = b * kBlock;
      for (; i + 4 <= end; i += 4) {
        for (int j = 0; j < 4; ++j) lane[j] += w[i + j];
      }
      for (; i < end; ++i) lane[0] += w[i];
      sums[(size_t)b] = (lane[0] + lane[1]) + (lane[2] + lane[3]);
      total += sums[(size_t)b];
    }
    const double target = u * total;
    double cum = 0.0;
    for (int32_t b = 0; b * kBlock < n; ++b) {
      if (!(target < cum + sums[(size_t)b])) {
        cum += sums[(size_t)b];
        continue;
      }
      const int32_t end = std::min(n, (b + 1) * kBlock);
      for (int32_t i = b * kBlock; i < end; ++i) {
        if (!(w[i] > 0.0)) continue;
        cum += w[i];
        if (target < cum) return i;
      }
      // Rounding put the target past this block's last token by a hair: keep walking.
    }
    // Only reachable through rounding in the sums: the last token with weight owns the sliver.
    for (int32_t i = n - 1; i >= 0; --i) {
      if (w[i] > 0.0) return i;
    }
    return forced;  // unreachable: the top token weighs 1
  }

  const std::vector<Candidate>& c = scratch_.cands;
  double total = 0.0;
  for (const Candidate& cand : c) total += cand.weight;
  const double target = u * total;
  double cum = 0.0;
  for (const Candidate& cand : c) {
    cum += cand.weight;
    if (target < cum) return cand.id;
  }
  // Only reachable through rounding in the sums: the last candidate owns the top sliver.
  return c.back().id;
}

std::vector<TokenProb> Sampler::probabilities(const float* logits) const {
  if (n_vocab_ <= 0) return {};
  std::vector<float> copy(logits, logits + n_vocab_);
  Scratch s;
  const int32_t forced = prepare(copy.data(), &s);
  if (forced >= 0) return {{forced, 1.0}};

  std::sort(s.cands.begin(), s.cands.end(), higher);
  double total = 0.0;
  for (const Candidate& cand : s.cands) total += cand.weight;
  std::vector<TokenProb> out;
  out.reserve(s.cands.size());
  for (const Candidate& cand : s.cands) out.push_back({cand.id, cand.weight / total});
  return out;
}

}  // namespace rwkv
