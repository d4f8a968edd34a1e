#include "engine/compress/calib.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "engine/tokenizer/tokenizer.h"

namespace rwkv::compress {

Result<std::vector<int32_t>> calib_tokens(const Model& model, const std::string& path, int64_t max_tokens) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(path + ": cannot open the calibration text");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::IOError(path + ": read failed");
  const std::string text = ss.str();
  Result<std::unique_ptr<Tokenizer>> tok = make_tokenizer(model.file().tokenizer);
  if (!tok.ok()) {
    return Status::InvalidArgument(path + ": cannot tokenize the calibration text: " + tok.status().message());
  }
  std::vector<int32_t> ids = tok.value()->encode(text);
  if (max_tokens > 0 && (int64_t)ids.size() > max_tokens) ids.resize((size_t)max_tokens);
  if (ids.empty()) return Status::InvalidArgument(path + ": the calibration text gives no tokens");
  return ids;
}

namespace {

// Removes the probe on every exit path.
struct ProbeGuard {
  const Model& m;
  ProbeGuard(const Model& model, Probe* p) : m(model) { m.set_probe(p); }
  ~ProbeGuard() { m.set_probe(nullptr); }
};

}  // namespace

Status run_calibration(const Model& model, const std::vector<int32_t>& tokens, Probe* probe,
                       const CalibProgress& progress, const CalibOptions& opt) {
  State st = model.new_state();
  const int64_t n = (int64_t)tokens.size();
  const int64_t chunk = std::max<int64_t>(1, opt.chunk);
  std::vector<float> logits;
  if (opt.head) logits.resize((size_t)(chunk * model.hparams().n_vocab));
  ProbeGuard guard(model, probe);
  for (int64_t done = 0; done < n;) {
    const int64_t take = std::min(chunk, n - done);
    Segment seg;
    seg.state = &st;
    seg.tokens = tokens.data() + done;
    seg.n_tokens = take;
    seg.logits_mode = opt.head ? LogitsMode::kAll : LogitsMode::kNone;
    seg.logits = opt.head ? logits.data() : nullptr;
    Status s = model.forward(&seg, 1);
    if (!s.ok()) return s;
    done += take;
    if (progress) progress(done, n);
  }
  return Status::OK();
}

}  // namespace rwkv::compress
