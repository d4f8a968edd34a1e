#include "engine/compress/int8.h"

#include <memory>

#include "engine/compress/calib.h"
#include "engine/formats/convert.h"

namespace rwkv::compress {

const char* int8_mode_name(Int8Mode m) {
  switch (m) {
    case Int8Mode::kNone: return "none";
    case Int8Mode::kRow: return "row";
    case Int8Mode::kGroup: return "group";
  }
  return "?";
}

bool parse_int8_mode(const std::string& s, Int8Mode* out) {
  if (s == "none") *out = Int8Mode::kNone;
  else if (s == "row") *out = Int8Mode::kRow;
  else if (s == "group") *out = Int8Mode::kGroup;
  else return false;
  return true;
}

bool int8_eligible(const TensorRef& t) {
  if (t.n_dims != 2 || t.ne[0] < 2 || t.ne[1] < 2) return false;
  const bool float_like = t.type == DType::kF32 || t.type == DType::kF16 || t.type == DType::kQ8_0 ||
                          t.type == DType::kI8R;
  if (!float_like) return false;
  if (keeps_f32(t.name)) return false;
  // Low-rank factors of a kept-f32 map (v7 "att.w1.lr_a") stay float as well.
  const size_t lr = t.name.rfind(".lr_");
  if (lr != std::string::npos && keeps_f32(t.name.substr(0, lr))) return false;
  if (t.name.find(".pred.") != std::string::npos) return false;
  return true;
}

namespace {

Status convert_all(ModelFile& mf, DType type, Int8Report* report, bool only_float_sources) {
  auto buffers = std::make_shared<BufferStorage>();
  mf.storage.push_back(buffers);
  for (TensorRef& t : mf.tensors) {
    if (!int8_eligible(t) || t.type == type) continue;
    if (only_float_sources && t.type != DType::kF32 && t.type != DType::kF16) continue;
    if (type == DType::kQ8_0 && t.ne[0] % kQK != 0) {
      if (report != nullptr) report->skipped.push_back(t.name);
      continue;
    }
    const std::vector<float> w = matrix_f32(t);
    Result<TensorRef> q = make_matrix(t.name, w.data(), t.ne[1], t.ne[0], type, *buffers);
    if (!q.ok()) return q.status();
    if (report != nullptr) {
      ++report->converted;
      report->bytes_before += t.nbytes;
      report->bytes_after += q->nbytes;
    }
    t = q.value();
  }
  mf.reindex();
  return Status::OK();
}

}  // namespace

Status apply_int8(ModelFile& mf, Int8Mode mode, Int8Report* report) {
  if (mode == Int8Mode::kNone) return Status::OK();
  return convert_all(mf, mode == Int8Mode::kRow ? DType::kI8R : DType::kQ8_0, report, false);
}

Status apply_float_type(ModelFile& mf, DType type) {
  if (type != DType::kF32 && type != DType::kF16) {
    return Status::InvalidArgument(std::string("--dtype must be f32 or f16, not ") + dtype_name(type));
  }
  return convert_all(mf, type, nullptr, true);
}

}  // namespace rwkv::compress
