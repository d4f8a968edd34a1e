// Sampler: turns one step's logits into the next token id.
//
//   SamplerParams sp;
//   sp.temperature = 0.8f;
//   sp.top_p = 0.9f;
//   sp.seed = request_seed;
//   Result<Sampler> r = Sampler::create(sp, n_vocab);
//   if (!r.ok()) return r.status();          // InvalidArgument naming the field
//   Sampler& sampler = r.value();
//   for (;;) {
//     float* logits = ...;                     // n_vocab floats from the model
//     int32_t id = sampler.sample(logits);     // may overwrite logits
//     sampler.accept(id);                      // feeds the presence/frequency penalties
//     ...
//   }
//
// The chain, in order (see Sampler::sample):
//   logit bias -> presence/frequency penalties -> [temperature == 0: argmax]
//   -> temperature -> top-k -> top-p -> min-p -> one draw from the seeded RNG.
// Truncation is thus decided on the tempered distribution (as in HF transformers). ChatRWKV and
// llama-server apply temperature after truncation, so the same top_p keeps a different set
// there whenever temperature != 1.
//
// Reproducibility: draws come from std::mt19937_64 seeded with `seed` (its output sequence is
// fixed by the C++ standard); the uniform is u = (x >> 11) * 2^-53 in [0, 1), computed here
// rather than by std::uniform_real_distribution, whose output is implementation-defined. Every
// sample() call with temperature > 0 consumes exactly one 64-bit output, whatever the
// truncation settings; greedy calls consume none. The draw walks the kept tokens in id order,
// or in (logit descending, id ascending) order when top-k or top-p is active, and returns the
// first whose running sum of weights exceeds u * (total weight). Remaining platform
// dependence: std::exp may differ in the last bit between C libraries, which can only matter
// when a uniform falls within rounding error of a cumulative-probability boundary.
#pragma once

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "engine/common/status.h"

namespace rwkv {

// A logit_bias value at or below this bans the token outright (its logit becomes -inf), so a
// banned token is never chosen even when its raw logit is huge or every other token is banned
// too (see Sampler::sample for what happens then). OpenAI documents -100 as "ban".
constexpr float kLogitBiasBan = -100.0f;

struct SamplerParams {
  // Divides the logits before the softmax; higher flattens, lower sharpens. 0 means greedy:
  // the argmax after bias and penalties, ties going to the lowest id; top_k, top_p, min_p and
  // the RNG are then unused.
  // Default: 1.0. Valid: finite and >= 0.
  float temperature = 1.0f;

  // Keeps only the top_k highest-logit tokens (ties broken towards the lower id).
  // Default: 0 (off). Valid: >= 0; values >= n_vocab are the same as off.
  int32_t top_k = 0;

  // Nucleus sampling: keeps the smallest set of most-probable tokens whose probability (after
  // temperature and top-k) sums to at least top_p. The most probable token is always kept.
  // Default: 1.0 (off). Valid: (0, 1].
  float top_p = 1.0f;

  // Drops tokens whose probability is below min_p times the probability of the most probable
  // token (after temperature). Applied after top_p; the ratio is unaffected by renormalising.
  // Default: 0.0 (off). Valid: [0, 1).
  float min_p = 0.0f;

  // RWKV-runner convention (ChatRWKV, RWKV-Runner, Ai00): for every token t that has been
  // accept()ed since construction or reset(),
  //   logit[t] -= presence_penalty + frequency_penalty * occurrence[t]
  // where occurrence[t] is a decayed count (see penalty_decay). A token stays "present" for the
  // rest of the stream even once its count has decayed towards zero, as in ChatRWKV.
  // Negative values encourage repetition.
  // Default: 0.0. Valid: [-2, 2] (the OpenAI wire range).
  float presence_penalty = 0.0f;

  // See presence_penalty.
  // Default: 0.0. Valid: [-2, 2].
  float frequency_penalty = 0.0f;

  // Each accept() multiplies every occurrence count by this factor before adding 1 for the
  // accepted token (ChatRWKV's alpha_decay). 1 = plain counts; 0.996 halves a count after
  // ~173 tokens.
  // Default: 0.996. Valid: [0, 1].
  float penalty_decay = 0.996f;

  // (token id, bias) pairs added to the logits before the penalties. A bias <= kLogitBiasBan
  // (-100), including -inf, bans the token. Repeated ids accumulate.
  // Default: empty. Valid: ids in [0, n_vocab); bias not NaN and not +inf.
  std::vector<std::pair<int32_t, float>> logit_bias;

