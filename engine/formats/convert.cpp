#include "engine/formats/convert.h"

#include <cstring>
#include <memory>
#include <vector>

#include "engine/common/fp16.h"

namespace rwkv {
namespace {

// v7 tensors rwkv.cpp never converts (by the last name component, "blocks.3.att.w1" -> "w1").
const char* const kV7KeepF32[] = {"k_k", "k_a", "r_k", "x_rwkvag", "x_k", "w0", "a0", "v0",
                                  "w1",  "w2",  "a1",  "a2",       "v1",  "v2", "g1", "g2"};

std::string last_component(const std::string& name) {
  const size_t dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

bool valid_matrix_type(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kQ8_0;
}

// Expected byte size of `t`, or 0 if its shape does not fit its type.
size_t expected_nbytes(const TensorRef& t) {
  const int bs = dtype_block_size(t.type);
  if (t.ne[0] <= 0 || t.ne[0] % bs != 0) return 0;
  const int64_t rows = t.ne[1] * t.ne[2] * t.ne[3];
  return dtype_row_bytes(t.type, t.ne[0]) * (size_t)rows;
}

}  // namespace

bool is_weight_matrix(const TensorRef& t) {
  return t.ne[0] > 1 && t.ne[1] > 1 && t.ne[2] == 1 && t.ne[3] == 1;
}

bool keeps_f32(const std::string& name) {
  if (name.find(".time_") != std::string::npos) return true;
  const std::string last = last_component(name);
  for (const char* k : kV7KeepF32) {
    if (last == k) return true;
  }
  return false;
}

DType converted_type(const TensorRef& t, const GgufWriteOptions& opt) {
  if (opt.keep_types) return t.type;
  // A 1-bit sign copy (the FFN predictor's) is a structure, not a precision: converting it
  // to a float type would silently turn the predictor into a dense matrix it cannot use.
  if (t.type == DType::kI1R) return t.type;
  if (!is_weight_matrix(t) || keeps_f32(t.name)) return DType::kF32;
  if (opt.matrix_type == DType::kQ8_0 && t.ne[0] % kQK != 0) return DType::kF32;
  return opt.matrix_type;
}

Result<ModelFile> convert_types(const ModelFile& in, const GgufWriteOptions& opt) {
  if (!opt.keep_types && !valid_matrix_type(opt.matrix_type)) {
    return Status::InvalidArgument(std::string("matrix type ") + dtype_name(opt.matrix_type) +
                                   " is not one we write (f32, f16, q8_0)");
  }
  ModelFile out;
  out.path = in.path;
  out.source_format = in.source_format;
  out.hparams = in.hparams;
  out.tokenizer = in.tokenizer;
  out.metadata = in.metadata;
  out.storage = in.storage;
  auto buffers = std::make_shared<BufferStorage>();
  out.storage.push_back(buffers);

  std::vector<float> row;
  for (const TensorRef& t : in.tensors) {
    const size_t want = expected_nbytes(t);
    if (want == 0 || want != t.nbytes || (t.data == nullptr && want != 0)) {
      return Status::InvalidArgument(in.path + ": tensor '" + t.name + "': " + std::to_string(t.nbytes) +
                                     " bytes do not match type " + dtype_name(t.type) + " and shape " +
                                     t.shape_string());
    }
    const DType target = converted_type(t, opt);
    if (target == t.type) {
      out.add_tensor(t);
      continue;
    }
    TensorRef c = t;
    c.type = target;
    const int64_t n = t.ne[0];
    const int64_t rows = t.ne[1] * t.ne[2] * t.ne[3];
    const size_t src_row = dtype_row_bytes(t.type, n);
    const size_t dst_row = dtype_row_bytes(target, n);
    c.nbytes = dst_row * (size_t)rows;
    uint8_t* dst = buffers->add(c.nbytes);
    row.resize((size_t)n);
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(t.type, t.data + (size_t)r * src_row, row.data(), n);
      uint8_t* d = dst + (size_t)r * dst_row;
      switch (target) {
        case DType::kF32:
          std::memcpy(d, row.data(), dst_row);
          break;
        case DType::kF16:
          for (int64_t i = 0; i < n; ++i) {
            const uint16_t h = fp32_to_fp16(row[(size_t)i]);
            std::memcpy(d + 2 * i, &h, 2);
          }
          break;
        case DType::kQ8_0:
          quantize_row_q8_0(row.data(), reinterpret_cast<BlockQ8_0*>(d), n);
          break;
        default:
          return Status::Internal("convert_types: unexpected target type " + std::string(dtype_name(target)));
      }
    }
    c.data = dst;
    out.add_tensor(std::move(c));
  }
  return out;
}

}  // namespace rwkv
