// Test helper: run tokens through a model as one sequence and keep every position's logits.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "engine/model.h"

namespace rwkv::test {

// Logits after every one of `tokens` (row t = after token t), from a fresh state.
inline std::vector<float> all_logits(const Model& m, const std::vector<int32_t>& tokens) {
  State st = m.new_state();
  std::vector<float> out(tokens.size() * (size_t)m.hparams().n_vocab);
  Segment seg;
  seg.state = &st;
  seg.tokens = tokens.data();
  seg.n_tokens = (int64_t)tokens.size();
  seg.logits_mode = LogitsMode::kAll;
  seg.logits = out.data();
  REQUIRE(m.forward(&seg, 1).ok());
  return out;
}

}  // namespace rwkv::test
