// Calibration: run a model over text with a Probe installed, so compression techniques can
// collect activation statistics of every matrix product (issue 6).
//
//   Result<std::vector<int32_t>> toks = calib_tokens(*model, "train.txt", 16384);
//   MyProbe probe;                                     // implements rwkv::Probe
//   Status st = run_calibration(*model, toks.value(), &probe, progress);
//
// Thread-safety: run_calibration installs the probe on the model for its duration
// (Model::set_probe), so no other thread may run forward() on the same model meanwhile.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/common/status.h"
#include "engine/model.h"

namespace rwkv::compress {

// Called with (tokens done, tokens total) after every chunk.
using CalibProgress = std::function<void(int64_t done, int64_t total)>;

// Tokenizes the text file `path` with the model's own tokenizer and keeps the first
// `max_tokens` tokens (0 = all). Errors: NotFound / IOError for the file, InvalidArgument when the
// model has no tokenizer or the text gives no tokens.
Result<std::vector<int32_t>> calib_tokens(const Model& model, const std::string& path, int64_t max_tokens);

struct CalibOptions {
  // Tokens per forward pass. Default: 128.
  int64_t chunk = 128;
  // Ask for logits of every row, so the head's product reaches the probe too. Default: true.
  bool head = true;
};

// Feeds `tokens` as one sequence from a fresh state, in chunks, with `probe` installed; the
// probe sees every matrix product of every chunk. Removes the probe before returning.
// Errors: those of Model::forward (e.g. a token id out of range).
Status run_calibration(const Model& model, const std::vector<int32_t>& tokens, Probe* probe,
                       const CalibProgress& progress = nullptr, const CalibOptions& opt = {});

}  // namespace rwkv::compress
