#include "engine/compress/calib.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>

#include "engine/common/fp16.h"
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
  // Tokenize a prefix that almost surely holds max_tokens tokens (tokens are rarely longer than
  // 16 bytes), so a large corpus is not tokenized in full; the whole text when it falls short.
  std::vector<int32_t> ids;
  if (max_tokens > 0 && (size_t)max_tokens * 16 < text.size()) {
    size_t cut = (size_t)max_tokens * 16;
    while (cut < text.size() && ((uint8_t)text[cut] & 0xC0) == 0x80) ++cut;  // not inside a UTF-8 sequence
    ids = tok.value()->encode(std::string_view(text).substr(0, cut));
  }
  if ((int64_t)ids.size() < max_tokens || max_tokens <= 0) ids = tok.value()->encode(text);
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

std::vector<float> matrix_f32(const TensorRef& t) {
  const int64_t cols = t.ne[0], rows = t.n_elements() / std::max<int64_t>(1, t.ne[0]);
  std::vector<float> w((size_t)(rows * cols));
  const size_t rb = dtype_row_bytes(t.type, cols);
  for (int64_t r = 0; r < rows; ++r) dequantize_row(t.type, t.data + (size_t)r * rb, w.data() + r * cols, cols);
  return w;
}

Result<TensorRef> make_matrix(const std::string& name, const float* w, int64_t rows, int64_t cols, DType type,
                              BufferStorage& storage) {
  const bool ok_type = type == DType::kF32 || type == DType::kF16 || type == DType::kQ8_0 || type == DType::kI8R ||
                       type == DType::kI1R;
  if (!ok_type) return Status::InvalidArgument(name + ": cannot store a matrix as " + dtype_name(type));
  if (type == DType::kQ8_0 && cols % kQK != 0) {
    return Status::InvalidArgument(name + ": q8_0 needs rows that are a multiple of 32, this one has " +
                                   std::to_string(cols));
  }
  TensorRef t;
  t.name = name;
  t.type = type;
  t.n_dims = 2;
  t.ne[0] = cols;
  t.ne[1] = rows;
  const size_t rb = dtype_row_bytes(type, cols);
  t.nbytes = rb * (size_t)rows;
  uint8_t* dst = storage.add(t.nbytes);
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = w + r * cols;
    uint8_t* row = dst + (size_t)r * rb;
    switch (type) {
      case DType::kF32: std::memcpy(row, src, (size_t)cols * sizeof(float)); break;
      case DType::kF16: {
        uint16_t* h = reinterpret_cast<uint16_t*>(row);
        for (int64_t c = 0; c < cols; ++c) h[c] = fp32_to_fp16(src[c]);
        break;
      }
      case DType::kQ8_0: quantize_row_q8_0(src, reinterpret_cast<BlockQ8_0*>(row), cols); break;
      case DType::kI8R: quantize_row_i8r(src, row, cols); break;
      case DType::kI1R: quantize_row_i1r(src, row, cols); break;
      default: break;
    }
  }
  t.data = dst;
  return t;
}

void replace_tensor(ModelFile& mf, const std::string& old_name, const std::vector<TensorRef>& repl) {
  std::vector<TensorRef> out;
  out.reserve(mf.tensors.size() + repl.size());
  bool placed = false;
  for (TensorRef& t : mf.tensors) {
    if (!old_name.empty() && t.name == old_name) {
      out.insert(out.end(), repl.begin(), repl.end());
      placed = true;
      continue;
    }
    bool replaced_later = false;
    for (const TensorRef& r : repl) replaced_later |= r.name == t.name;
    if (!replaced_later) out.push_back(std::move(t));
  }
  if (!placed) out.insert(out.end(), repl.begin(), repl.end());
  mf.tensors = std::move(out);
  mf.reindex();
}

size_t tensor_bytes(const ModelFile& mf, const std::function<bool(const std::string&)>& pred) {
  size_t n = 0;
  for (const TensorRef& t : mf.tensors) {
    if (pred(t.name)) n += t.nbytes;
  }
  return n;
}

}  // namespace rwkv::compress
