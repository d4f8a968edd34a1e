// Tensor type conversion shared by the writers (GGUF, rwkv.cpp): the one place that decides
// which tensors become f16 / q8_0 and which stay f32.
//
//   GgufWriteOptions opt;  opt.matrix_type = DType::kQ8_0;
//   Result<ModelFile> q = convert_types(mf, opt);   // q->tensors now q8_0 where allowed
//
// Rules (rwkv.cpp's converter, formats.md §1), unless opt.keep_types:
//   * 1-D vectors (anything that is not a 2-D matrix, unit dims ignored) -> f32.
//   * names containing ".time_", and the v7 tensors k_k, k_a, r_k, x_rwkvag, x_k, w0, a0, v0
//     and the low-rank maps w1, w2, a1, a2, v1, v2, g1, g2 -> f32.
//   * other 2-D matrices (emb.weight and head.weight included) -> opt.matrix_type; for q8_0
//     only when the row length is a multiple of 32 (otherwise f32).
// One difference from rwkv.cpp: its FP16 files store the v7 low-rank maps as f16; we keep
// them f32 for every target type (as its quantised files do), because they are small and
// feed tanh/sigmoid directly.
// A tensor already in its target type is passed through without touching its bytes.
// i1r tensors (1-bit predictor copies, issue #6) always keep their type.
#pragma once

#include <string>

#include "engine/common/dtype.h"
#include "engine/common/status.h"
#include "engine/formats/model_file.h"

namespace rwkv {

// True when the tensor is a 2-D matrix (both of its first two dims > 1, the rest 1).
bool is_weight_matrix(const TensorRef& t);

// True for names that rwkv.cpp keeps in f32 even when they are matrices (".time_" and the
// small v7 tensors listed above).
bool keeps_f32(const std::string& name);

// The type `t` gets when written with `opt`.
DType converted_type(const TensorRef& t, const GgufWriteOptions& opt);

// Returns a ModelFile with the same names, shapes, hparams, tokenizer and metadata whose
// tensors have converted_type(). Converted tensors live in new heap buffers; unchanged ones
// share `in`'s storage (the result keeps it alive).
// Errors: InvalidArgument if opt.matrix_type is not f32/f16/q8_0 or a tensor's byte size does
// not match its type and shape (message names the tensor).
Result<ModelFile> convert_types(const ModelFile& in, const GgufWriteOptions& opt);

}  // namespace rwkv
