// INT8 weights (issue 6, RWKV-Lite §7) and the storage type of the remaining float matrices.
//
//   Int8Report rep;
//   Status st = apply_int8(mf, Int8Mode::kRow, &rep);   // every eligible matrix -> i8r
//
// Eligible: every 2-D matrix (projections, low-rank factors, head, embedding, cluster head)
// stored as f32 / f16 / q8_0 / i8r, except the small v6/v7 maps rwkv.cpp keeps in f32
// (".time_*", v7 w1..g2: they feed tanh/sigmoid directly, and the paper leaves *_w1/_w2 in
// float) and the FFN predictors ("*.pred.*", also float in the paper). Activations stay f32.
#pragma once

#include <string>
#include <vector>

#include "engine/common/status.h"
#include "engine/formats/model_file.h"

namespace rwkv::compress {

enum class Int8Mode {
  kNone,
  kRow,    // i8r: symmetric int8 with one f32 scale per row (any row length)
  kGroup,  // q8_0: symmetric int8 with one f16 scale per group of 32 (rows must be multiples of 32)
};
const char* int8_mode_name(Int8Mode m);  // "none", "row", "group"
bool parse_int8_mode(const std::string& s, Int8Mode* out);

// True when apply_int8 / apply_float_type may change `t`'s type (see above).
bool int8_eligible(const TensorRef& t);

struct Int8Report {
  int64_t converted = 0;
  std::vector<std::string> skipped;  // eligible but left as is (q8_0 with rows not a multiple of 32)
  size_t bytes_before = 0, bytes_after = 0;  // of the converted tensors
};

// Converts every eligible matrix to i8r (kRow) or q8_0 (kGroup); kNone does nothing.
Status apply_int8(ModelFile& mf, Int8Mode mode, Int8Report* report);

// Stores every eligible f32/f16 matrix as `type` (f32 or f16): `--dtype` of rwkv-edge compress.
Status apply_float_type(ModelFile& mf, DType type);

}  // namespace rwkv::compress
