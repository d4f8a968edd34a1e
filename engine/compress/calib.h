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

#include "engine/common/dtype.h"
#include "engine/common/status.h"
#include "engine/formats/model_file.h"
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

// Forwards every product to several probes (one per technique that calibrates), in order.
struct ProbeList : Probe {
  std::vector<Probe*> probes;
  void on_linear(const std::string& name, const float* x, int64_t T, int64_t in, const float* y,
                 int64_t out) override {
    for (Probe* p : probes) p->on_linear(name, x, T, in, y, out);
  }
};

// --- tensor helpers shared by the techniques ---------------------------------------------------

// The 2-D tensor `t` (ne {cols, rows}) as row-major f32, rows x cols. REQUIRES: a weight type.
std::vector<float> matrix_f32(const TensorRef& t);

// A new 2-D tensor `name` of `rows` x `cols` (ne {cols, rows}) from row-major f32 `w`, stored as
// `type` (f32, f16, q8_0 when cols % 32 == 0, i8r, or i1r: signs with a per-row scale) in a
// buffer of `storage`.
// Errors: InvalidArgument for another type or q8_0 with cols % 32 != 0.
Result<TensorRef> make_matrix(const std::string& name, const float* w, int64_t rows, int64_t cols, DType type,
                              BufferStorage& storage);

// Replaces tensor `old_name` of `mf` by `repl` (in its place, keeping the file's order); with an
// empty `old_name` or one that is absent, appends them. Keeps the name index in sync.
void replace_tensor(ModelFile& mf, const std::string& old_name, const std::vector<TensorRef>& repl);

// Bytes of all tensors whose name satisfies `pred`.
size_t tensor_bytes(const ModelFile& mf, const std::function<bool(const std::string&)>& pred);

}  // namespace rwkv::compress