  // Seeds the RNG; the same seed, logits and accept() calls give the same tokens on every
  // platform (see the note at the top of this file).
  // Default: 0. Valid: any.
  uint64_t seed = 0;
};

// Returns OK, or InvalidArgument whose message names the first bad field and its value,
// e.g. "top_p must be in (0, 1], got 1.5". NaN is rejected everywhere. Also rejects
// n_vocab <= 0.
Status validate(const SamplerParams& p, int32_t n_vocab);

// One probability of the distribution a draw is taken from (see Sampler::probabilities).
struct TokenProb {
  int32_t id;
  double p;
};

// Holds the parameters, the sparse occurrence table and the RNG of one generation stream.
// Not thread-safe: use one Sampler per stream (a Sampler may move between threads between
// calls). Copyable: a copy continues the same stream independently. Keeps a scratch buffer
// between calls that grows to 16 bytes per surviving candidate (1 MiB for 65536 tokens
// without truncation).
class Sampler {
 public:
  // Validates, then constructs. Errors: as validate().
  static Result<Sampler> create(SamplerParams p, int32_t n_vocab);

  // REQUIRES: validate(p, n_vocab).ok(). Asserted in debug builds; in release builds
  // logit_bias entries with out-of-range ids are dropped so that they cannot write out of
  // bounds, and other out-of-range values give unspecified (but memory-safe) sampling.
  explicit Sampler(SamplerParams p, int32_t n_vocab);

  // Picks the next token from `logits` (n_vocab floats; overwritten with scratch values).
  // Order: logit bias, penalties from the occurrence table, then argmax if temperature == 0;
  // else temperature, top-k, top-p, min-p and one draw. Does not record the token: call
  // accept() for that.
  //
  // Non-finite logits: NaN is treated as -inf (never chosen); +inf as the largest float, so
  // several +inf tokens share the probability equally. If every logit is -inf after bias and
  // penalties (all banned, or all NaN), returns the argmax of the raw logits ignoring NaN (ties
  // to the lowest id), which is 0 when no raw logit is a number; bans are then not honoured,
  // because there is no admissible token left to return.
  //
  // REQUIRES: logits != nullptr and holds n_vocab floats.
  int32_t sample(float* logits);

  // Records a token that was emitted: every occurrence count is multiplied by penalty_decay,
  // then id's count gets +1. Prompt tokens are not recorded unless the caller chooses to.
  // Cost: O(number of distinct tokens accepted so far).
  // REQUIRES: 0 <= id < n_vocab (asserted; ignored in release builds when violated).
  void accept(int32_t id);

  // Clears the occurrence table and reseeds the RNG with params().seed, so the stream
  // restarts exactly as after construction.
  void reset();

  // For tests and debugging: the distribution sample() would draw from for these logits
  // (after every filter, renormalised), most probable first, ties by lower id. Greedy and the
  // all -inf fallback give one entry with p = 1. Does not touch the RNG or the occurrences
  // and does not modify `logits`.
  // REQUIRES: as sample().
  std::vector<TokenProb> probabilities(const float* logits) const;

  // The decayed count of `id` (0 if never accepted since the last reset()).
  float occurrence(int32_t id) const;

  const SamplerParams& params() const { return params_; }
  int32_t n_vocab() const { return n_vocab_; }

 private:
  struct Candidate {
    int32_t id;
    float logit;
    double weight;  // exp((logit - max_logit) / temperature): the unnormalised probability
  };
  // Per-call buffers kept between calls so that sample() does not allocate in steady state.
  struct Scratch {
    std::vector<Candidate> cands;
    std::vector<std::pair<int32_t, float>> raw;  // logits as they were before bias/penalties
    std::vector<double> weights;                 // every token's weight, when all are needed
    // Set by prepare() when asked to skip the candidate list and nothing truncates: every
    // token with weight > 0 is a candidate, in id order, its weight in `weights`.
    bool all_tokens = false;
    std::vector<double> block_sums;  // sample()'s per-block totals of `weights`
  };

  // Logit descending, then id ascending.
  static bool higher(const Candidate& a, const Candidate& b);

  // Runs everything before the draw. Returns the chosen id when no draw decides it (greedy
  // or the all -inf fallback); otherwise returns -1 and leaves the surviving candidates, with
  // weights, in s->cands.
  // With lazy_untruncated, an untruncated distribution is left in s->weights only
  // (s->all_tokens set) instead of being copied into s->cands: the draw walks it directly.
  int32_t prepare(float* logits, Scratch* s, bool lazy_untruncated = false) const;

  // Constant after construction.
  SamplerParams params_;
  int32_t n_vocab_;

  // Stream state. occurrences_ holds only tokens that were accepted, in first-accept order.
  std::vector<std::pair<int32_t, float>> occurrences_;
  std::mt19937_64 rng_;
  Scratch scratch_;
};

}  // namespace rwkv
